"""The one launcher of every app: LightningCLI with the app's default config and the shared callbacks.

``python -m apps.<app> {fit,validate,test,predict}`` runs ``configs/<app>/default.yaml`` first, then every
``--config`` in order, then the flags. What it adds to a plain LightningCLI:

- always-on callbacks with their own options: ``--checkpoint.*`` (best and last kept), ``--prediction_writer.*``,
  exact-resume random state, and the app's own (figures, gradient through time);
- ``--ckpt_path last`` finds the newest ``last*.ckpt`` under the run folders (each run writes its own versioned
  folder, so "last" cannot be found by Lightning in the new run's empty folder); ``--ckpt_path best`` the newest
  ``best*.ckpt``, e.g. to test the model a fit just chose;
- the resolved config is saved as ``config.yaml`` beside the checkpoints of that run (never into the working
  directory, never refused because an earlier run left one) and sent to W&B when W&B logs the run;
- W&B without credentials runs offline instead of asking for a login.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path

import yaml
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from apps.common.callbacks import BestAndLast, PredictionWriter, RNGState, run_dir

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val_loss",
    "checkpoint.mode": "min",
    "checkpoint.save_top_k": 1,
    "checkpoint.save_last": True,
    "checkpoint.filename": "best-{epoch}-{step}",
}


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


def find_checkpoint(roots: list[Path], kind: str = "last") -> Path | None:
    """The most recently written ``last*.ckpt`` (or ``best*.ckpt``) in any ``checkpoints`` folder under the given
    folders."""
    found = [p for root in roots if root.is_dir() for p in root.rglob(f"checkpoints/{kind}*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


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
        self.argv = list(sys.argv[1:] if args is None else args)
        self.app_callbacks = {"checkpoint": BestAndLast, "prediction_writer": PredictionWriter,
                              **(callbacks or {})}
        self.links = links or []
        default_config = CONFIG_DIR / app / "default.yaml"
        super().__init__(
            model_class,
            datamodule_class,
            save_config_callback=ConfigBesideCheckpoints,
            parser_kwargs={sub: {"default_config_files": [str(default_config)]} for sub in SUBCOMMANDS},
            trainer_defaults={"callbacks": [RNGState()]},
            seed_everything_default=0,
            args=args,
        )

    def add_arguments_to_parser(self, parser) -> None:
        for key, callback in self.app_callbacks.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults({**CHECKPOINT_DEFAULTS, "trainer.gradient_clip_val": 1.0})
        for source, target, apply_on in self.links:
            parser.link_arguments(source, target, apply_on=apply_on)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if config.get("ckpt_path") in ("last", "best"):
            kind = config.ckpt_path
            roots = {Path(config.trainer.default_root_dir or ".")}
            logger = config.trainer.logger
            for entry in logger if isinstance(logger, list) else [logger]:
                save_dir = getattr(getattr(entry, "init_args", None), "save_dir", None)
                if save_dir:
                    roots.add(Path(save_dir))
            found = find_checkpoint(sorted(roots), kind)
            if found is None:
                rank_zero_warn(f"--ckpt_path {kind}: no checkpoints/{kind}*.ckpt under {sorted(map(str, roots))}; "
                               + ("starting from scratch" if self.subcommand == "fit" else "using the model as built"))
            else:
                rank_zero_info(f"--ckpt_path {kind}: {found}")
            config.ckpt_path = None if found is None else str(found)
            self._parse_ckpt_path()
        if "Wandb" in str(config.trainer.logger) and not os.environ.get("WANDB_MODE") and not _wandb_credentials():
            os.environ["WANDB_MODE"] = "offline"
            rank_zero_info("W&B: no API key found (WANDB_API_KEY or `wandb login`), logging offline; "
                           "upload later with `wandb sync`")


    def _parse_ckpt_path(self) -> None:
        """Lightning puts the checkpoint's model hyperparameters over the whole config, command line included; here
        ``--model.*`` flags given on the command line still win, so that decoding options (a beam size, n-best) can
        be chosen when testing or predicting with a checkpoint."""
        super()._parse_ckpt_path()
        flags, keys = [], []
        for i, arg in enumerate(self.argv):
            if arg.startswith("--model."):
                key, has_value, _ = arg[len("--model."):].partition("=")
                flags += [arg] if has_value else self.argv[i : i + 2]
                keys.append(key)
        if not flags or not self.config.get("subcommand"):
            return
        given = self.parser.parse_args([self.config.subcommand, *flags])[self.config.subcommand]
        for key in keys:
            self.config[self.config.subcommand][f"model.{key}"] = given[f"model.{key}"]

    def _share_checkpoint_path(self) -> None:
        """Tells a data module with a ``checkpoint_path`` attribute which checkpoint the command restores: Lightning
        restores only after setup, and some data (a tokenizer, a vocabulary) must come from the checkpoint first."""
        if hasattr(self.datamodule, "checkpoint_path"):
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
