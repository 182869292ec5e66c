"""`userfm pretrain ...`: LightningCLI (fit / validate / test) plus ``export`` and ``plot``.

userfm pretrain fit --config configs/pretrain/synthetic-tiny.yaml
userfm pretrain export runs/pretrain/synthetic-tiny/checkpoints/last.ckpt runs/encoder
userfm pretrain plot runs/pretrain/synthetic-tiny
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from userfm.pretrain.data import EventDataModule
from userfm.pretrain.module import PretrainModule
from userfm.stage_cli import stage_cli


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        from userfm.pretrain.export import export_checkpoint

        p = argparse.ArgumentParser(
            prog="userfm pretrain export", description="Checkpoint -> save_pretrained directory."
        )
        p.add_argument(
            "checkpoint",
            help="a .ckpt written by `userfm pretrain fit`, or a run folder (its newest last.ckpt)",
        )
        p.add_argument("out_dir", help="output folder (loadable by UserEncoder.from_pretrained)")
        p.add_argument("--name", default=None, help="model name for the card")
        args = p.parse_args(argv[1:])
        out = export_checkpoint(args.checkpoint, args.out_dir, name=args.name)
        print(
            f"exported {args.checkpoint} -> {out} (config.json, model.safetensors, vocab.json, README.md)"
        )
        return 0
    if argv and argv[0] == "plot":
        from userfm.pretrain.plot import plot_run

        p = argparse.ArgumentParser(
            prog="userfm pretrain plot", description="Training curves of a run to PNG."
        )
        p.add_argument("run_dir", help="a run folder (holding metrics.csv somewhere below)")
        p.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/curves.png)")
        args = p.parse_args(argv[1:])
        print(f"wrote {plot_run(args.run_dir, args.out)}")
        return 0
    make_cli(argv)
    return 0


def make_cli(argv: Sequence[str], **kwargs) -> LightningCLI:
    """The pretraining LightningCLI on ``argv`` (e.g. ``["fit", "--config", path]``)."""
    return stage_cli("userfm pretrain", PretrainModule, EventDataModule, argv, **kwargs)
