"""Event schema: maps a user's column names onto userfm's canonical event columns.

The canonical event table (what every reader produces) has these columns:

============  =========  ===========================================================
column        type       meaning
============  =========  ===========================================================
user          string     user id (ids are strings: no precision loss for huge ints)
item          string     item id
timestamp     int64      unix time in seconds
action        string     optional: event type (click, buy, rating value, ...)
category      string     optional: item categories, several joined by ``|``
title         string     optional: item title / text
<extra>       string     optional: any further item attributes named in ``extra``
============  =========  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from userfm.errors import ConfigError

USER, ITEM, TIMESTAMP, ACTION, CATEGORY, TITLE = (
    "user",
    "item",
    "timestamp",
    "action",
    "category",
    "title",
)
REQUIRED_COLUMNS = (USER, ITEM, TIMESTAMP)
OPTIONAL_COLUMNS = (ACTION, CATEGORY, TITLE)
CATEGORY_SEP = "|"

TimestampUnit = Literal["s", "ms", "us", "ns", "datetime", "auto", "order"]


@dataclass(frozen=True)
class EventSchema:
    """Which of the input's columns hold each canonical field.

    Args:
        user: input column with user ids.
        item: input column with item ids.
        timestamp: input column with event times, or ``None`` when the input is already in
            chronological order per user (SASRec-style files): row order becomes the time.
        action: optional input column with the event type.
        category: optional input column with item categories (``|``-separated when several).
        title: optional input column with item titles.
        extra: further input columns kept as string item attributes (same name).
        timestamp_unit: how to read numeric timestamps (``s``, ``ms``, ``us``, ``ns``), ``datetime``
            for date strings / datetime types, ``auto`` to infer from the column type and the
            magnitude of the values, ``order`` to use row order (same as ``timestamp=None``).

    Example:
        >>> EventSchema(user="reviewerID", item="asin", timestamp="unixReviewTime")
        EventSchema(user='reviewerID', item='asin', timestamp='unixReviewTime', ...)
    """

    user: str = USER
    item: str = ITEM
    timestamp: str | None = TIMESTAMP
    action: str | None = None
    category: str | None = None
    title: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)
    timestamp_unit: TimestampUnit = "auto"

    def __post_init__(self) -> None:
        for name in ("user", "item"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"EventSchema.{name} must be a non-empty column name, got {value!r}"
                )
        if self.timestamp_unit not in ("s", "ms", "us", "ns", "datetime", "auto", "order"):
            raise ConfigError(
                "EventSchema.timestamp_unit must be one of s, ms, us, ns, datetime, auto, order; "
                f"got {self.timestamp_unit!r}"
            )
        object.__setattr__(self, "extra", tuple(self.extra))
        reserved = set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS) & set(self.extra)
        if reserved:
            raise ConfigError(
                f"EventSchema.extra cannot hold canonical names {sorted(reserved)}: "
                "map those columns with the field of the same name instead"
            )
        mapped = [c for c in self.input_columns().values()]
        dup = {c for c in mapped if mapped.count(c) > 1}
        if dup:
            raise ConfigError(f"EventSchema maps one input column to several fields: {sorted(dup)}")

    def input_columns(self) -> dict[str, str]:
        """Canonical name -> input column name, for every mapped field."""
        out = {USER: self.user, ITEM: self.item}
        if self.timestamp is not None and self.timestamp_unit != "order":
            out[TIMESTAMP] = self.timestamp
        for canon in OPTIONAL_COLUMNS:
            col = getattr(self, canon)
            if col is not None:
                out[canon] = col
        for col in self.extra:
            out[col] = col
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extra"] = list(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EventSchema:
        return cls(**{**d, "extra": tuple(d.get("extra", ()))})


def schema_dict(schema: EventSchema | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` as the plain dict of its fields, checked (a dict is built into an
    `EventSchema` first, so a bad field is a `ConfigError` now); None stays None. The data
    modules keep their schema this way: Lightning saves hyper-parameters in checkpoints,
    which are read back with ``weights_only``."""
    if schema is None:
        return None
    if isinstance(schema, Mapping):
        schema = EventSchema.from_dict(dict(schema))
    return schema.to_dict()
