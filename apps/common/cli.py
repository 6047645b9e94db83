"""The one launcher of every app: LightningCLI with the app's default config and the shared callbacks.

``python -m apps.<app> {fit,validate,test,predict}`` runs ``configs/<app>/default.yaml`` first, then every
``--config`` in order, then the flags. What it adds to a plain LightningCLI, through its public hooks:

- always-on callbacks with their own options: ``--checkpoint.*`` (the best checkpoint by the model's monitored
  metric), ``--prediction_writer.*``, and the app's own (figures, gradient through time); ``last.ckpt`` is written
  after every epoch, and the random state rides in every checkpoint, so a resumed run continues exactly;
- everything a run writes goes under ``--trainer.default_root_dir`` (the loggers' folders follow it);
- ``--ckpt_path last`` finds the newest ``last.ckpt`` there (each run writes its own versioned folder, so Lightning
  cannot find it in the new run's empty folder); ``--ckpt_path best`` the best ``best*.ckpt`` of every run there,
  by the monitored metric;
- the resolved config is saved as ``config.yaml`` beside the checkpoints of that run and sent to W&B;
- W&B without credentials runs offline instead of asking for a login;
- a bad option, config file or checkpoint is one message naming it (a UserError, or a parser error with a hint),
  not the usage text or a traceback; validate, test and predict refuse to run without a trained model.
"""

from __future__ import annotations

import difflib
import netrc
import os
import re
import sys
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from apps.common.artefacts import WRITER_KEY, read_checkpoint
from apps.common.callbacks import PredictionWriter, RNGState, run_dir
from apps.common.configs import CONFIG_DIR, check_config_files, packaged_config_args
from apps.common.errors import UserError

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class AppArgumentParser(LightningArgumentParser):
    """A parser error is the message, the option it names written as a flag, the nearest known options and where
    the full list is, instead of the whole usage text."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        message = re.sub(r'Parser key "([^"]+)"', r"--\1", message)
        known = [option for option in parser._option_string_actions if option.startswith("--")]
        unknown = re.findall(r"(--[\w.]+)", message.split("arguments:", 1)[1]) if "arguments:" in message else []
        near = sorted({near for option in unknown for near in difflib.get_close_matches(option, known, 2, 0.75)})
        hint = f"did you mean {', '.join(near)}? " if near else ""
        sys.stderr.write(f"error: {message}\n{hint}(all options: {parser.prog.replace(' [options]', '')} --help)\n")
        self.exit(2)


def check_checkpoint(path: str, model_class: type[LightningModule], app: str) -> None:
    """The checkpoint exists, loads, and was written by this app's model."""
    if not Path(path).is_file():
        raise UserError(f"--ckpt_path {path}: no such file")
    written_by = read_checkpoint(path).get(WRITER_KEY)
    expected = f"{model_class.__module__}.{model_class.__qualname__}"
    if written_by and written_by != expected:
        raise UserError(f"--ckpt_path {path}: a checkpoint of {written_by}, not of {expected} "
                        f"(python -m apps.{app}); use it with the app that wrote it")


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``, written after every epoch (ModelCheckpoint's own ``save_last`` writes it only beside a new
    best), so ``--ckpt_path last`` resumes from the latest epoch."""

    def __init__(self) -> None:
        super().__init__(filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


class ConfigBesideCheckpoints(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's checkpoint folder when fitting starts (a second
    run never collides with the first: an existing file gets a ``-v1``, ``-v2`` ... name), and hands the config to
    every W&B logger of the run (as the run's config and as the file ``lightning_config.yaml``)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        self.already_saved = True
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(yaml.safe_load(text), allow_val_change=True)
                Path(logger.experiment.dir, "lightning_config.yaml").write_text(text)

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        stem, suffix = os.path.splitext(self.config_filename)
        path, version = folder / self.config_filename, 0
        while path.exists():
            version += 1
            path = folder / f"{stem}-v{version}{suffix}"
        self.parser.save(self.config, str(path), skip_none=False, multifile=self.multifile)


def find_checkpoint(root: Path, kind: str, monitor: str, mode: str) -> Path | None:
    """The newest ``last.ckpt`` under ``root``, or the ``best*.ckpt`` with the best ``monitor`` score."""
    found = [p for p in root.rglob(f"checkpoints/{kind}*.ckpt")] if root.is_dir() else []
    if not found:
        return None
    if kind == "last":
        return max(found, key=lambda p: p.stat().st_mtime)
    sign = 1 if mode == "min" else -1

    def rank(path: Path) -> tuple[float, float]:
        score = next((state.get("best_model_score") for key, state in read_checkpoint(path).get("callbacks", {}).items()
                      if key.startswith("ModelCheckpoint") and state.get("monitor") == monitor), None)
        return (float("inf") if score is None else sign * float(score), -path.stat().st_mtime)

    return min(found, key=rank)


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class AppCLI(LightningCLI):
    """LightningCLI for one app; see the module docstring."""

    def __init__(
        self,
        model_class: type[LightningModule],
        datamodule_class: type[LightningDataModule],
        app: str,
        callbacks: dict[str, type[Callback]] | None = None,
        links: list[tuple[str, str, str]] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.app = app
        self.app_callbacks = {"checkpoint": ModelCheckpoint, "prediction_writer": PredictionWriter, **(callbacks or {})}
        self.links = links or []
        default_config = CONFIG_DIR / app / "default.yaml"
        args = packaged_config_args(args)
        check_config_files(args)
        super().__init__(
            model_class,
            datamodule_class,
            save_config_callback=ConfigBesideCheckpoints,
            parser_class=AppArgumentParser,
            parser_kwargs={"prog": f"python -m apps.{app}",
                           **{sub: {"default_config_files": [str(default_config)]} for sub in SUBCOMMANDS}},
            trainer_defaults={"callbacks": [RNGState(), LatestCheckpoint()]},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser) -> None:
        for key, callback in self.app_callbacks.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults({
            "checkpoint.monitor": self.model_class.monitor,
            "checkpoint.mode": self.model_class.mode,
            "checkpoint.save_top_k": 1,
            "checkpoint.filename": "best-{epoch}-{step}",
            "trainer.default_root_dir": f"outputs/{self.app}",
            "trainer.gradient_clip_val": 1.0,
        })
        for source, target, apply_on in self.links:
            parser.link_arguments(source, target, apply_on=apply_on)

    def parse_arguments(self, parser, args) -> None:
        """Parses, then turns ``--ckpt_path last|best`` into the file it means and checks the checkpoint (before
        LightningCLI reads its hyperparameters). Only fit may start without one."""
        # not LightningCLI's own: it warns when args come with sys.argv, as they do once packaged configs are found
        self.config = parser.parse_object(args) if isinstance(args, dict | Namespace) else parser.parse_args(args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None:
            return
        if config.get("ckpt_path") in ("last", "best"):
            kind, root = config.ckpt_path, Path(config.trainer.default_root_dir or ".")
            found = find_checkpoint(root, kind, config.checkpoint.monitor, config.checkpoint.mode)
            if found is None and subcommand != "fit":
                raise UserError(f"--ckpt_path {kind}: no checkpoints/{kind}*.ckpt under {root} "
                                "(--trainer.default_root_dir); fit first, or pass a checkpoint file")
            if found is None:
                rank_zero_warn(f"--ckpt_path {kind}: no checkpoints/{kind}*.ckpt under {root}; starting from scratch")
            else:
                rank_zero_info(f"--ckpt_path {kind}: {found}")
            config.ckpt_path = None if found is None else str(found)
        if config.get("ckpt_path"):
            check_checkpoint(config.ckpt_path, self.model_class, self.app)
        elif subcommand != "fit":
            raise UserError(f"{subcommand} needs a trained model: pass --ckpt_path (a checkpoint file, or best or "
                            "last for the runs under --trainer.default_root_dir)")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        root = config.trainer.default_root_dir
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:
            init = getattr(logger, "init_args", None)
            if init is not None and "WandbLogger" in logger.class_path and init.get("save_dir") in (None, "."):
                init.save_dir = root  # left at its default: the run's folder
        if "Wandb" in str(config.trainer.logger) and not os.environ.get("WANDB_MODE") and not _wandb_credentials():
            os.environ["WANDB_MODE"] = "offline"
            rank_zero_info("W&B: no API key found (WANDB_API_KEY or `wandb login`), logging offline; "
                           "upload later with `wandb sync`")

    def instantiate_trainer(self, **kwargs):
        """With no logger configured, a CSV logger in ``<default_root_dir>/logs`` (metrics.csv per version)."""
        config = self.config_init[self.subcommand].trainer
        if config.get("logger") in (None, True):
            kwargs.setdefault("logger", CSVLogger(config.default_root_dir, name="logs"))
        return super().instantiate_trainer(**kwargs)

    def _share_checkpoint_path(self) -> None:
        """Tells the data module which checkpoint the command restores: Lightning restores only after setup, and
        some data (a tokenizer, a vocabulary) must come from the checkpoint first."""
        self.datamodule.checkpoint_path = self.config[self.subcommand].get("ckpt_path")

    before_fit = before_validate = before_test = before_predict = _share_checkpoint_path


def run(
    model_class: type[LightningModule],
    datamodule_class: type[LightningDataModule],
    app: str,
    callbacks: dict[str, type[Callback]] | None = None,
    links: list[tuple[str, str, str]] | None = None,
    args: list[str] | None = None,
) -> AppCLI:
    """Runs an app's command line (``args``, or sys.argv when None) and returns the CLI object.

    Args:
        callbacks: the app's always-on callbacks, each configurable under its key (``--<key>.<option>``).
        links: (source, target, apply_on) argument links, e.g. data sizes the model needs.
    """
    return AppCLI(model_class, datamodule_class, app, callbacks, links, args)
