"""Read raw interaction logs into a validated `EventLog`.

`read_events` accepts a path to a parquet / csv / tsv / jsonl (``.json``) file, a pandas
DataFrame, a pyarrow Table or a HF `datasets.Dataset`. Files are read through HF `datasets`
(``Dataset.from_parquet`` / ``from_csv`` / ``from_json``): the data are cached as Arrow and
memory-mapped, and validation runs batch by batch (``Dataset.map(batched=True)`` with pyarrow
compute inside), so logs larger than memory can be read.

Output: the canonical columns of `userfm.data.schema` (``user``, ``item`` strings; ``timestamp``
int64 unix seconds; optional ``action`` / ``category`` / ``title`` / extra attribute strings)
plus ``_row``, the 0-based row of each event in the input (for csv/tsv files: data rows, the
header line is not counted).

Canonical values:

* ids are strings. Integer ids keep every digit (csv/tsv columns are read as text, parquet
  ``uint64`` is converted exactly). Float ids that are integral become integer strings
  (``1.0`` -> ``"1"``), and so does their text in csv / jsonl (``"1.0"`` -> ``"1"``). Text ids
  lose surrounding whitespace and are otherwise kept verbatim (``"007"`` stays ``"007"``);
  what was changed is counted in ``ReadStats.ids_normalised``.
* timestamps: integers / floats in unit ``s``, ``ms``, ``us`` or ``ns`` (``timestamp_unit``),
  ``auto`` infers the unit from the largest value (> 1e11 -> ms, > 1e14 -> us, > 1e17 -> ns,
  else s) and records which in ``ReadStats.notes``. Arrow/pandas datetime and date types are
  used as they are. Strings are parsed as numbers when they look like numbers, otherwise as
  ISO-8601 dates/datetimes (other date formats such as ``01-Jan-1995`` are tried next); naive
  datetimes are UTC. Fractions of a second are floored.
* with ``EventSchema(timestamp=None)`` or ``timestamp_unit="order"`` the row order within the
  input is the time (``timestamp = _row``) and ``EventLog.has_time`` is False.
* attribute columns (action, category, title, extras) are cast to strings (``5.0`` -> ``"5"``,
  ``True`` -> ``"true"``); a list column is joined with ``|`` (``["a", "b"]`` -> ``"a|b"``).
  Nulls are allowed there and stay null.

Bad input: a typed error from `userfm.errors` naming the user-facing column and the first
offending 0-based input row, or a documented handling that is counted in `ReadStats` and
logged on the ``userfm.data`` logger.

==============================================  ============================================
input                                           handling
==============================================  ============================================
file does not exist                             ``FileNotFoundError`` naming the path
unknown file extension                          ``FileFormatError`` listing the supported ones
file content is not its format (csv named       ``FileFormatError`` naming the file and the
.parquet, binary named .csv, parquet named      kind detected from its first bytes (parquet
.jsonl, ...)                                    magic ``PAR1``; NUL bytes -> binary; gzip/zip)
text that is not valid in ``encoding``          ``FileFormatError`` naming the file, suggesting
                                                ``encoding="latin-1"``
unparsable csv/json (a line with too many      ``FileFormatError`` naming the file (a line
fields, broken JSON)                            with too few fields gives nulls, see below)
JSON field of mixed types (ids sometimes        values read as text (``1`` -> ``"1"``); a
numbers, sometimes strings)                     nested value in an id column -> ``DataError``
empty file, header only, zero rows              ``EmptyLogError``
a mapped column is missing                      ``SchemaError`` listing the columns present
id / timestamp column of the wrong type         ``DataError`` naming column and type (e.g.
(bool or list timestamps, nested ids)           ``list<item: int64>``)
null or empty (blank) user / item id            ``DataError`` (column, first row)
non-integral float id (``1.5``) or float id     ``DataError`` (column, first row)
beyond 2**53 (not exact)
null / unparsable timestamp                     ``DataError`` (column, first row, value)
negative timestamp (before 1970)                ``DataError`` (column, first row)
timestamp after 2100-01-01 (usually a unit      ``DataError`` (column, first row) with a hint
mistake, e.g. ms read as s)                     to set ``EventSchema.timestamp_unit``
numeric timestamps in two units (unix seconds   ``DataError`` naming the first row of each
beside milliseconds), ``timestamp_unit="auto"``  unit (values >= 1e8 are sorted by magnitude)
explicit unit that puts every event in 1970     kept; a note in ``ReadStats.notes`` and a
although the values look like unix seconds      warning (probably the wrong unit)
rows not sorted by (user, time)                 sorted (stable: ties keep input order),
                                                counted in ``rows_reordered``
exact duplicate rows (all mapped columns        ``duplicates="drop"`` (default): first kept,
equal after normalisation)                      others dropped, ``duplicates_dropped``, warning;
                                                ``"error"``: ``DataError`` naming the first
                                                duplicate row and the row it repeats;
                                                ``"keep"``: kept. Without timestamps
                                                (row-order time) no two rows are duplicates.
users with fewer than ``min_events`` events     dropped, ``short_users_dropped`` and
                                                ``short_user_rows_dropped``, info log line;
                                                ``EmptyLogError`` if no user is left
users with a single event                       kept, counted in ``single_event_users``
==============================================  ============================================

Code: this module checks the arguments and runs the steps; `userfm.data.raw_input` opens the
source (file checks), `userfm.data.read_plan` decides per column how to read it (a frozen
`ReadPlan`), `userfm.data.normalise` converts it batch by batch, and `userfm.data.drop_rows`
drops duplicates and short users.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Literal

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa

from userfm.data.drop_rows import drop_rows
from userfm.data.log import ROW, EventLog, ReadStats
from userfm.data.normalise import HASH, MAX_TIMESTAMP, normalise_batch
from userfm.data.raw_input import SUPPORTED_EXTENSIONS, open_source, read_table
from userfm.data.read_plan import ReadPlan, make_plan, table_columns
from userfm.data.schema import ACTION, CATEGORY, ITEM, TIMESTAMP, TITLE, USER, EventSchema
from userfm.errors import ConfigError
from userfm.progress import resolve_progress
from userfm.quiet import datasets_progress

__all__ = ["read_events", "read_table", "SUPPORTED_EXTENSIONS", "MAX_TIMESTAMP"]

#: rows per `Dataset.map` batch (and per Arrow write)
_BATCH_SIZE = 65_536


def read_events(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    schema: EventSchema | None = None,
    *,
    format: str | None = None,
    min_events: int = 1,
    duplicates: Literal["drop", "keep", "error"] = "drop",
    encoding: str = "utf-8",
    sep: str | None = None,
    cache_dir: str | None = None,
    progress: bool | None = None,
) -> EventLog:
    """Read, validate and normalise an interaction log (see the module docstring for details).

    Args:
        source: path to a parquet / csv / tsv / jsonl / json file, a pandas DataFrame, a pyarrow
            Table or a `datasets.Dataset`.
        schema: which input columns hold user, item, timestamp and attributes (default: columns
            named ``user``, ``item``, ``timestamp``, unit inferred).
        format: ``parquet``, ``csv``, ``tsv``, ``jsonl`` or ``json``; default from the file
            extension. Ignored for in-memory sources.
        min_events: users with fewer events (after dropping duplicates) are dropped and counted.
        duplicates: what to do with exact duplicate rows: ``drop`` (keep the first), ``keep``,
            or ``error``.
        encoding: text encoding of csv/tsv/jsonl files (e.g. ``"latin-1"``).
        sep: csv field separator (default ``,`` for csv and a tab for tsv; several characters,
            e.g. ``::``, use pandas' python engine; ``\\s+`` splits on any whitespace).
        cache_dir: where HF `datasets` caches the Arrow copy of a file (default: its own cache).
        progress: show the reading and validation progress bars; None (default): only when
            stderr is a terminal.

    Returns:
        The validated `EventLog`, sorted by (user, timestamp, input row); ``log.stats`` says what
        reading did.

    Raises:
        FileNotFoundError: the file does not exist.
        FileFormatError: unknown extension, content that is not the format, undecodable text.
        SchemaError: a mapped column is missing.
        DataError: an invalid value (names the column and the first bad row).
        EmptyLogError: no events (empty input, or every user below ``min_events``).
        ConfigError: an invalid argument.
    """
    schema = schema if schema is not None else EventSchema()
    check_read_arguments(schema, min_events, duplicates)
    with datasets_progress(progress=resolve_progress(progress)):
        raw = open_source(
            source, schema, format=format, encoding=encoding, sep=sep, cache_dir=cache_dir
        )
        stats = ReadStats(rows_read=len(raw))
        mapping = schema.input_columns()  # canonical -> input column
        plan = make_plan(
            table_columns(raw.data.table), schema, mapping, stats, dedupe=duplicates != "keep"
        )
        canon = _normalise(raw, plan)
        canon = drop_rows(canon, plan, mapping, stats, duplicates=duplicates, min_events=min_events)
        # the resolved unit is what a model trained on the log records, so that later inputs
        # are read the same way
        resolved = replace(schema, timestamp_unit=plan.resolved_unit)
        return EventLog(canon, stats, has_time=plan.has_time, schema=resolved)  # orders rows


def check_read_arguments(schema: EventSchema, min_events: int, duplicates: str) -> None:
    """`ConfigError` naming the first invalid argument of `read_events`."""
    if not isinstance(schema, EventSchema):
        raise ConfigError(f"schema must be an EventSchema, got {type(schema).__name__}")
    if (
        isinstance(min_events, bool)
        or not isinstance(min_events, (int, np.integer))
        or min_events < 1
    ):
        raise ConfigError(f"min_events must be an integer >= 1, got {min_events!r}")
    if duplicates not in ("drop", "keep", "error"):
        raise ConfigError(f"duplicates must be 'drop', 'keep' or 'error', got {duplicates!r}")
    reserved = {USER, ITEM, TIMESTAMP, ACTION, CATEGORY, TITLE, ROW, HASH}
    clash = sorted(set(schema.extra) & reserved)
    if clash:
        raise ConfigError(
            f"EventSchema.extra names {clash}, which are canonical column names; rename those "
            "input columns first"
        )


def _normalise(raw: datasets.Dataset, plan: ReadPlan) -> datasets.Dataset:
    """The canonical columns of every row of ``raw``, batch by batch (memory-mapped output)."""
    features = datasets.Features(
        {
            **{
                canon: datasets.Value("int64" if canon == TIMESTAMP else "string")
                for canon in plan.out
            },
            ROW: datasets.Value("int64"),
            **({HASH: datasets.Value("uint64")} if plan.dedupe_hash else {}),
        }
    )
    canon = raw.with_format("arrow").map(
        normalise_batch,
        batched=True,
        with_indices=True,
        batch_size=_BATCH_SIZE,
        writer_batch_size=_BATCH_SIZE,
        remove_columns=raw.column_names,
        features=features,
        fn_kwargs={"plan": plan},
        desc="userfm: validating events",
    )
    return canon.with_format(None)
