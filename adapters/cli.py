"""`userfm adapters ...`: LightningCLI (fit / validate / test) plus ``chat``.

userfm adapters fit --config configs/adapters/soft_prompt.yaml
userfm adapters chat --adapter runs/adapters/soft_prompt/adapter --log runs/demo/events.parquet \
    --user u00001 "Which category does this user interact with most?"
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI

from userfm.adapters.data import QADataModule
from userfm.adapters.module import AdapterModule
from userfm.cli_options import add_schema_args, schema_from_args
from userfm.data.schema import EventSchema
from userfm.stage_cli import stage_cli


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "chat":
        return chat(argv[1:])
    make_cli(argv)
    return 0


#: the synthetic / demo log's attribute columns, read when the adapter has no encoder
DEMO_SCHEMA = EventSchema(action="action", category="category", title="title")


def chat(argv: Sequence[str]) -> int:
    """Answer one question for one user with a saved adapter."""
    from userfm.adapters.model import UserConditionedLM
    from userfm.data.sources import load_source

    p = ArgumentParser(
        prog="userfm adapters chat", description="Ask a trained adapter about one user."
    )
    p.add_argument(
        "question", type=str, help="the question, e.g. 'What does this user watch most?'"
    )
    p.add_argument("--adapter", type=str, required=True, help="adapter directory (written by fit)")
    p.add_argument("--user", type=str, required=True, help="user id in the log")
    p.add_argument(
        "--log", type=str, required=True, help="event log: a file, a dataset folder or 'synthetic'"
    )
    p.add_argument(
        "--log_format", type=str, default="auto", help="auto, movielens-100k, movielens-1m, ..."
    )
    p.add_argument("--max_new_tokens", type=int, default=32)
    add_schema_args(p)
    args = p.parse_args(argv)
    model = UserConditionedLM.from_pretrained(args.adapter)
    # the columns the encoder was trained with, as `userfm embed` reads them; without an
    # encoder ("text", "none"), the columns the question builder and the demo log use
    trained = model.encoder.training_schema() if model.encoder is not None else None
    schema = schema_from_args(args, trained or DEMO_SCHEMA)
    log = load_source(args.log, format=args.log_format, schema=asdict(schema))
    history = log.history(args.user)
    answer = model.generate([history], [args.question], max_new_tokens=args.max_new_tokens)[0]
    print(f"user {args.user} ({len(history)} events): {answer}")
    return 0


def make_cli(argv: Sequence[str], **kwargs) -> LightningCLI:
    """The adapter LightningCLI on ``argv`` (e.g. ``["fit", "--config", path]``)."""
    return stage_cli("userfm adapters", AdapterModule, QADataModule, argv, **kwargs)
