"""The event-schema flags every argparse command of the CLI shares (``userfm embed``,
``userfm eval ...``, ``userfm adapters chat``): one group, one reading of it.

The LightningCLI stages take the same `EventSchema` as a typed ``data.schema`` /
``data.log_schema`` group in their YAML.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from userfm.data.schema import EventSchema


def add_schema_args(p: argparse.ArgumentParser) -> None:
    """The event-schema flags (``--user-col`` ... ``--title-col``) as one argument group."""
    g = p.add_argument_group(
        "input columns (the event schema; `embed` starts from the one the model was trained with)"
    )
    g.add_argument("--user-col", default=None, help="column with user ids (default: user)")
    g.add_argument("--item-col", default=None, help="column with item ids (default: item)")
    g.add_argument(
        "--time-col",
        default=None,
        help="column with event times (default: timestamp); 'none' = rows already in time order",
    )
    g.add_argument("--time-unit", default=None, choices=["auto", "s", "ms", "us", "ns", "datetime"])
    g.add_argument("--action-col", default=None, help="optional column with event types")
    g.add_argument(
        "--category-col", default=None, help="optional column with item categories ('|'-separated)"
    )
    g.add_argument("--title-col", default=None, help="optional column with item titles")


def schema_from_args(args: argparse.Namespace, base: EventSchema | None = None) -> EventSchema:
    """The event schema of the flags given, over ``base`` (default `EventSchema()`)."""
    from userfm.data.schema import EventSchema

    schema = base if base is not None else EventSchema()
    flags = {"user": args.user_col, "item": args.item_col, "action": args.action_col,
             "category": args.category_col, "title": args.title_col}  # fmt: skip
    given = {k: v for k, v in flags.items() if v is not None}
    if args.time_col is not None and args.time_col.lower() == "none":
        given.update(timestamp=None, timestamp_unit="order")
    else:
        if args.time_col is not None:
            given["timestamp"] = args.time_col
            if schema.timestamp_unit == "order":
                given["timestamp_unit"] = "auto"
        if args.time_unit is not None:
            given["timestamp_unit"] = args.time_unit
    return replace(schema, **given)
