"""Rows `read_events` drops after normalisation: exact duplicates and users below ``min_events``.

Both are counted in `ReadStats` and logged on the ``userfm.data`` logger (see the bad-input
table in the docstring of `userfm.data.readers`).
"""

from __future__ import annotations

import logging
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.log import ROW, ReadStats, take_rows
from userfm.data.normalise import HASH
from userfm.data.read_plan import ReadPlan
from userfm.data.schema import USER
from userfm.errors import DataError, EmptyLogError

logger = logging.getLogger("userfm.data")

__all__ = [
    "drop_rows",
    "duplicate_error",
    "log_duplicates_dropped",
    "log_short_users_dropped",
    "no_events_left",
]


def drop_rows(
    canon: datasets.Dataset,
    plan: ReadPlan,
    mapping: dict[str, str],
    stats: ReadStats,
    *,
    duplicates: Literal["drop", "keep", "error"],
    min_events: int,
) -> datasets.Dataset:
    """``canon`` without its duplicate rows and short users, and without the ``_hash`` column.

    Args:
        canon: normalised rows (`normalise_batch` output), in input order.
        plan: the plan they were normalised with (``dedupe_hash``: whether to look for
            duplicates).
        mapping: canonical name -> input column (named in the duplicate error).
        stats: receives ``duplicates_dropped``, ``short_users_dropped`` and
            ``short_user_rows_dropped``.
        duplicates: ``drop``, ``keep`` or ``error`` (see `read_events`).
        min_events: users with fewer events (after dropping duplicates) are dropped.

    Raises:
        DataError: a duplicate row with ``duplicates="error"``.
        EmptyLogError: no user has ``min_events`` events.
    """
    keep = np.ones(len(canon), dtype=bool)
    if plan.dedupe_hash:
        _mark_duplicates(canon.data.table, keep, list(plan.out), duplicates, mapping, stats)
        canon = canon.remove_columns([HASH])
    if min_events > 1:
        _mark_short_users(canon.data.table.column(USER), keep, min_events, stats)
    if not keep.all():
        canon = take_rows(canon, np.flatnonzero(keep))
    return canon


def _mark_duplicates(
    table: pa.Table,
    keep: np.ndarray,
    cols: list[str],
    duplicates: str,
    mapping: dict[str, str],
    stats: ReadStats,
) -> None:
    """Clear ``keep`` (in place) at every row that repeats an earlier one."""
    dup_rows = _duplicate_rows(table, cols, duplicates, mapping)
    if len(dup_rows):
        keep[dup_rows] = False
        stats.duplicates_dropped = len(dup_rows)
        log_duplicates_dropped(len(dup_rows), int(dup_rows[0]))


def log_duplicates_dropped(count: int, first: int) -> None:
    """The warning that ``count`` exact duplicates were dropped, the first at input row
    ``first`` (`read_events` and `userfm.data.prepare` say it alike)."""
    logger.warning(
        "dropped %d exact duplicate rows (first at row %d); pass duplicates='keep' to keep them",
        count,
        first,
    )


def log_short_users_dropped(stats: ReadStats, min_events: int) -> None:
    """The info line on the users ``min_events`` dropped (counts in ``stats``)."""
    logger.info(
        "dropped %d users with fewer than min_events=%d events (%d events)",
        stats.short_users_dropped,
        min_events,
        stats.short_user_rows_dropped,
    )


def no_events_left(min_events: int) -> EmptyLogError:
    """The error when no user has ``min_events`` events."""
    return EmptyLogError(
        f"no events left: every user has fewer than min_events={min_events} events"
    )


def duplicate_error(first: int, original: int, mapping: dict[str, str]) -> DataError:
    """The error of ``duplicates="error"``: input row ``first`` repeats row ``original`` in
    every column ``mapping`` maps (canonical name -> input column)."""
    return DataError(
        f"exact duplicate event: row {first} repeats row {original} in every mapped column "
        f"({', '.join(mapping.values())}); pass duplicates='drop' or 'keep'",
        row=first,
    )


def _mark_short_users(
    users: pa.ChunkedArray, keep: np.ndarray, min_events: int, stats: ReadStats
) -> None:
    """Clear ``keep`` (in place) at the kept rows of users with fewer than ``min_events`` kept
    rows."""
    counts = pc.value_counts(pc.filter(users, pa.array(keep)) if not keep.all() else users)
    short = counts.field("values").filter(pc.less(counts.field("counts"), min_events))
    if len(short):
        short_mask = pc.is_in(users, value_set=short).to_numpy(zero_copy_only=False) & keep
        stats.short_users_dropped = len(short)
        stats.short_user_rows_dropped = int(short_mask.sum())
        keep &= ~short_mask
        log_short_users_dropped(stats, min_events)
    if not keep.any():
        raise no_events_left(min_events)


def _duplicate_rows(
    table: pa.Table, cols: list[str], duplicates: str, mapping: dict[str, str]
) -> np.ndarray:
    """Positions of rows equal to an earlier row in every canonical column (hash, then verify)."""
    hashes = table.column(HASH)
    counts = pc.value_counts(hashes)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return np.zeros(0, dtype=np.int64)
    cand = table.filter(pc.is_in(hashes, value_set=repeated)).select([*cols, ROW]).to_pandas()
    dup = cand.duplicated(subset=cols, keep="first").to_numpy()
    rows = cand[ROW].to_numpy()[dup]
    if duplicates == "error" and len(rows):
        first = int(rows[0])
        key = cand.loc[cand[ROW] == first, cols].iloc[0]
        same = (cand[cols] == key) | (cand[cols].isna() & key.isna())
        original = int(cand.loc[same.all(axis=1), ROW].iloc[0])
        raise duplicate_error(first, original, mapping)
    return rows.astype(np.int64)
