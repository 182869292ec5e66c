"""Turn a `UserHistory` (raw ids, unix times) into index arrays the encoder reads.

Time features follow the architecture note: a log-bucketed gap to the previous event, the
hour of day and the weekday (UTC). All are shifted so that 0 means padding / unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import CATEGORY, CATEGORY_SEP
from userfm.data.vocab import NUM_SPECIALS, PAD, VocabSet
from userfm.errors import ConfigError, DataError

if TYPE_CHECKING:
    from userfm.data.prepared import PreparedLog

FIRST_EVENT_GAP = 1  # gap bucket of an event with no previous event
_GAP_BASE = 2  # buckets >= 2 encode floor(log2(1 + gap seconds))


def time_gap_buckets(timestamps: np.ndarray, num_buckets: int) -> np.ndarray:
    """(L,) int64 unix seconds -> (L,) gap buckets in [1, num_buckets).

    Bucket 1 is the first event; bucket ``2 + floor(log2(1 + gap))`` otherwise, clipped to the
    last bucket (with 32 buckets the last one starts at 2**29 s, about 17 years).
    """
    gaps = np.diff(timestamps, prepend=timestamps[:1]).clip(min=0)
    buckets = _GAP_BASE + np.floor(np.log2(1.0 + gaps)).astype(np.int64)
    buckets = np.minimum(buckets, num_buckets - 1)
    if len(buckets):
        buckets[0] = FIRST_EVENT_GAP
    return buckets


def hours_and_weekdays(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L,) unix seconds -> (hour + 1, weekday + 1) with Monday = 1 (UTC)."""
    hours = (timestamps // 3600) % 24 + 1
    weekdays = (timestamps // 86400 + 3) % 7 + 1  # 1970-01-01 was a Thursday
    return hours.astype(np.int64), weekdays.astype(np.int64)


@dataclass
class EncodedHistory:
    """One user's history as index arrays of length L <= max_len (most recent events kept).

    Attributes:
        user: user id.
        items, time_gaps, hours, weekdays: (L,) int64.
        actions: (L,) int64 or None.
        categories: (L, C) int64 (0-padded) or None.
        oov: unknown items in this history (mapped to OOV / hash buckets).
    """

    user: str
    items: np.ndarray
    time_gaps: np.ndarray
    hours: np.ndarray
    weekdays: np.ndarray
    actions: np.ndarray | None = None
    categories: np.ndarray | None = None
    oov: int = 0

    def __len__(self) -> int:
        return len(self.items)


class Featurizer:
    """Encodes histories with fixed vocabularies; counts unknown items.

    Args:
        vocabs: item / action / category vocabularies (from `build_vocabs`).
        max_len: keep the ``max_len`` most recent events of each history.
        num_time_gap_buckets: size of the gap-bucket space (the encoder's config value).
        max_categories: C, categories kept per event (the first C listed).
    """

    def __init__(
        self,
        vocabs: VocabSet,
        *,
        max_len: int = 200,
        num_time_gap_buckets: int = 32,
        max_categories: int = 4,
    ):
        if max_len < 1:
            raise ConfigError(f"`max_len` must be >= 1, got {max_len}")
        if max_categories < 1:
            raise ConfigError(f"`max_categories` must be >= 1, got {max_categories}")
        self.vocabs = vocabs
        self.max_len = max_len
        self.num_time_gap_buckets = num_time_gap_buckets
        self.max_categories = max_categories
        self.oov_items = 0  # running count over every history encoded
        self.missing_side_features = 0  # histories without the actions / categories the model uses
        self._category_cache: dict[str, np.ndarray] = {}

    def __call__(self, history: UserHistory) -> EncodedHistory:
        if len(history) == 0:
            raise DataError(f"user {history.user!r} has an empty history: nothing to embed")
        L = self.max_len
        if history.timestamps is not None:
            gaps = time_gap_buckets(history.timestamps[-L - 1 :], self.num_time_gap_buckets)
            if len(history) > L:
                gaps = gaps[1:]  # the gap of the first kept event is to the dropped one before it
            hours, weekdays = hours_and_weekdays(history.timestamps[-L:])
        else:
            n = min(len(history), L)
            gaps = hours = weekdays = np.zeros(n, dtype=np.int64)
        items, oov = self.vocabs.items.encode(history.items[-L:])
        self.oov_items += oov
        # A model trained with actions / categories can embed histories without them (e.g. a
        # plain list of item ids): the missing feature is PAD, which adds nothing, and counted.
        actions = None
        if self.vocabs.actions is not None:
            if history.actions is not None:
                actions, _ = self.vocabs.actions.encode(history.actions[-L:])
            else:
                actions = np.zeros(len(items), dtype=np.int64)
        categories = None
        if self.vocabs.categories is not None:
            if history.categories is not None:
                categories = np.stack([self.categories_of(c) for c in history.categories[-L:]])
            else:
                categories = np.zeros((len(items), self.max_categories), dtype=np.int64)
        missing = (self.vocabs.actions is not None and history.actions is None) or (
            self.vocabs.categories is not None and history.categories is None
        )
        self.missing_side_features += int(missing)
        return EncodedHistory(history.user, items, gaps, hours, weekdays, actions, categories, oov)

    def item_category_table(self, log: EventLog | PreparedLog) -> np.ndarray:
        """Each item index's categories, as its events in ``log`` list them (the last event's
        value when they differ), encoded like an event's.

        Args:
            log: a log with a category column.

        Returns:
            (len(vocabs.items), max_categories) int64 category indices, PAD (0) for the
            specials, hash buckets, items absent from ``log`` and missing categories.

        Raises:
            ConfigError: no category vocabulary, or the log has no category column.
        """
        if self.vocabs.categories is None or not log.has(CATEGORY):
            raise ConfigError(
                "an item -> category table needs a category vocabulary and a log with a "
                f"{CATEGORY!r} column"
            )
        table = np.full((len(self.vocabs.items), self.max_categories), PAD, dtype=np.int64)
        attributes = log.item_attributes((CATEGORY,))
        items, _ = self.vocabs.items.encode(list(attributes))
        known = NUM_SPECIALS + len(self.vocabs.items.tokens)  # hash buckets are shared
        for index, attrs in zip(items.tolist(), attributes.values(), strict=True):
            if NUM_SPECIALS <= index < known:
                value = attrs[CATEGORY]  # a missing value comes back from pandas as NaN
                table[index] = self.categories_of(value if isinstance(value, str) else None)
        return table

    def categories_of(self, value: str | None) -> np.ndarray:
        """(max_categories,) int64 category indices of one ``|``-joined value (its first
        ``max_categories`` names; unknown names OOV, PAD where there are fewer or none)."""
        cached = self._category_cache.get(value)
        if cached is None:
            names = [c for c in (value or "").split(CATEGORY_SEP) if c][: self.max_categories]
            cached = np.full(self.max_categories, PAD, dtype=np.int64)
            if names:
                cached[: len(names)] = self.vocabs.categories.encode(names)[0]
            self._category_cache[value] = cached
        return cached
