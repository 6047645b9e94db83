"""A fresh install runs: the wheel built from this tree holds the configs, an installed copy run outside the clone
finds them in the package, and pyproject.toml declares every distribution the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apps.common.configs import CONFIG_DIR, packaged_config, packaged_config_args
from tests.conftest import FAST, ROOT

#: run in the installed copy: which apps it imported, where its configs are, and a one-batch fit's resolved config
INSTALLED_RUN = """
import json, sys
import apps, rnn_core
from apps.common import cli
from apps.common.configs import packaged_config_args
from apps.forecasting import main
args = packaged_config_args(sys.argv[1:])
run = main(args)
print(json.dumps({"apps": apps.__file__, "rnn_core": rnn_core.__file__, "config_dir": str(cli.CONFIG_DIR), "args": args,
                  "max_epochs": run.config.fit.trainer.max_epochs, "steps": run.trainer.global_step}))
"""


def test_the_installed_wheel_runs_with_its_packaged_configs(tmp_path):
    source, wheels, target, elsewhere = (tmp_path / name for name in ("source", "wheels", "target", "elsewhere"))
    # a copy of what the wheel is built from, so no build/ folder of the clone leaks in or is written
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("apps", "rnn_core"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)], tmp_path)
    (wheel,) = wheels.glob("rnn_apps-*.whl")
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], tmp_path)
    packaged = sorted(p.relative_to(target / "apps/configs") for p in (target / "apps/configs").rglob("*.yaml"))
    assert packaged == sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml"))

    # only the installed copy importable: not this tree (PYTHONPATH, the current folder) nor the editable install
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1", "WANDB_MODE": "disabled"}
    args = ["fit", "--config", "configs/forecasting/default.yaml", *FAST, "--trainer.fast_dev_run=1",
            "--trainer.default_root_dir=out"]
    done = _run([sys.executable, "-c", INSTALLED_RUN, *args], elsewhere, env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["apps"]).is_relative_to(target) and Path(report["rnn_core"]).is_relative_to(target), report
    assert Path(report["config_dir"]) == target / "apps/configs"
    assert report["args"][2] == str(target / "apps/configs/forecasting/default.yaml")
    default = yaml.safe_load((CONFIG_DIR / "forecasting/default.yaml").read_text())
    assert report["max_epochs"] == default["trainer"]["max_epochs"]  # the app's packaged default.yaml was read
    assert report["steps"] == 1


def test_configs_in_the_clone_are_the_packaged_ones():
    assert (ROOT / "configs").is_symlink() and (ROOT / "configs").resolve() == CONFIG_DIR
    tracked = subprocess.run(["git", "ls-files", "-s", "configs"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:  # a git checkout (not an unpacked copy): stored as a link
        assert tracked.stdout.startswith("120000 ")


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_a_config_path_from_the_clone_root_means_the_packaged_file_elsewhere(flag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wandb = str(CONFIG_DIR / "trainer/wandb.yaml")
    assert packaged_config("configs/trainer/wandb.yaml") == wandb
    assert packaged_config("./configs/trainer/wandb.yaml") == wandb
    assert packaged_config_args(["fit", flag, "configs/trainer/wandb.yaml", "--data.path", "configs/x.csv"]) == [
        "fit", flag, wandb, "--data.path", "configs/x.csv"]
    assert packaged_config_args(["fit", f"{flag}=configs/trainer/wandb.yaml"]) == ["fit", f"{flag}={wandb}"]
    # a file of that name here wins; paths that are no packaged config stay as given (the parser names them)
    (tmp_path / "configs/trainer").mkdir(parents=True)
    (tmp_path / "configs/trainer/wandb.yaml").write_text("trainer: {}\n")
    for value in ("configs/trainer/wandb.yaml", "configs/trainer/nope.yaml", "mine.yaml", "/abs/configs/x.yaml"):
        assert packaged_config(value) == value
    unchanged = ["fit", flag, "configs/trainer/wandb.yaml"]
    assert packaged_config_args(unchanged) is unchanged
    monkeypatch.chdir(ROOT.parent)
    monkeypatch.setattr(sys, "argv", ["apps.forecasting", "fit", flag, "configs/trainer/wandb.yaml"])
    assert packaged_config_args(None) == ["fit", flag, wandb]  # None: sys.argv
    monkeypatch.setattr(sys, "argv", ["apps.forecasting", "fit"])
    assert packaged_config_args(None) is None


def test_every_imported_distribution_is_declared():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.split(r"[<>=!~\[;\s]", requirement)[0]) for requirement in project["dependencies"]}
    optional = {_canonical(re.split(r"[<>=!~\[;\s]", requirement)[0])
                for extra in project["optional-dependencies"].values() for requirement in extra}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for folder in ("apps", "rnn_core", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for module in _imported(path):
                if module in sys.stdlib_module_names or module in ("apps", "rnn_core", "benchmarks"):
                    continue
                names = {_canonical(d) for d in distributions.get(module, [module])}
                if not names & (declared | optional):
                    missing.setdefault(module, str(path.relative_to(ROOT)))
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def _imported(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {' '.join(command[:6])}\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return done
