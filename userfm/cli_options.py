"""The options several commands of the CLI share, written once (jsonargparse, as the
LightningCLI stages): switches, ``--progress``, and the event schema.

The schema is one typed group, ``--schema.user`` ... ``--schema.timestamp_unit`` on `userfm
embed`, `userfm eval ...` and `userfm adapters chat`, spelled as ``--data.schema.*`` /
``--data.log_schema.*`` on the stages, and built from `EventSchema`'s own fields, types and
docstring.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

    from userfm.data.schema import EventSchema


def add_switch(p: ArgumentParser, name: str, help: str) -> None:
    """A ``--name`` switch of ``p``: False unless given."""
    from jsonargparse import ActionYesNo

    p.add_argument(f"--{name}", action=ActionYesNo(no_prefix=None), default=False, help=help)


def add_progress(p: ArgumentParser) -> None:
    """``--progress`` / ``--no_progress``; unset (None) follows the terminal
    (`userfm.progress.resolve_progress`)."""
    from jsonargparse import ActionYesNo

    p.add_argument(
        "--progress",
        action=ActionYesNo,
        default=None,
        help="progress bars (default: when stderr is a terminal); --no_progress turns them off",
    )


def add_schema_args(p: ArgumentParser) -> None:
    """`EventSchema`'s fields as the ``--schema.<field>`` group of ``p``. Each defaults to
    ``None`` (not given), so a command lays the given ones over a base schema: `userfm embed`
    starts from the schema the model was trained with."""
    from typing import get_type_hints

    import docstring_parser

    from userfm.data.schema import EventSchema

    hints = get_type_hints(EventSchema)
    helps = {d.arg_name: d.description for d in docstring_parser.parse(EventSchema.__doc__).params}
    g = p.add_argument_group(
        "input columns (the event schema, as the stages' --data.schema; `userfm embed` starts "
        "from the one the model was trained with)"
    )
    for f in fields(EventSchema):
        g.add_argument(
            f"--schema.{f.name}",
            type=hints[f.name] | None,
            default=None,
            help=" ".join(helps[f.name].split()),
        )


def schema_from_args(args: Any, base: EventSchema | None = None) -> EventSchema:
    """The event schema of the ``--schema.*`` options given, over ``base`` (default
    `EventSchema()`). Naming a time column turns a base read in row order back to ``auto``."""
    from userfm.data.schema import EventSchema

    schema = base if base is not None else EventSchema()
    given = {k: v for k, v in vars(args.schema).items() if v is not None}
    if "timestamp" in given and "timestamp_unit" not in given and schema.timestamp_unit == "order":
        given["timestamp_unit"] = "auto"
    return replace(schema, **given)
