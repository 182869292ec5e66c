"""The LightningCLI both training stages run (``userfm pretrain ...``, ``userfm adapters ...``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI


def stage_cli(prog: str, model_class: type, datamodule_class: type, argv: Sequence[str], **kwargs):
    """LightningCLI for one stage on ``argv`` (e.g. ``["fit", "--config", path]``): seed 0 by
    default, config files overwritten on rerun, usage lines under ``prog``."""
    saved = sys.argv
    sys.argv = [prog, *argv]  # LightningCLI reads sys.argv; keep its usage lines right
    try:
        return LightningCLI(
            model_class,
            datamodule_class,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog},
            **kwargs,
        )
    finally:
        sys.argv = saved
