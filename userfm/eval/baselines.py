"""Non-learned baselines with the `Recommender` interface, for `evaluate_retrieval`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from userfm.api.embed import HistoriesLike, as_histories
from userfm.api.recommend import Recommendations, stable_topk
from userfm.data.log import EventLog, UserHistory
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


class TextNeighbours:
    """Rank items by the cosine between their text vector and the mean text vector of the
    user's history: what item text alone gives, with no training (the floor a model reading
    item text must beat on items it has never seen).

    Args:
        item_ids: (V,) the items ranked.
        vectors: (V, dim) their text vectors (`userfm.encoder.item_vectors.encode_items`);
            a zero row (an item without text) scores 0 for everyone.

    Example:
        >>> found = encode_items(movielens_100k_items(path), ["title", "genres"])
        >>> evaluate_retrieval(TextNeighbours(found.ids, found.vectors), log)
    """

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ConfigError(
                f"`vectors` must be (len(item_ids), dim) = ({len(item_ids)}, dim), got "
                f"{vectors.shape}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
        self.vectors = vectors / np.maximum(norms, 1e-12)  # (V, dim) unit rows (or zero)
        self.index = pd.Index(self.item_ids)

    def recommend(
        self,
        histories: HistoriesLike,
        *,
        k: int | None = None,
        exclude_seen: bool = True,
        batch_size: int = 256,
        **ignored: Any,
    ) -> Recommendations:
        """The k items nearest to each user's mean history text vector, best first.

        Args:
            histories: anything `userfm.api.embed.as_histories` accepts.
            k: items per user; ``None``: all of them.
            exclude_seen: leave out items in the user's history.
            batch_size: users scored at a time.
            **ignored: other `UserEncoder.recommend` options, for interface compatibility.

        Returns:
            `Recommendations` with cosine scores (equal scores in item order).
        """
        k = check_k(k, allow_none=True)
        V = len(self.item_ids)
        k_eff = V if k is None else min(k, V)
        stream, _ = as_histories(histories, ignored.get("schema"))
        parts, batch = [], []
        for h in stream:
            batch.append(h)
            if len(batch) == batch_size:
                parts.append(self._rank(batch, k_eff, exclude_seen))
                batch = []
        if batch:
            parts.append(self._rank(batch, k_eff, exclude_seen))
        if not parts:
            raise DataError("no user histories to recommend for")
        return Recommendations.concat(parts)

    def _rank(self, batch: list[UserHistory], k: int, exclude_seen: bool) -> Recommendations:
        """One batch of users: (B, V) cosines -> the top k."""
        users = np.zeros((len(batch), self.vectors.shape[1]), dtype=np.float32)  # (B, dim)
        seen = []
        for row, h in enumerate(batch):
            codes = self.index.get_indexer(np.asarray(h.items, dtype=object))
            codes = codes[codes >= 0]
            seen.append(codes)
            if len(codes):
                users[row] = self.vectors[codes].mean(axis=0)
        users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)
        scores = torch.from_numpy(users @ self.vectors.T)  # (B, V)
        if exclude_seen:
            for row, codes in enumerate(seen):
                scores[row, torch.from_numpy(codes)] = -torch.inf
        values, cols = stable_topk(scores, k)
        ids = self.item_ids[cols.numpy()]
        ids[np.isneginf(values.numpy())] = None
        events = sum(len(h) for h in batch)
        return Recommendations(
            [h.user for h in batch], ids, values.numpy(), {"users": len(batch), "events": events}
        )
