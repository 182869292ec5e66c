"""`userfm pretrain ...`: LightningCLI (fit / validate / test) plus ``export`` and ``plot``.

userfm pretrain fit --config configs/pretrain/synthetic-tiny.yaml
userfm pretrain export runs/pretrain/synthetic-tiny/checkpoints/last.ckpt runs/encoder
userfm pretrain plot runs/pretrain/synthetic-tiny
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI

from userfm.cli_options import add_switch
from userfm.pretrain.data import EventDataModule
from userfm.pretrain.module import PretrainModule
from userfm.stage_cli import stage_cli


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        from userfm.outputs import check_output_dir
        from userfm.pretrain.export import export_checkpoint

        p = ArgumentParser(
            prog="userfm pretrain export", description="Checkpoint -> save_pretrained directory."
        )
        p.add_argument(
            "checkpoint",
            help="a .ckpt written by `userfm pretrain fit`, or a run folder (its newest last.ckpt)",
        )
        p.add_argument("out_dir", help="output folder (loadable by UserEncoder.from_pretrained)")
        p.add_argument("--name", type=str | None, default=None, help="model name for the card")
        add_switch(
            p,
            "overwrite",
            "write into an OUT_DIR that already holds files (config.json, ... replaced)",
        )
        args = p.parse_args(argv[1:])
        check_output_dir(args.out_dir, overwrite=args.overwrite, flag="OUT_DIR")
        out = export_checkpoint(args.checkpoint, args.out_dir, name=args.name)
        print(
            f"exported {args.checkpoint} -> {out} (config.json, model.safetensors, vocab.json, README.md)"
        )
        return 0
    if argv and argv[0] == "plot":
        from userfm.outputs import check_output
        from userfm.pretrain.plot import plot_run

        p = ArgumentParser(
            prog="userfm pretrain plot", description="Training curves of a run to PNG."
        )
        p.add_argument("run_dir", help="a run folder (holding metrics.csv somewhere below)")
        p.add_argument(
            "--out", type=str | None, default=None, help="PNG path (default: RUN_DIR/curves.png)"
        )
        add_switch(p, "overwrite", "replace an existing PNG")
        args = p.parse_args(argv[1:])
        out = args.out or os.path.join(args.run_dir, "curves.png")
        check_output(out, overwrite=args.overwrite, suffixes=[".png"], flag="--out")
        print(f"wrote {plot_run(args.run_dir, out)}")
        return 0
    make_cli(argv)
    return 0


def make_cli(argv: Sequence[str], **kwargs) -> LightningCLI:
    """The pretraining LightningCLI on ``argv`` (e.g. ``["fit", "--config", path]``)."""
    return stage_cli("userfm pretrain", PretrainModule, EventDataModule, argv, **kwargs)
