"""`load_source`: the event log a config names ("synthetic", a file, or a public dataset's folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from userfm.data.formats import (
    load_amazon_reviews,
    load_movielens_1m,
    load_movielens_100k,
    load_sasrec_txt,
)
from userfm.data.log import EventLog
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError

FORMATS = ("auto", "movielens-100k", "movielens-1m", "amazon", "sasrec")


def load_source(
    source: str,
    *,
    format: str = "auto",
    schema: dict[str, Any] | None = None,
    synthetic: dict[str, Any] | None = None,
    min_events: int = 1,
) -> EventLog:
    """Read the training log named by a config.

    Args:
        source: ``"synthetic"`` (the embedded generator), or a path: an event file for
            ``format="auto"``, or the folder / file of a public format.
        format: ``auto`` (by file extension), ``movielens-100k``, ``movielens-1m``,
            ``amazon``, ``sasrec``.
        schema: `EventSchema` fields for ``auto`` files (column names).
        synthetic: `SyntheticConfig` fields when ``source="synthetic"``.
        min_events: drop (and count) users with fewer events.
    """
    if format not in FORMATS:
        raise ConfigError(f"`format` must be one of {FORMATS}, got {format!r}")
    if source == "synthetic":
        events = generate_synthetic_log(SyntheticConfig(**(synthetic or {})))
        schema_ = EventSchema(action="action", category="category", title="title")
        return read_events(events, schema_, min_events=min_events)
    path = Path(source).expanduser()
    loaders = {
        "movielens-100k": load_movielens_100k,
        "movielens-1m": load_movielens_1m,
        "amazon": load_amazon_reviews,
        "sasrec": load_sasrec_txt,
    }
    if format in loaders:
        return loaders[format](path, min_events=min_events)
    return read_events(path, EventSchema(**schema) if schema else None, min_events=min_events)
