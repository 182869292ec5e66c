"""Per-batch normalisation: raw input columns -> canonical columns (runs inside ``Dataset.map``).

`normalise_batch` applies a `ReadPlan` to one Arrow batch: ids become exact strings,
attributes strings, timestamps int64 unix seconds, and ``_row`` the input row. Every bad value
raises `DataError` naming the input column and the 0-based input row (``offset`` + position in
the batch); see the bad-input table in the docstring of `userfm.data.readers`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.log import ROW
from userfm.data.read_plan import (
    NUMBER_RE,
    UNIT_FACTOR,
    UNIT_NAME,
    ReadPlan,
    TimestampPlan,
    _attr_kind,
    _id_kind,
    infer_unit,
    plain,
    text_ids,
    value_type,
)
from userfm.data.schema import CATEGORY_SEP, TIMESTAMP
from userfm.errors import DataError

__all__ = ["HASH", "MAX_TIMESTAMP", "normalise_attribute", "normalise_batch", "normalise_ids"]

#: 2100-01-01T00:00:00Z: later timestamps are treated as a unit mistake
MAX_TIMESTAMP = 4_102_444_800
#: the column of per-row hashes of the canonical values (`ReadPlan.dedupe_hash`)
HASH = "_hash"
_INT_RE = r"^[+-]?\d+$"
_EXACT_FLOAT_INT = 2**53


def normalise_batch(batch: pa.Table, indices: list[int], plan: ReadPlan) -> pa.Table:
    """The canonical columns of one batch of raw rows.

    Args:
        batch: raw input rows (the mapped input columns).
        indices: the input rows of the batch (``with_indices=True``); the first is the offset
            that errors and ``_row`` count from.
        plan: from `make_plan`.

    Returns:
        ``plan.out`` columns, then ``_row`` (int64), then ``_hash`` (uint64) when
        ``plan.dedupe_hash``.
    """
    offset = indices[0] if len(indices) else 0
    n = batch.num_rows
    out: dict[str, pa.Array] = {}
    for canon in plan.out:  # in order: the first bad column (user, item, time, ...) is named
        if canon == TIMESTAMP:
            out[canon] = _timestamps(batch, plan.timestamp, offset, n)
            continue
        c = plan.column(canon)
        arr = _combine(batch.column(c.source))
        if c.is_id:
            out[canon] = _ids(arr, c.kind, c.source, offset)
        else:
            out[canon] = _attribute(arr, c.kind)
    out[ROW] = pa.array(np.arange(offset, offset + n, dtype=np.int64))
    if plan.dedupe_hash:
        frame = pa.table({k: out[k] for k in plan.out}).to_pandas()
        out[HASH] = pa.array(pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64))
    return pa.table(out)


def normalise_ids(arr: pa.Array | pa.ChunkedArray, column: str, offset: int = 0) -> pa.Array:
    """One whole id column as the event readers keep it, for other tables keyed by ids (an
    item side table, `userfm.data.items`): the same kind decision (`make_plan`) and the same
    conversion (`normalise_batch`), so ``7``, ``7.0`` and ``" 7 "`` are the one id ``"7"``.

    Args:
        arr: (n,) raw ids of any type the event readers accept.
        column: the input column, named in errors.
        offset: the input row of ``arr[0]`` (errors count rows from it).

    Returns:
        (n,) string ids.

    Raises:
        DataError: a null / empty id, a non-integral or inexact float id, a nested id, or a
            column of a type ids cannot have (names ``column`` and the first bad row).
    """
    kind = _id_kind(arr.type, column)
    return _ids(_combine(arr), kind, column, offset)


def normalise_attribute(arr: pa.Array | pa.ChunkedArray, column: str) -> pa.Array:
    """One whole attribute column as the event readers keep it: scalars cast to text
    (``5.0`` -> ``"5"``), lists joined with ``|``, nulls kept (values are not stripped).

    Args:
        arr: (n,) raw values.
        column: the input column, named in errors.

    Returns:
        (n,) strings, null where the input is null.

    Raises:
        DataError: a column of an unsupported type (nested values, binary).
    """
    return _attribute(_combine(arr), _attr_kind(arr.type, column))


def _combine(col: pa.ChunkedArray) -> pa.Array:
    return plain(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)


def _first(mask: pa.Array | np.ndarray) -> int:
    m = (
        mask.to_numpy(zero_copy_only=False)
        if isinstance(mask, (pa.Array, pa.ChunkedArray))
        else mask
    )
    return int(np.flatnonzero(m)[0])


def _check_nulls(arr: pa.Array, col: str, offset: int, what: str) -> None:
    if arr.null_count:
        i = _first(arr.is_null())
        raise DataError(f"missing {what} (null / empty field)", column=col, row=offset + i)


def _ids(arr: pa.Array, kind: str, col: str, offset: int) -> pa.Array:
    _check_nulls(arr, col, offset, "id")
    if kind == "json":  # ids of mixed JSON types: scalars only
        nested = pc.or_(pc.starts_with(arr, "["), pc.starts_with(arr, "{"))
        if pc.any(nested).as_py():
            i = _first(nested)
            raise DataError(f"nested id value {arr[i].as_py()}", column=col, row=offset + i)
    if kind in ("str", "json"):
        s = text_ids(arr.cast(pa.string()))
        empty = pc.equal(pc.utf8_length(s), 0)
        if pc.any(empty).as_py():
            raise DataError("empty id", column=col, row=offset + _first(empty))
        return s
    if kind == "int":
        return arr.cast(pa.string())
    v = arr.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(v) | (np.floor(v) != v)
    if bad.any():
        i = _first(bad)
        raise DataError(f"non-integral float id {float(v[i])!r}", column=col, row=offset + i)
    big = np.abs(v) >= _EXACT_FLOAT_INT
    if big.any():
        i = _first(big)
        raise DataError(
            f"float id {float(v[i])!r} is too large to be exact (ids were stored as floating point); "
            "store ids as strings or integers",
            column=col,
            row=offset + i,
        )
    return pa.array(v.astype(np.int64)).cast(pa.string())


def _attribute(arr: pa.Array, kind: str) -> pa.Array:
    if kind == "list":
        if pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            arr = arr.cast(pa.list_(value_type(arr.type.value_type)))
        vt = arr.type.value_type
        if pa.types.is_dictionary(vt):
            arr = arr.cast(pa.list_(vt.value_type))
        return pc.binary_join(arr.cast(pa.list_(pa.string())), CATEGORY_SEP)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    return arr.cast(pa.string())


def _timestamps(batch: pa.Table, ts: TimestampPlan, offset: int, n: int) -> pa.Array:
    mode = ts.mode
    if mode == "order":
        return pa.array(np.arange(offset, offset + n, dtype=np.int64))
    col = ts.source
    arr = _combine(batch.column(col))
    if mode == "date_text" or mode == "number_text":
        arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        arr = pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), arr)
    _check_nulls(arr, col, offset, "timestamp")
    if mode == "datetime_type":
        secs = _datetime_seconds(arr)
    elif mode == "date_text":
        secs = _parse_dates(arr, col, offset)
    elif mode == "number_text":
        secs = _number_text_seconds(arr, ts.unit, col, offset)
    else:
        secs = _number_seconds(arr, ts.unit, col, offset)
    _check_range(secs, arr, ts.unit, col, offset)
    return pa.array(secs, type=pa.int64())


def _datetime_seconds(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_date32(t):
        return arr.cast(pa.int32()).to_numpy().astype(np.int64) * 86_400
    if pa.types.is_date64(t):
        return np.floor_divide(arr.cast(pa.int64()).to_numpy(), 1000)
    factor = UNIT_FACTOR[t.unit]
    return np.floor_divide(arr.cast(pa.int64()).to_numpy(), factor)


def _number_seconds(arr: pa.Array, unit: str, col: str, offset: int) -> np.ndarray:
    t = arr.type
    factor = UNIT_FACTOR[unit]
    if pa.types.is_integer(t):
        v = arr.to_numpy()
        if pa.types.is_unsigned_integer(t):
            over = v > np.iinfo(np.int64).max
            if over.any():
                i = _first(over)
                raise DataError(
                    f"timestamp {int(v[i])} is out of range; {_unit_hint(float(v[i]), unit)}",
                    column=col,
                    row=offset + i,
                )
        v = v.astype(np.int64)
        _check_negative(v, arr, col, offset)
        return np.floor_divide(v, factor)
    v = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(v)
    if bad.any():
        i = _first(bad)
        raise DataError(f"unparsable timestamp {float(v[i])!r}", column=col, row=offset + i)
    _check_negative(v, arr, col, offset)
    return _float_seconds(v, factor, unit, col, offset)


def _float_seconds(v: np.ndarray, factor: int, unit: str, col: str, offset: int) -> np.ndarray:
    secs = np.floor(v / factor)
    over = secs > MAX_TIMESTAMP
    if over.any():
        i = _first(over)
        raise DataError(
            f"timestamp {v[i]:.6g} is after 2100-01-01; {_unit_hint(float(v[i]), unit)}",
            column=col,
            row=offset + i,
        )
    return secs.astype(np.int64)


def _number_text_seconds(arr: pa.Array, unit: str, col: str, offset: int) -> np.ndarray:
    ok = pc.match_substring_regex(arr, NUMBER_RE)
    if not pc.all(ok).as_py():
        i = _first(pc.invert(ok))
        raise DataError(
            f"unparsable timestamp {arr[i].as_py()!r} (read as a number in {UNIT_NAME[unit]}; "
            "set EventSchema(timestamp_unit='datetime') for date strings)",
            column=col,
            row=offset + i,
        )
    if pc.all(pc.match_substring_regex(arr, _INT_RE)).as_py():
        try:
            ints = arr.cast(pa.int64())
        except (pa.ArrowInvalid, OverflowError):
            ints = None
        if ints is not None:
            return _number_seconds(ints, unit, col, offset)
    v = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    _check_negative(v, arr, col, offset)
    return _float_seconds(v, UNIT_FACTOR[unit], unit, col, offset)


def _parse_dates(arr: pa.Array, col: str, offset: int) -> np.ndarray:
    s = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
    dt = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
    retry = dt.isna()
    if retry.any():  # other formats (e.g. 01-Jan-1995), slower
        dt = dt.astype("datetime64[us, UTC]")
        dt[retry] = pd.to_datetime(s[retry], format="mixed", utc=True, errors="coerce").astype(
            "datetime64[us, UTC]"
        )
        bad = dt.isna().to_numpy()
        if bad.any():
            i = _first(bad)
            raise DataError(
                f"unparsable timestamp {s.iloc[i]!r} (expected ISO-8601 dates/datetimes, or numbers "
                "with EventSchema.timestamp_unit)",
                column=col,
                row=offset + i,
            )
    values = dt.dt.tz_localize(None).to_numpy()
    secs = values.astype("datetime64[s]").astype(np.int64)
    neg = secs < 0
    if neg.any():
        i = _first(neg)
        raise DataError(f"timestamp {s.iloc[i]!r} is before 1970-01-01", column=col, row=offset + i)
    return secs


def _check_negative(v: np.ndarray, arr: pa.Array, col: str, offset: int) -> None:
    neg = v < 0
    if neg.any():
        i = _first(neg)
        raise DataError(f"negative timestamp {arr[i].as_py()!r}", column=col, row=offset + i)


def _check_range(secs: np.ndarray, arr: pa.Array, unit: str | None, col: str, offset: int) -> None:
    over = secs > MAX_TIMESTAMP
    if over.any():
        i = _first(over)
        value = arr[i].as_py()
        try:
            hint = (
                _unit_hint(float(value), unit)
                if unit is not None
                else "dates after that are not supported"
            )
        except (TypeError, ValueError):
            hint = "dates after that are not supported"
        raise DataError(
            f"timestamp {value!r} is after 2100-01-01; {hint}", column=col, row=offset + i
        )
    neg = secs < 0
    if neg.any():
        i = _first(neg)
        raise DataError(
            f"timestamp {arr[i].as_py()!r} is before 1970-01-01", column=col, row=offset + i
        )


def _unit_hint(value: float, unit: str) -> str:
    guess = infer_unit(abs(value))
    if guess != unit:
        return (
            f"read as {UNIT_NAME[unit]}, it looks like {UNIT_NAME[guess]}: set "
            f"EventSchema(timestamp_unit='{guess}')"
        )
    return "probably a unit mistake: set EventSchema(timestamp_unit='s'|'ms'|'us'|'ns')"
