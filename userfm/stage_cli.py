"""The LightningCLI both training stages run (``userfm pretrain ...``, ``userfm adapters ...``).

One flag places a whole run: ``trainer.default_root_dir`` is the run's folder, a relative
logger ``save_dir`` is taken inside it, and a ``ModelCheckpoint`` without ``dirpath`` writes
to ``<default_root_dir>/checkpoints``: one folder per run rather than one per ``version_N``,
so ``--ckpt_path last`` finds the checkpoint an earlier (killed) run of the same config wrote
(issue 18: with versioned folders "last" was never found and training restarted at step 0).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

from userfm.checkpoints import checkpoint_errors, load_checkpoint
from userfm.errors import ConfigError
from userfm.quiet import quiet_library_noise

CHECKPOINT_CLASS = "lightning.pytorch.callbacks.ModelCheckpoint"


class CheckedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, reading through `userfm.checkpoints.load_checkpoint`: a
    truncated or planted checkpoint given to ``--ckpt_path`` is a one-line `FileFormatError`
    naming the file, not a traceback from inside the trainer (issue 18)."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        if "://" in str(path):  # a remote (fsspec) path: Lightning's own reader
            return super().load_checkpoint(path, map_location, weights_only)
        return load_checkpoint(
            path,
            map_location=map_location if map_location is not None else "cpu",
            weights_only=True if weights_only is None else weights_only,
        )


class StageCLI(LightningCLI):
    """`LightningCLI` that places logs and checkpoints in ``trainer.default_root_dir`` and
    reads checkpoints with typed errors (`CheckedCheckpointIO`)."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        place_run(config.trainer)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters itself, before the trainer exists
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        with checkpoint_errors(path):
            super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # only Lightning's default single-file IO is replaced; sharded strategies keep theirs
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = CheckedCheckpointIO()
        return trainer


def place_run(trainer: Any) -> None:
    """Place the log and checkpoint folders of a parsed ``trainer`` config in its
    ``default_root_dir`` (the working directory when unset, as Lightning does): a relative
    logger ``save_dir`` is joined to it, an unset checkpoint ``dirpath`` becomes
    ``<root>/checkpoints``; absolute paths are kept."""
    root = trainer.default_root_dir or os.getcwd()
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
    for logger in loggers:
        args = getattr(logger, "init_args", None)
        save_dir = getattr(args, "save_dir", None)
        if save_dir is not None and not os.path.isabs(str(save_dir)):
            args.save_dir = os.path.normpath(os.path.join(root, str(save_dir)))
    for callback in trainer.callbacks or []:
        args = getattr(callback, "init_args", None)
        if getattr(callback, "class_path", None) == CHECKPOINT_CLASS and args.dirpath is None:
            args.dirpath = os.path.join(root, "checkpoints")


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def check_configs(prog: str, argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` of a shipped config (``userfm configs list``)
    replaced by its packaged file, so that the shipped configs work from any folder.

    A subcommand needs a config file, and every config named must exist: without one
    LightningCLI would start a default run in the working directory, and a missing file ends
    in a page of parser errors.

    Raises:
        ConfigError: a subcommand without ``--config``.
        FileNotFoundError: a ``--config`` that is neither a file nor a shipped config's name.
    """
    from userfm import configs

    args = list(argv)
    if not args or args[0] not in SUBCOMMANDS:
        return args
    stage = prog.split()[-1]
    given = 0
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            key, value = i + 1, args[i + 1]
        elif a.startswith("--config="):
            key, value = i, a.split("=", 1)[1]
        else:
            continue
        given += 1
        if os.path.isfile(value):
            continue
        packaged = configs.find(value, stage if stage in configs.STAGES else None)
        if packaged is None:
            names = ", ".join(n for _, n in configs.available(stage))
            raise FileNotFoundError(f"no config file at {value} (shipped {stage} configs: {names})")
        args[key] = str(packaged) if key == i + 1 else f"--config={packaged}"
    if not given and not any(a in ("-h", "--help") or a.startswith("--print_config") for a in args):
        raise ConfigError(
            f"`{prog} {args[0]}` needs --config CONFIG (a YAML file, or the name of a shipped "
            "one: `userfm configs list`)"
        )
    return args


def stage_cli(prog: str, model_class: type, datamodule_class: type, argv: Sequence[str], **kwargs):
    """LightningCLI for one stage on ``argv`` (e.g. ``["fit", "--config", path]``): seed 0 by
    default, config files overwritten on rerun, usage lines under ``prog``, the run placed
    under ``trainer.default_root_dir`` (`place_run`)."""
    argv = check_configs(prog, argv)
    quiet_library_noise()
    saved = sys.argv
    sys.argv = [prog, *argv]  # LightningCLI reads sys.argv; keep its usage lines right
    try:
        return StageCLI(
            model_class,
            datamodule_class,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog},
            **kwargs,
        )
    finally:
        sys.argv = saved
