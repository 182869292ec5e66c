"""The read plan: per-column decisions `read_events` makes once for the whole input.

`make_plan` looks at the Arrow types of the mapped columns (and, for ``timestamp_unit="auto"``,
at their values) and returns a frozen `ReadPlan`: how each id / attribute column is converted
and how timestamps are read. `userfm.data.normalise` then applies it batch by batch inside
``Dataset.map``. Type errors that concern a whole column (ids of a nested type, a timestamp
column of bools, timestamps in two units) are raised here; value errors in the batches.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.log import ReadStats
from userfm.data.schema import ITEM, TIMESTAMP, USER, EventSchema
from userfm.errors import DataError

logger = logging.getLogger("userfm.data")

__all__ = ["ColumnPlan", "InputColumn", "ReadPlan", "TimestampPlan", "make_plan", "table_columns"]

#: timestamp unit -> ticks per second
UNIT_FACTOR = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
#: the text of a number (int, decimal or exponent notation)
NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
#: the text of an integral float id: "12.0" -> group "12"
_FLOAT_ID_RE = r"^([+-]?\d+)\.0*$"
_ONE_YEAR = 365 * 86_400

#: how an id column is read: text, JSON-encoded text of mixed types, integers, floats
IdKind = Literal["str", "json", "int", "float"]
#: how an attribute column is read: a list (joined with ``|``) or a scalar (cast to text)
AttributeKind = Literal["list", "scalar"]
#: how timestamps are read: row order, an Arrow datetime/date type, numbers, numeric text,
#: date text
TimestampMode = Literal["order", "datetime_type", "number", "number_text", "date_text"]


@dataclass(frozen=True)
class InputColumn:
    """One mapped input column as `make_plan` reads it: its Arrow type, and its chunks.

    ``read`` returns the column's chunks in input order and is called once per whole-column
    pass (the timestamp unit, the count of normalised ids), so a source larger than memory
    reads them from its files batch by batch (`userfm.data.raw_batches`) while an in-memory
    table hands over its own chunks (`table_columns`).

    Attributes:
        type: the column's Arrow type (the same in every chunk).
        read: a fresh iterator over the column's chunks, each a (n_i,) array.
    """

    type: pa.DataType
    read: Callable[[], Iterable[pa.Array]]


def table_columns(table: pa.Table) -> dict[str, InputColumn]:
    """Every column of an in-memory (or memory-mapped) table as an `InputColumn`."""

    def column(name: str) -> InputColumn:
        chunked = table.column(name)
        return InputColumn(chunked.type, lambda: chunked.chunks)

    return {name: column(name) for name in table.column_names}


@dataclass(frozen=True)
class ColumnPlan:
    """How one id or attribute column is converted to canonical strings.

    Attributes:
        canon: the canonical column name (``user``, ``item``, ``action``, an extra, ...).
        source: the input column it is read from (named in errors).
        kind: an `IdKind` for ``user`` / ``item``, an `AttributeKind` for the others.
    """

    canon: str
    source: str
    kind: IdKind | AttributeKind

    @property
    def is_id(self) -> bool:
        """Whether the column holds user / item ids (validated) rather than an attribute."""
        return self.canon in (USER, ITEM)


@dataclass(frozen=True)
class TimestampPlan:
    """How the timestamp column is read.

    Attributes:
        mode: see `TimestampMode`; ``order`` when there is no timestamp column
            (``timestamp = _row``).
        unit: ``s`` / ``ms`` / ``us`` / ``ns`` for the numeric modes (``auto`` already
            resolved), None for ``order`` and the datetime/date modes.
        source: the input column, None for ``order``.
    """

    mode: TimestampMode
    unit: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ReadPlan:
    """Everything `normalise_batch` needs to know about the input, decided once.

    Attributes:
        out: canonical output columns in order: ``user``, ``item``, ``timestamp``, then the
            mapped attributes (``timestamp`` is there even when the row order is the time).
        columns: one `ColumnPlan` per output column except ``timestamp``, in ``out`` order.
        timestamp: how ``timestamp`` is computed.
        dedupe_hash: whether each batch also gets the ``_hash`` column of its canonical values
            that duplicate detection uses (duplicates not kept, and real timestamps).
    """

    out: tuple[str, ...]
    columns: tuple[ColumnPlan, ...]
    timestamp: TimestampPlan
    dedupe_hash: bool

    def column(self, canon: str) -> ColumnPlan:
        """The plan of canonical column ``canon`` (not ``timestamp``)."""
        return next(c for c in self.columns if c.canon == canon)

    @property
    def has_time(self) -> bool:
        """False when the row order is the time (no timestamp column)."""
        return self.timestamp.mode != "order"

    @property
    def resolved_unit(self) -> str:
        """The ``EventSchema.timestamp_unit`` that reads the input the same way again (``auto``
        resolved): what a model trained on the log records for later inputs."""
        if self.timestamp.mode == "order":
            return "order"
        return self.timestamp.unit or "datetime"


def make_plan(
    inputs: Mapping[str, InputColumn],
    schema: EventSchema,
    mapping: dict[str, str],
    stats: ReadStats,
    *,
    dedupe: bool,
) -> ReadPlan:
    """Decide how every mapped input column is read; notes go to ``stats``.

    Args:
        inputs: the raw input's mapped columns (input name -> `InputColumn`; `table_columns`
            of an in-memory table).
        schema: the user's schema (for ``timestamp_unit``).
        mapping: canonical name -> input column (`EventSchema.input_columns`).
        stats: receives ``ids_normalised`` and notes (inferred unit, no timestamp column).
        dedupe: whether duplicates will be looked for (``duplicates != "keep"``).

    Raises:
        DataError: a column of an unsupported type, numbers with ``timestamp_unit="datetime"``,
            numeric timestamps in two units with ``timestamp_unit="auto"``.
    """
    out = list(mapping)
    if TIMESTAMP not in out:
        out.insert(2, TIMESTAMP)
    columns = tuple(
        _column_plan(canon, col, inputs[col], stats)
        for canon, col in mapping.items()
        if canon != TIMESTAMP
    )
    col = mapping.get(TIMESTAMP)
    if col is None:
        stats.notes.append("no timestamp column: row order within the input is the event time")
        timestamp = TimestampPlan(mode="order")
    else:
        timestamp = _timestamp_plan(inputs[col], schema.timestamp_unit, col, stats)
    return ReadPlan(
        out=tuple(out),
        columns=columns,
        timestamp=timestamp,
        dedupe_hash=dedupe and timestamp.mode != "order",
    )


def _column_plan(canon: str, col: str, column: InputColumn, stats: ReadStats) -> ColumnPlan:
    if canon not in (USER, ITEM):
        return ColumnPlan(canon, col, _attr_kind(column.type, col))
    kind = _id_kind(column.type, col)
    if kind in ("str", "json"):
        changed = _count_normalised_ids(column.read())
        if changed:
            stats.ids_normalised += changed
            stats.notes.append(
                f"{changed:,} {canon} ids of column {col!r} normalised (surrounding "
                "spaces removed, '1.0' read as '1')"
            )
    return ColumnPlan(canon, col, kind)


def _timestamp_plan(column: InputColumn, unit: str, col: str, stats: ReadStats) -> TimestampPlan:
    """The mode and unit of timestamp column ``col``, for ``timestamp_unit`` ``unit``; warns
    when an explicit sub-second unit puts every event in 1970."""
    t = value_type(column.type)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        plan = TimestampPlan("datetime_type", None, col)
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        if unit == "datetime":
            raise DataError(
                f"timestamp_unit='datetime' but the column is numeric ({t}); set timestamp_unit "
                "to 's', 'ms', 'us', 'ns' or 'auto'",
                column=col,
            )
        resolved = unit if unit != "auto" else _auto_unit(column, False, col, stats)
        plan = TimestampPlan("number", resolved, col)
    elif _is_text(t):
        if unit == "datetime":
            plan = TimestampPlan("date_text", None, col)
        elif unit != "auto":
            plan = TimestampPlan("number_text", unit, col)
        elif _looks_numeric(column):
            plan = TimestampPlan("number_text", _auto_unit(column, True, col, stats), col)
        else:
            plan = TimestampPlan("date_text", None, col)
    elif pa.types.is_null(t):
        raise DataError("missing timestamp: the column holds only nulls", column=col, row=0)
    else:
        raise DataError(
            f"timestamps must be integers, floats, datetimes or date strings, but the column "
            f"has type {t}",
            column=col,
        )
    if plan.unit in ("ms", "us", "ns") and unit == plan.unit:
        # an explicit sub-second unit that puts every event in 1970: probably seconds
        m, _ = _magnitudes(column, plan.mode == "number_text")
        if m / UNIT_FACTOR[unit] < _ONE_YEAR and m > 1e8:
            note = (
                f"timestamps in column {col!r} read as {UNIT_NAME[unit]} all fall in 1970; "
                f"the values look like unix seconds (timestamp_unit='s'?)"
            )
            stats.notes.append(note)
            logger.warning(note)
    return plan


# ---------------------------------------------------------------------------------------------
# Arrow types and values
# ---------------------------------------------------------------------------------------------
def value_type(t: pa.DataType) -> pa.DataType:
    """The logical value type: dictionary -> its values; JSON-encoded text (``datasets`` uses it
    for JSON fields of mixed types, e.g. ids that are sometimes numbers) -> string."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if _is_json(t):
        return pa.string()
    return t


def _is_json(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"


def plain(arr: pa.Array) -> pa.Array:
    """Decode dictionary arrays and JSON-encoded text into plain arrays."""
    if pa.types.is_dictionary(arr.type):
        return arr.dictionary_decode()
    if _is_json(arr.type):
        return _json_to_text(arr)
    return arr


def _json_to_text(arr: pa.Array) -> pa.Array:
    """JSON texts -> scalar strings (``"b"`` -> ``b``, ``1`` -> ``1``, ``null`` -> null)."""
    s = arr.storage.cast(pa.string())
    s = pc.if_else(pc.equal(s, "null"), pa.scalar(None, pa.string()), s)
    quoted = pc.and_(pc.starts_with(s, '"'), pc.ends_with(s, '"'))
    out = pc.if_else(quoted, pc.utf8_slice_codeunits(s, 1, -1), s)
    escaped = pc.fill_null(pc.and_(quoted, pc.match_substring(s, "\\")), False)
    if pc.any(escaped).as_py():  # rare: unescape those values properly
        values = out.to_pylist()
        for i in np.flatnonzero(escaped.to_numpy(zero_copy_only=False)):
            values[i] = json.loads(s[int(i)].as_py())
        out = pa.array(values, type=pa.string())
    return out


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _id_kind(t: pa.DataType, col: str) -> IdKind:
    if _is_json(t):
        return "json"
    t = value_type(t)
    if _is_text(t):
        return "str"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t) and t.scale == 0:
        return "int"
    if pa.types.is_null(t):
        raise DataError("missing id: the column holds only nulls", column=col, row=0)
    raise DataError(f"ids must be strings or integers, but the column has type {t}", column=col)


def _attr_kind(t: pa.DataType, col: str) -> AttributeKind:
    t = value_type(t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = value_type(t.value_type)
        if (
            pa.types.is_nested(inner)
            or pa.types.is_binary(inner)
            or pa.types.is_large_binary(inner)
        ):
            raise DataError(f"attribute column has unsupported type {t}", column=col)
        return "list"
    if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise DataError(
            f"attribute column has unsupported type {t}; expected strings, numbers or lists of them",
            column=col,
        )
    return "scalar"


def infer_unit(max_abs: float) -> str:
    if max_abs > 1e17:
        return "ns"
    if max_abs > 1e14:
        return "us"
    if max_abs > 1e11:
        return "ms"
    return "s"


#: |value| ranges that look like unix time in each unit: [1e8, 1e11) seconds is 1973-5138
_UNIT_BINS = (1e8, 1e11, 1e14, 1e17)
_BIN_UNITS = ("s", "ms", "us", "ns")


def _magnitudes(column: InputColumn, text: bool) -> tuple[float, dict[str, int]]:
    """Largest absolute value of a numeric (or numeric-text) column, and the first row whose
    value looks like unix time in each unit (values below 1e8 look like none), chunk by chunk."""
    best, first, offset = 0.0, {}, 0
    for chunk in column.read():
        n = len(chunk)
        chunk = plain(chunk)
        if text:
            chunk = pc.utf8_trim_whitespace(chunk)
            numeric = pc.fill_null(pc.match_substring_regex(chunk, NUMBER_RE), False)
            chunk = pc.if_else(numeric, chunk, pa.scalar(None, chunk.type))
        values = np.abs(
            pc.cast(chunk, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        )  # (n,), NaN at nulls
        finite = np.isfinite(values)
        if finite.any():
            best = max(best, float(values[finite].max()))
            kinds = np.digitize(np.where(finite, values, 0.0), _UNIT_BINS)  # 0: below 1e8
            for k in np.unique(kinds[kinds > 0]):
                unit = _BIN_UNITS[int(k) - 1]
                first.setdefault(unit, offset + int(np.argmax(kinds == k)))
        offset += n
    return best, first


def _looks_numeric(column: InputColumn) -> bool:
    """Whether most of the first (up to 1000) non-null values of a text column are numbers."""
    for chunk in column.read():
        chunk = plain(chunk)
        sample = pc.drop_null(chunk.slice(0, 5000))[:1000]
        if len(sample):
            sample = pc.utf8_trim_whitespace(sample)
            numeric = pc.sum(pc.match_substring_regex(sample, NUMBER_RE).cast(pa.int64())).as_py()
            return numeric * 2 >= len(sample)
    return True


def _auto_unit(column: InputColumn, text: bool, col: str, stats: ReadStats) -> str:
    """The unit of the column's largest value; a column whose values look like unix time in
    two units (seconds beside milliseconds) is refused: one unit would put the others in
    1970 or after 2100."""
    m, first = _magnitudes(column, text)
    if len(first) > 1:
        kinds = ", ".join(
            f"{UNIT_NAME[u]} from row {r}" for u, r in sorted(first.items(), key=lambda x: x[1])
        )
        raise DataError(
            f"timestamps mix units ({kinds}); convert the column to one unit (timestamp_unit "
            "applies to every row)",
            column=col,
            row=max(first.values()),
        )
    unit = infer_unit(m)
    note = (
        f"timestamp unit of column {col!r} inferred as {UNIT_NAME[unit]} ('{unit}') from the "
        f"largest value {m:.4g}; set EventSchema(timestamp_unit=...) to override"
    )
    stats.notes.append(note)
    logger.info(note)
    return unit


def text_ids(s: pa.Array) -> pa.Array:
    """Text ids as the log keeps them: surrounding whitespace removed, and the text of an
    integral float (``"1.0"``, how a float column of ids prints) read as the integer (``"1"``),
    as float-typed columns are; other text verbatim (``"007"``)."""
    s = pc.utf8_trim_whitespace(s)
    return pc.replace_substring_regex(s, pattern=_FLOAT_ID_RE, replacement=r"\1")


def _count_normalised_ids(chunks: Iterable[pa.Array]) -> int:
    """How many (non-null) text ids `text_ids` changes, chunk by chunk."""
    changed = 0
    for chunk in chunks:
        s = plain(chunk).cast(pa.string())
        changed += pc.sum(pc.fill_null(pc.not_equal(s, text_ids(s)), False)).as_py() or 0
    return changed
