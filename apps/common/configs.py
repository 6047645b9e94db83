"""Where the apps' YAML configs are: inside the package (apps/configs), so an installed copy has them; a clone links
``configs/`` at its root to that folder.

The documented flags name configs relative to a clone's root (``--config configs/trainer/wandb.yaml``); run from
anywhere else, or from an installed package, such a path that does not exist from the current folder means the
packaged file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from apps.common.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: LightningCLI's flags that take a config file
CONFIG_FLAGS = ("--config", "-c")


def packaged_config(value: str) -> str:
    """The packaged file a relative ``configs/...`` path means when nothing exists at that path from the current
    folder; ``value`` itself otherwise (an absolute or existing path, another relative path, no such packaged file)."""
    path = Path(value)
    if path.is_absolute() or path.exists() or path.parts[:1] != ("configs",):
        return value
    packaged = CONFIG_DIR.joinpath(*path.parts[1:])
    return str(packaged) if packaged.is_file() else value


def _config_file(args: list[str], index: int) -> tuple[str, str] | None:
    """When ``args[index]`` names a config file: the text before the path and the path (``--config=PATH`` gives
    ``("--config=", PATH)``; ``PATH`` after ``--config`` or ``-c`` gives ``("", PATH)``)."""
    flag, equals, value = args[index].partition("=")
    if equals and flag in CONFIG_FLAGS:
        return f"{flag}=", value
    if index and args[index - 1] in CONFIG_FLAGS:
        return "", args[index]
    return None


def packaged_config_args(args: list[str] | None) -> list[str] | None:
    """Command-line ``args`` (``sys.argv[1:]`` when None) with each config file given to ``--config``/``-c`` (as
    ``--config PATH`` or ``--config=PATH``) passed through ``packaged_config``; ``args`` itself, None included, when
    none changes."""
    if args is not None and not isinstance(args, list):  # LightningCLI also takes a dict or a Namespace
        return args
    given = sys.argv[1:] if args is None else args
    resolved = [arg if (found := _config_file(given, index)) is None else found[0] + packaged_config(found[1])
                for index, arg in enumerate(given)]
    return args if resolved == given else resolved


def check_config_files(args: list[str] | None) -> None:
    """Every ``--config`` file of the command-line ``args`` (``sys.argv[1:]`` when None) exists and is valid YAML; a
    syntax error names the file, line and column (the parser would name only "<unicode string>")."""
    if args is not None and not isinstance(args, list):  # a dict or a Namespace names no files
        return
    given = sys.argv[1:] if args is None else args
    for index in range(len(given)):
        found = _config_file(given, index)
        if found is None or found[1].lstrip().startswith(("{", "[")) or "\n" in found[1]:  # none, or given inline
            continue
        path = found[1]
        if not Path(path).is_file():
            raise UserError(f"--config {path}: no such file")
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
            raise UserError(f"--config {where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
