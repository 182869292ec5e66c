"""Non-learned baselines with the `Recommender` interface, for `evaluate_retrieval`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from userfm.api.embed import HistoriesLike, as_histories
from userfm.api.recommend import Recommendations
from userfm.data.log import EventLog
from userfm.data.schema import ITEM
from userfm.errors import ConfigError, DataError, check_k
from userfm.eval.retrieval import check_split, leave_one_out_split


class MostPopular:
    """Recommend the items with the most training events, the same list to everyone.

    Example:
        >>> pop = MostPopular().fit(log, split="test")   # held-out test events not counted
        >>> evaluate_retrieval(pop, log, split="test").format()

    Attributes (after `fit`):
        item_ids: (V,) object, known items by descending count (ties by item id).
        counts: (V,) int64 training events of each item.
    """

    def __init__(self) -> None:
        self.item_ids: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    def fit(self, log: EventLog, split: str | None = "test") -> MostPopular:
        """Count item popularity on the training part of ``log`` only.

        Args:
            log: the full event log.
            split: "test": leave out each evaluated user's last event; "valid": their last two
                (leave-one-out, users with >= 3 events; see `leave_one_out_split`), so the
                targets of that split never count. ``None``: count every event (serving).

        Returns:
            self.
        """
        if split is None:
            counts = pd.Series(log.dataset.data.table.column(ITEM).to_numpy(zero_copy_only=False))
            counts = {str(k): int(v) for k, v in counts.value_counts(sort=False).items()}
        else:
            check_split(split)
            counts = leave_one_out_split(log, split).train_counts
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.item_ids = np.asarray([i for i, _ in ranked], dtype=object)
        self.counts = np.asarray([c for _, c in ranked], dtype=np.int64)
        return self

    def recommend(
        self,
        histories: HistoriesLike,
        *,
        k: int | None = None,
        exclude_seen: bool = True,
        **ignored: Any,
    ) -> Recommendations:
        """The k most popular items per user (their own items left out when ``exclude_seen``).

        Args:
            histories: anything `userfm.api.embed.as_histories` accepts (``schema`` may be
                given as a keyword).
            k: items per user, capped at the number of known items; ``None``: all of them.
            exclude_seen: leave out items in the user's history.
            **ignored: other `UserEncoder.recommend` options (``batch_size``, ``progress``,
                ...), accepted for interface compatibility.

        Returns:
            `Recommendations`; scores are training counts (float32), ``None`` / ``-inf`` in
            slots left empty by excluded items.
        """
        if self.item_ids is None:
            raise ConfigError("MostPopular is not fitted: call .fit(log) first")
        k = check_k(k, allow_none=True)
        V = len(self.item_ids)
        k_eff = V if k is None else min(k, V)
        index = pd.Index(self.item_ids)
        scores_all = self.counts.astype(np.float32)
        stream, _ = as_histories(histories, ignored.get("schema"))
        users, rows_ids, rows_scores = [], [], []
        events = 0
        for h in stream:
            keep = np.arange(k_eff)
            if exclude_seen:
                allowed = np.ones(V, dtype=bool)
                seen = index.get_indexer(np.asarray(h.items, dtype=object))
                allowed[seen[seen >= 0]] = False
                keep = np.flatnonzero(allowed)[:k_eff]
            ids = np.full(k_eff, None, dtype=object)
            scores = np.full(k_eff, -np.inf, dtype=np.float32)
            ids[: len(keep)] = self.item_ids[keep]
            scores[: len(keep)] = scores_all[keep]
            users.append(h.user)
            rows_ids.append(ids)
            rows_scores.append(scores)
            events += len(h)
        if not users:
            raise DataError("no user histories to recommend for")
        return Recommendations(
            users,
            np.stack(rows_ids),
            np.stack(rows_scores),
            {"users": len(users), "events": events},
        )
