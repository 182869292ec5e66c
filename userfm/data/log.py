"""`EventLog`: a validated, per-user time-ordered event table backed by a HF `datasets.Dataset`.

The table is Arrow, memory-mapped when it comes from a file, so logs larger than RAM can be
read and iterated user by user. Readers (`userfm.data.readers`) build it; everything else
(vocabulary, sequences, the embedding API, pretraining) consumes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.schema import ACTION, CATEGORY, ITEM, TIMESTAMP, TITLE, USER, EventSchema
from userfm.errors import EmptyLogError

logger = logging.getLogger("userfm.data")

ROW = "_row"  # original input row number: stable tie-break and error messages


def take_rows(
    dataset: datasets.Dataset, indices: np.ndarray, batch_size: int = 65_536
) -> datasets.Dataset:
    """The rows ``indices`` of ``dataset`` (in that order), as a new dataset without indices mapping.

    ``Dataset.select(...).flatten_indices()`` gathers row by row (about 70 us per row); this
    takes batch by batch with pyarrow (sorted within a batch for locality), writing to the
    dataset's cache like any ``map`` when it is file-backed, so memory stays bounded.

    Args:
        dataset: any dataset (a selected / shuffled one too).
        indices: (n,) int64 row positions, n <= len(dataset).
        batch_size: rows gathered per step.
    """
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    assert len(indices) <= len(dataset)
    table = dataset.data.table  # the physical table: compose with an indices mapping if any
    if dataset._indices is not None:
        indices = dataset._indices.column(0).to_numpy().astype(np.int64)[indices]

    def gather(_batch: pa.Table, idx: list[int]) -> pa.Table:
        want = indices[idx[0] : idx[0] + len(idx)]
        perm = np.argsort(want, kind="stable")
        got = table.take(want[perm])
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(len(perm))
        return got.take(inverse)

    digest = hashlib.blake2b(indices.tobytes(), digest_size=8).hexdigest()
    fingerprint = hashlib.blake2b(
        f"{dataset._fingerprint}-take-{digest}".encode(), digest_size=16
    ).hexdigest()
    out = (
        dataset.select(range(len(indices)))
        .with_format("arrow")
        .map(
            gather,
            batched=True,
            with_indices=True,
            batch_size=batch_size,
            writer_batch_size=batch_size,
            features=dataset.features,
            new_fingerprint=fingerprint,
            desc="userfm: ordering events",
        )
    )
    return out.with_format(None)


@dataclass
class ReadStats:
    """What reading a log did, so that nothing is lost silently.

    Attributes:
        rows_read: rows in the input.
        rows_kept: rows in the resulting log.
        duplicates_dropped: exact duplicate rows removed (first occurrence kept).
        rows_reordered: rows that moved when the input was sorted by (user, time); None for a
            log prepared in shards (`userfm.data.prepare`), whose users are grouped per shard
            and which keeps no global order to compare with.
        rows_time_reordered: rows whose place among their user's events changed, i.e. that
            were out of time order in the input (the rest of ``rows_reordered`` only moved to
            group users).
        short_users_dropped: users removed for having fewer than ``min_events`` events.
        short_user_rows_dropped: rows those users had.
        single_event_users: users left with exactly one event (kept; they cannot be trained on
            with next-item objectives but can be embedded).
        users: distinct users kept.
        items: distinct items kept.
        ids_normalised: user and item id values rewritten to their canonical text (surrounding
            spaces removed, ``"1.0"`` read as ``"1"``), so that one id is one user / item.
        notes: human-readable notes on any other handling (e.g. the timestamp unit inferred).
    """

    rows_read: int = 0
    rows_kept: int = 0
    duplicates_dropped: int = 0
    rows_reordered: int | None = 0
    rows_time_reordered: int = 0
    short_users_dropped: int = 0
    short_user_rows_dropped: int = 0
    single_event_users: int = 0
    users: int = 0
    items: int = 0
    ids_normalised: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def _reordered(self) -> str:
        if self.rows_reordered is None:
            return f"{self.rows_time_reordered:,} rows re-sorted by time; "
        return (
            f"{self.rows_reordered:,} rows moved to group users, "
            f"{self.rows_time_reordered:,} of them re-sorted by time; "
        )

    def summary(self) -> str:
        """One line for logs and the CLI."""
        s = (
            f"{self.rows_kept:,}/{self.rows_read:,} events kept, {self.users:,} users, "
            f"{self.items:,} items; dropped: {self.duplicates_dropped:,} exact duplicates, "
            f"{self.short_user_rows_dropped:,} events of {self.short_users_dropped:,} users "
            f"below min_events; {self._reordered()}"
            f"{self.single_event_users:,} single-event users"
        )
        return s + ("; " + "; ".join(self.notes) if self.notes else "")


@dataclass
class UserHistory:
    """One user's events in chronological order (numpy arrays of equal length L).

    Attributes:
        user: user id.
        items: (L,) item ids (str).
        timestamps: (L,) int64 unix seconds, or None when the log has no time.
        actions: (L,) action ids (str) or None.
        categories: (L,) ``|``-joined category strings or None.
        titles: (L,) item titles (str) or None when the log has none.
    """

    user: str
    items: np.ndarray
    timestamps: np.ndarray | None = None
    actions: np.ndarray | None = None
    categories: np.ndarray | None = None
    titles: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, s: slice) -> UserHistory:
        """Slice the events (e.g. ``h[:-1]`` drops the most recent one)."""
        return UserHistory(
            self.user,
            self.items[s],
            None if self.timestamps is None else self.timestamps[s],
            None if self.actions is None else self.actions[s],
            None if self.categories is None else self.categories[s],
            None if self.titles is None else self.titles[s],
        )


class EventLog:
    """Events sorted by (user, timestamp, input row): ties keep the input order.

    Args:
        dataset: canonical columns (see `userfm.data.schema`) plus ``_row``, already validated.
        stats: the reader's statistics; ``rows_reordered``, ``users``, ``items`` and
            ``single_event_users`` are filled in here.
        has_time: False when timestamps are row order (SASRec-style input without times).
        schema: the `EventSchema` the input was read with, timestamp unit resolved (what
            `read_events` passes; a model trained on the log records it).

    Raises:
        EmptyLogError: the dataset has no rows.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        stats: ReadStats | None = None,
        *,
        has_time: bool = True,
        schema: EventSchema | None = None,
    ):
        if len(dataset) == 0:
            raise EmptyLogError("the event log is empty: no events to read")
        if dataset._indices is not None:  # `dataset.data.table` below must be the logical rows
            dataset = take_rows(dataset, np.arange(len(dataset)))
        self.stats = stats if stats is not None else ReadStats(rows_read=len(dataset))
        self.has_time = has_time
        self.schema = schema
        if ROW not in dataset.column_names:
            dataset = dataset.add_column(ROW, np.arange(len(dataset), dtype=np.int64))
        table = dataset.data.table
        order = pc.sort_indices(
            table.select([USER, TIMESTAMP, ROW]),
            sort_keys=[(USER, "ascending"), (TIMESTAMP, "ascending"), (ROW, "ascending")],
        )
        order_np = order.to_numpy()
        self.stats.rows_reordered = int((order_np != np.arange(len(order_np))).sum())
        if not np.array_equal(order_np, np.arange(len(order_np))):
            dataset = take_rows(dataset, order_np)
        self.dataset = dataset
        self._table: pa.Table = dataset.data.table  # zero-copy (memory-mapped for files)
        users_np = self._table.column(USER).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, users_np[1:] != users_np[:-1]])
        self.offsets = np.r_[starts, len(users_np)].astype(
            np.int64
        )  # user u: [offsets[u], offsets[u+1])
        self.user_ids: np.ndarray = users_np[starts]
        lengths = np.diff(self.offsets)
        self.stats.users = len(starts)
        self.stats.items = len(pc.unique(self._table.column(ITEM)))
        self.stats.single_event_users = int((lengths == 1).sum())
        self.stats.rows_kept = len(dataset)
        # rows whose place among their user's events changed: out of time order in the input
        # (grouping the users moves rows too, but says nothing about time)
        rows = order_np.astype(np.int64)  # input row of each sorted row
        by_input = np.lexsort((rows, np.repeat(np.arange(len(starts)), lengths)))
        self.stats.rows_time_reordered = int((by_input != np.arange(len(rows))).sum())
        self._index = None
        logger.info("event log: %s", self.stats.summary())

    # ---- sizes and columns -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        """(num_users,) events per user, in `user_ids` order."""
        return np.diff(self.offsets)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.dataset.column_names if c != ROW]

    def has(self, column: str) -> bool:
        return column in self.dataset.column_names

    def to_pandas(self):
        """The log as a pandas DataFrame (loads it into memory)."""
        return self.dataset.remove_columns([ROW]).to_pandas()

    # ---- per-user access ---------------------------------------------------------------
    def history(self, user: str) -> UserHistory:
        """The history of one user (KeyError naming the user if unknown)."""
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.user_ids)}
        try:
            i = self._index[str(user)]
        except KeyError:
            raise KeyError(f"user {user!r} is not in this event log") from None
        return self.history_at(i)

    def history_at(self, index: int) -> UserHistory:
        """The history of the ``index``-th user (in `user_ids` order)."""
        if not 0 <= index < self.num_users:
            raise IndexError(f"user index {index} out of range for {self.num_users} users")
        return next(self._slice(index, index + 1))

    def iter_histories(self, chunk_users: int = 4096) -> Iterator[UserHistory]:
        """All users' histories in log order, reading ``chunk_users`` users at a time."""
        for lo in range(0, self.num_users, chunk_users):
            yield from self._slice(lo, min(lo + chunk_users, self.num_users))

    def _slice(self, lo: int, hi: int) -> Iterator[UserHistory]:
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        t = self._table.slice(a, b - a)
        cols = {
            c: t.column(c).to_numpy(zero_copy_only=False)
            for c in (ITEM, TIMESTAMP, ACTION, CATEGORY, TITLE)
            if c in t.column_names
        }
        for u in range(lo, hi):
            s, e = int(self.offsets[u]) - a, int(self.offsets[u + 1]) - a
            yield UserHistory(
                user=str(self.user_ids[u]),
                items=cols[ITEM][s:e],
                timestamps=cols[TIMESTAMP][s:e] if self.has_time else None,
                actions=cols[ACTION][s:e] if ACTION in cols else None,
                categories=cols[CATEGORY][s:e] if CATEGORY in cols else None,
                titles=cols[TITLE][s:e] if TITLE in cols else None,
            )

    def item_attributes(
        self, columns: tuple[str, ...] = (CATEGORY, TITLE)
    ) -> dict[str, dict[str, str]]:
        """item id -> {attribute: value} for the given columns (last value seen wins)."""
        present = [c for c in columns if self.has(c)]
        if not present:
            return {}
        df = self._table.select([ITEM, *present]).to_pandas().drop_duplicates(ITEM, keep="last")
        return {row[ITEM]: {c: row[c] for c in present} for row in df.to_dict("records")}
