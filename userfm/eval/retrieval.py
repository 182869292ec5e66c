"""Leave-one-out retrieval evaluation of anything that can `recommend`.

Protocol (SASRec, Kang & McAuley 2018): every user with at least 3 events is held out on
their most recent event (``split="test"``; input = every earlier event) or on their second
most recent one (``split="valid"``; input = every event before it). Users with fewer than 3
events are not evaluated (they are counted and named in the protocol); their events count as
training events.

The recommender ranks every item once (``recommend(inputs, k=None, exclude_seen=True)``) and
all metrics come from the 1-based rank of the target in that ranking:

* **full ranking** (seen items filtered): HR@K, NDCG@K, MRR. A target the recommender did not
  rank (it is in the user's input, so it was filtered, or the model does not know the item)
  is a miss: rank = inf.
* **recall by item frequency** (for DRO, which trades head accuracy for tail accuracy): the
  log's items are ranked by training count and split into ``num_buckets`` buckets head ->
  tail of equal *item count* (``bucket_by="items"``, the default: for 3 buckets, the most
  popular third of the catalogue, the middle third, the rarest third) or of equal *training
  event mass* (``"mass"``; see `frequency_buckets`). ``recall_b@K`` is the hit rate of the users whose
  target is in bucket b. ``macro_recall@K`` = mean over the buckets that hold at least one
  target of ``recall_b@K`` (every bucket counts the same); ``weighted_recall@K`` = sum over
  buckets of (share of targets in b) * ``recall_b@K``, i.e. the plain mean over users, equal
  to HR@K (every target counts the same, so head items dominate). Buckets of equal mass hold
  about equal numbers of targets, so their macro recall is close to HR@K and cannot show a
  head/tail trade; buckets of equal item count can.
* **sampled** (the SASRec paper's numbers, for comparison only; sampled metrics overstate and
  can even reorder models, Krichene & Rendle 2020): the target is ranked against
  ``sampled_negatives`` items drawn uniformly without replacement from the log's items the
  user never interacted with (full history, held-out events included), deterministically
  from ``seed``; its rank is 1 + the number of those items ranked above it. Reports HR@10 and
  NDCG@10.

Every number is printed with its protocol (`RetrievalReport.format`). This module imports
no training stage: the CLI and benchmarks wire models in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from userfm.api.recommend import Recommendations
from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import ITEM
from userfm.data.splits import leave_one_out
from userfm.errors import ConfigError, DataError

SPLITS = ("test", "valid")
#: the SASRec paper reports HR@10 / NDCG@10 against 100 sampled negatives
SAMPLED_K = 10
BUCKET_BY = ("items", "mass")


@runtime_checkable
class Recommender(Protocol):
    """What `evaluate_retrieval` needs from a model (duck typing: `UserEncoder`,
    `userfm.eval.baselines.MostPopular`, or anything else with this method).

    ``recommend`` must return, for each given history, its items best first
    (`Recommendations`: ``user_ids`` and an (N, k) ``item_ids`` array, ``None`` in unused
    slots); ``k=None`` asks for every item the model can rank, ``exclude_seen=True`` for the
    user's own items to be left out. Extra keyword arguments (``batch_size``, ``progress``)
    may be ignored.
    """

    def recommend(
        self,
        histories: Iterable[UserHistory],
        *,
        k: int | None = ...,
        exclude_seen: bool = ...,
        **kwargs: Any,
    ) -> Recommendations: ...


# ---- metrics from ranks (1-based, np.inf = not ranked) ------------------------------------
def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k (= recall@k with one relevant item): share of ranks <= k.

    Args:
        ranks: (N,) 1-based ranks of each user's target; ``np.inf`` for a miss.
        k: cut-off.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: mean of ``1 / log2(rank + 1)`` if rank <= k else 0
    (the ideal DCG is 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return float("nan")
    gains = np.zeros(len(ranks))
    hit = ranks <= k
    gains[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return float(gains.mean())


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the full ranking (no cut-off; a miss contributes 0)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / ranks)) if len(ranks) else float("nan")


def sampled_ranks(target_ranks: np.ndarray, negative_ranks: np.ndarray) -> np.ndarray:
    """Ranks of targets among their sampled negatives.

    Args:
        target_ranks: (N,) full-ranking ranks of the targets (``inf`` = not ranked).
        negative_ranks: (N, n) full-ranking ranks of each user's negatives (``inf`` = not
            ranked; those never beat the target).

    Returns:
        (N,) float64: 1 + number of negatives ranked above the target; ``inf`` when the
        target is not ranked.
    """
    target_ranks = np.asarray(target_ranks, dtype=np.float64)
    above = (np.asarray(negative_ranks, dtype=np.float64) < target_ranks[:, None]).sum(axis=1)
    return np.where(np.isfinite(target_ranks), 1.0 + above, np.inf)


def frequency_buckets(counts: np.ndarray, num_buckets: int, by: str = "items") -> np.ndarray:
    """Split items head -> tail into ``num_buckets`` popularity buckets.

    Items are sorted by count (descending, ties by position).

    * ``by="items"``: every bucket holds the same number of items (within one): bucket 0 is
      the most popular third of the catalogue (for 3 buckets), the last one the rarest third.
      Buckets then differ in popularity, so a mean over them weighs head and tail equally.
    * ``by="mass"``: every bucket holds about the same share of training *events*: an item goes
      to the bucket in which its mass starts, ``floor(num_buckets * events of more popular
      items / total)``. Targets follow the training mass, so every bucket holds about the same
      number of targets and a mean over buckets is close to the plain hit rate. Items with
      count 0 (never in training) go to the tail.

    Args:
        counts: (V,) training event count (or any non-negative mass) per item.
        num_buckets: B >= 1.
        by: "items" or "mass".

    Returns:
        (V,) int64 bucket per item, in [0, B).

    Example:
        >>> frequency_buckets(np.array([1, 6, 3, 2]), 3, by="mass")  # mass before: 11, 0, 6, 9
        array([2, 0, 1, 2])
        >>> frequency_buckets(np.array([1, 6, 3, 2]), 2)  # ranks 3, 0, 1, 2 of 4 items
        array([1, 0, 0, 1])
    """
    if num_buckets < 1:
        raise ConfigError(f"`num_buckets` must be >= 1, got {num_buckets}")
    if by not in BUCKET_BY:
        raise ConfigError(f"`by` must be one of {BUCKET_BY}, got {by!r}")
    counts = np.asarray(counts, dtype=np.float64)  # event counts, or any non-negative mass
    out = np.full(len(counts), num_buckets - 1, dtype=np.int64)
    order = np.lexsort((np.arange(len(counts)), -counts))  # count desc, then position
    if by == "items":
        out[order] = np.arange(len(counts)) * num_buckets // max(len(counts), 1)
        return out
    total = counts.sum()
    if total == 0:
        return out
    before = np.cumsum(counts[order]) - counts[order]  # events of more popular items
    buckets = np.minimum(num_buckets - 1, before * num_buckets // total).astype(np.int64)
    buckets[counts[order] == 0] = num_buckets - 1
    out[order] = buckets
    return out


def bucket_recall(
    ranks: np.ndarray, target_buckets: np.ndarray, k: int, num_buckets: int
) -> np.ndarray:
    """(num_buckets,) recall@k of the users whose target is in each bucket (NaN: no target)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    target_buckets = np.asarray(target_buckets, dtype=np.int64)
    users = np.bincount(target_buckets, minlength=num_buckets).astype(np.float64)
    hits = np.bincount(target_buckets, weights=ranks <= k, minlength=num_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(users > 0, hits / users, np.nan)


def macro_recall(ranks: np.ndarray, target_buckets: np.ndarray, k: int, num_buckets: int) -> float:
    """Mean of `bucket_recall` over the buckets that hold at least one target."""
    per_bucket = bucket_recall(ranks, target_buckets, k, num_buckets)
    present = ~np.isnan(per_bucket)
    return float(per_bucket[present].mean()) if present.any() else float("nan")


def weighted_recall(
    ranks: np.ndarray, target_buckets: np.ndarray, k: int, num_buckets: int
) -> float:
    """`bucket_recall` weighted by each bucket's share of the targets (= `hit_rate`)."""
    per_bucket = bucket_recall(ranks, target_buckets, k, num_buckets)
    users = np.bincount(np.asarray(target_buckets, dtype=np.int64), minlength=num_buckets)
    if users.sum() == 0:
        return float("nan")
    return float(np.nansum(per_bucket * users) / users.sum())


def sample_negatives(
    rng: np.random.Generator, num_items: int, exclude: np.ndarray, n: int
) -> np.ndarray:
    """``n`` distinct item indices drawn uniformly from ``[0, num_items)`` minus ``exclude``.

    Rejection sampling (cheap for large catalogues); every item not excluded is used when
    fewer than ``n`` are left. Deterministic given the state of ``rng``.

    Returns:
        (min(n, available),) int64 item indices.
    """
    excluded = np.unique(np.asarray(exclude, dtype=np.int64))
    excluded = excluded[(excluded >= 0) & (excluded < num_items)]
    available = num_items - len(excluded)
    if available <= n:
        return np.setdiff1d(np.arange(num_items), excluded)
    if available < 2 * n:  # dense: rejection would loop a while
        return rng.choice(np.setdiff1d(np.arange(num_items), excluded), n, replace=False)
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < n:
        draw = rng.integers(0, num_items, size=2 * n)
        chosen = np.concatenate([chosen, draw[~np.isin(draw, excluded)]])
        _, first = np.unique(chosen, return_index=True)
        chosen = chosen[np.sort(first)]  # first occurrences, in draw order
    return chosen[:n]


# ---- the leave-one-out split ----------------------------------------------------------------
@dataclass
class LeaveOneOutSplit:
    """The held-out events of one split of a log, and what training may see.

    Attributes:
        split: "test" or "valid".
        inputs: the evaluated users' input histories (events before the target).
        targets: (N,) object, each evaluated user's held-out item.
        interacted: each evaluated user's full-history item ids (held-out events included).
        train_counts: item -> events in the training part (all events but the held-out ones:
            the last one for "test", the last two for "valid", of every evaluated user).
        catalogue: (V,) sorted distinct item ids of the whole log.
        skipped_users: users with fewer than 3 events (not evaluated).
    """

    split: str
    inputs: list[UserHistory]
    targets: np.ndarray
    interacted: list[np.ndarray]
    train_counts: dict[str, int]
    catalogue: np.ndarray
    skipped_users: int

    @property
    def users(self) -> list[str]:
        return [h.user for h in self.inputs]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"`split` must be one of {SPLITS}, got {split!r}")


def leave_one_out_split(log: EventLog, split: str = "test") -> LeaveOneOutSplit:
    """Hold out each user's last ("test") or second-to-last ("valid") event.

    Uses `userfm.data.splits.leave_one_out` per user (users with < 3 events are skipped and
    counted, their events are training events).
    """
    check_split(split)
    inputs, targets, interacted, train_parts = [], [], [], []
    skipped = 0
    for history in log.iter_histories():
        s = leave_one_out(history)
        if s is None:
            skipped += 1
            train_parts.append(history.items)
            continue
        inp, target = (
            (s.test_input, s.test_target) if split == "test" else (s.train, s.valid_target)
        )
        inputs.append(inp)
        targets.append(target)
        interacted.append(history.items)
        train_parts.append(inp.items)
    train = pd.Series(np.concatenate(train_parts).astype(str), dtype=object)
    train_counts = {str(k): int(v) for k, v in train.value_counts(sort=False).items()}
    catalogue = np.asarray(
        sorted(pc.unique(log.dataset.data.table.column(ITEM)).to_pylist()), dtype=object
    )
    return LeaveOneOutSplit(
        split,
        inputs,
        np.asarray(targets, dtype=object),
        interacted,
        train_counts,
        catalogue,
        skipped,
    )


# ---- report ---------------------------------------------------------------------------------
@dataclass
class RetrievalReport:
    """Retrieval metrics with the protocol that produced them.

    Attributes:
        metrics: name -> value: ``HR@K``, ``NDCG@K`` (K > 1), ``MRR``, ``macro_recall@K``,
            ``weighted_recall@K``, and ``sampled_HR@10`` / ``sampled_NDCG@10`` when sampled
            negatives were used.
        protocol: the full-ranking protocol in one sentence.
        num_users: users evaluated.
        split: "test" or "valid".
        num_items: distinct items in the log (the catalogue ranked).
        sampled_protocol: the sampled protocol in one sentence, or None.
        bucket_protocol: how the frequency buckets were made (for the recall metrics).
        buckets: per bucket (head first): items, share of training events, targets and
            recall@K for each K.
        details: counts that explain misses: ``users_skipped`` (< 3 events),
            ``targets_in_input`` (target already in the input, so filtered),
            ``targets_unranked`` (rank inf), ``users_missing`` (absent from the output),
            ``ranked_items`` (most items the recommender ranked for a user),
            ``users_with_fewer_negatives``.
    """

    metrics: dict[str, float]
    protocol: str
    num_users: int
    split: str = "test"
    num_items: int = 0
    sampled_protocol: str | None = None
    bucket_protocol: str = ""
    buckets: list[dict] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)

    def protocol_of(self, metric: str) -> str:
        """The protocol sentence of one metric."""
        if metric.startswith("sampled_") and self.sampled_protocol:
            return self.sampled_protocol
        if "recall@" in metric and self.bucket_protocol:
            return f"{self.protocol}; {self.bucket_protocol}"
        return self.protocol

    def format(self) -> str:
        """A table, one metric per line, every line ending with its protocol."""
        width = max((len(m) for m in self.metrics), default=0)
        return "\n".join(
            f"{name:<{width}}  {value:.4f}  | {self.protocol_of(name)}"
            for name, value in self.metrics.items()
        )

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict:
        """JSON-ready dict (floats, ints, strings)."""
        return asdict(self)


def _target_ranks(
    recs: Recommendations,
    data: LeaveOneOutSplit,
    *,
    sampled_negatives: int,
    seed: int,
    block: int = 512,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Full-ranking and sampled ranks of every evaluated user's target (inf = miss)."""
    catalogue = pd.Index(data.catalogue)
    num_items = len(catalogue)
    target_idx = catalogue.get_indexer(data.targets)  # (N,) all >= 0: targets come from the log
    row_of = {u: i for i, u in enumerate(recs.user_ids)}
    users = data.users
    rec_rows = np.fromiter((row_of.get(u, -1) for u in users), dtype=np.int64, count=len(users))
    ranks = np.full(len(users), np.inf)
    sampled = np.full(len(users), np.inf)
    rng = np.random.default_rng(seed)
    few_negatives = 0
    width = recs.item_ids.shape[1] if len(recs) else 0
    for lo in range(0, len(users), block):
        rows = rec_rows[lo : lo + block]
        codes = np.full((len(rows), width), -1, dtype=np.int64)
        if width:  # (b, M), -1 for None / items not in the log
            flat = recs.item_ids[np.maximum(rows, 0)].ravel()
            codes = catalogue.get_indexer(flat).reshape(len(rows), width)
        for j, (row, row_codes) in enumerate(zip(rows, codes, strict=True)):
            u = lo + j
            pos = np.full(num_items + 1, np.inf)  # the last slot absorbs the -1 codes
            if row >= 0:
                # reversed so that the first occurrence wins if an item is listed twice
                pos[row_codes[::-1]] = np.arange(width, 0, -1, dtype=np.float64)
                pos[-1] = np.inf
            ranks[u] = pos[target_idx[u]]
            if sampled_negatives:
                exclude = catalogue.get_indexer(data.interacted[u])
                negs = sample_negatives(rng, num_items, exclude, sampled_negatives)
                few_negatives += len(negs) < sampled_negatives
                sampled[u] = sampled_ranks(ranks[u : u + 1], pos[negs][None])[0]
    in_input = sum(
        target in set(h.items.tolist()) for target, h in zip(data.targets, data.inputs, strict=True)
    )
    details = {
        "users_skipped": data.skipped_users,
        "targets_in_input": int(in_input),
        "targets_unranked": int(np.isinf(ranks).sum()),
        "users_missing": int((rec_rows < 0).sum()),
        "ranked_items": int((recs.item_ids != None).sum(axis=1).max()) if len(recs) else 0,  # noqa: E711
        "users_with_fewer_negatives": int(few_negatives),
    }
    return ranks, sampled, details


def split_ranks(
    model: Recommender,
    data: LeaveOneOutSplit,
    *,
    batch_size: int = 256,
    progress: bool | None = None,
) -> np.ndarray:
    """(N,) full-ranking rank of each evaluated user's target, in ``data.users`` order: the
    per-user ranks behind `evaluate_retrieval`'s metrics, for breakdowns and paired
    bootstraps (1-based; ``inf`` = not ranked, e.g. an item the model does not know or one
    in the user's input, which the ranking filters).
    """
    recs = model.recommend(
        data.inputs, k=None, exclude_seen=True, batch_size=batch_size, progress=progress
    )
    return _target_ranks(recs, data, sampled_negatives=0, seed=0)[0]


def evaluate_retrieval(
    model: Recommender,
    log: EventLog,
    *,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10, 20),
    num_buckets: int = 3,
    bucket_by: str = "items",
    sampled_negatives: int | None = 100,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool | None = None,
) -> RetrievalReport:
    """Leave-one-out retrieval metrics of ``model`` on ``log`` (see the module docstring).

    Args:
        model: anything with ``recommend(histories, k=None, exclude_seen=True, ...)``
            (`Recommender`), e.g. a `UserEncoder` or `MostPopular`.
        log: the full event log; the split is made here.
        split: "test" (target = last event) or "valid" (target = second-to-last event).
        ks: cut-offs for HR / NDCG / recall.
        num_buckets: item-frequency buckets for macro / weighted recall.
        bucket_by: "items" (buckets of equal item count: macro recall weighs head and tail
            the same) or "mass" (buckets of equal training mass); see `frequency_buckets`.
        sampled_negatives: negatives per user for the sampled protocol (0 / None: skip it).
        seed: seed of the negative sampling.
        batch_size, progress: passed to ``model.recommend``.

    Returns:
        A `RetrievalReport`; print ``report.format()``.

    Raises:
        ConfigError: bad ``split`` / ``ks`` / ``num_buckets`` / ``bucket_by`` /
            ``sampled_negatives``, or
            ``model`` has no ``recommend``.
        DataError: no user has the 3 events leave-one-out needs.
    """
    ks = _checked_options(model, split, ks, num_buckets, bucket_by, sampled_negatives)
    data = leave_one_out_split(log, split)
    if not data.inputs:
        raise DataError(
            f"no user has the 3 events leave-one-out needs ({data.skipped_users} users have fewer)"
        )
    recs = model.recommend(
        data.inputs, k=None, exclude_seen=True, batch_size=batch_size, progress=progress
    )
    ranks, sampled, details = _target_ranks(
        recs, data, sampled_negatives=sampled_negatives or 0, seed=seed
    )
    counts = np.asarray([data.train_counts.get(i, 0) for i in data.catalogue], dtype=np.int64)
    item_buckets = frequency_buckets(counts, num_buckets, by=bucket_by)
    target_buckets = item_buckets[pd.Index(data.catalogue).get_indexer(data.targets)]
    metrics = _rank_metrics(ranks, target_buckets, ks, num_buckets)
    if sampled_negatives:
        metrics[f"sampled_HR@{SAMPLED_K}"] = hit_rate(sampled, SAMPLED_K)
        metrics[f"sampled_NDCG@{SAMPLED_K}"] = ndcg(sampled, SAMPLED_K)
    protocol, sampled_protocol, bucket_protocol = _protocols(
        data, split, num_buckets, bucket_by, sampled_negatives, seed, details
    )
    return RetrievalReport(
        metrics=metrics,
        protocol=protocol,
        num_users=len(data.inputs),
        split=split,
        num_items=len(data.catalogue),
        sampled_protocol=sampled_protocol,
        bucket_protocol=bucket_protocol,
        buckets=_bucket_table(ranks, counts, item_buckets, target_buckets, ks, num_buckets),
        details=details,
    )


def _checked_options(
    model: Any,
    split: str,
    ks: Sequence[int],
    num_buckets: int,
    bucket_by: str,
    sampled_negatives: int | None,
) -> list[int]:
    """`evaluate_retrieval`'s options checked (ConfigError naming the bad one); the sorted,
    distinct cut-offs."""
    check_split(split)
    cutoffs = sorted({int(k) for k in ks})
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError(f"`ks` must be cut-offs >= 1, got {cutoffs}")
    if num_buckets < 1:
        raise ConfigError(f"`num_buckets` must be >= 1, got {num_buckets}")
    if bucket_by not in BUCKET_BY:
        raise ConfigError(f"`bucket_by` must be one of {BUCKET_BY}, got {bucket_by!r}")
    if sampled_negatives is not None and sampled_negatives < 0:
        raise ConfigError(f"`sampled_negatives` must be >= 0 or None, got {sampled_negatives}")
    if not callable(getattr(model, "recommend", None)):
        raise ConfigError(
            f"{type(model).__name__} has no `recommend(histories, k=None, exclude_seen=True)` "
            "method; see userfm.eval.retrieval.Recommender"
        )
    return cutoffs


def _rank_metrics(
    ranks: np.ndarray, target_buckets: np.ndarray, ks: list[int], num_buckets: int
) -> dict[str, float]:
    """Full-ranking HR@K, NDCG@K (K > 1; NDCG@1 = HR@1), MRR, macro / weighted recall@K.

    Args:
        ranks: (U,) 1-based target ranks, inf for a miss.
        target_buckets: (U,) the frequency bucket of each user's target.
    """
    metrics = {f"HR@{k}": hit_rate(ranks, k) for k in ks}
    metrics.update({f"NDCG@{k}": ndcg(ranks, k) for k in ks if k > 1})
    metrics["MRR"] = mrr(ranks)
    for k in ks:
        metrics[f"macro_recall@{k}"] = macro_recall(ranks, target_buckets, k, num_buckets)
    for k in ks:
        metrics[f"weighted_recall@{k}"] = weighted_recall(ranks, target_buckets, k, num_buckets)
    return metrics


def _bucket_table(
    ranks: np.ndarray,
    counts: np.ndarray,
    item_buckets: np.ndarray,
    target_buckets: np.ndarray,
    ks: list[int],
    num_buckets: int,
) -> list[dict[str, Any]]:
    """One entry per frequency bucket, head first: its items, share of training events,
    targets and recall@K.

    Args:
        ranks: (U,) 1-based target ranks.
        counts: (I,) training events per catalogue item.
        item_buckets: (I,) each item's bucket; target_buckets: (U,) each target's.
    """
    total = max(int(counts.sum()), 1)
    per_bucket = {k: bucket_recall(ranks, target_buckets, k, num_buckets) for k in ks}
    table = []
    for b in range(num_buckets):
        in_b = item_buckets == b
        entry: dict[str, Any] = {
            "bucket": b,
            "items": int(in_b.sum()),
            "train_share": float(counts[in_b].sum() / total),
            "targets": int((target_buckets == b).sum()),
        }
        entry.update({f"recall@{k}": float(per_bucket[k][b]) for k in ks})
        table.append(entry)
    return table


def _protocols(
    data: LeaveOneOutSplit,
    split: str,
    num_buckets: int,
    bucket_by: str,
    sampled_negatives: int | None,
    seed: int,
    details: dict[str, Any],
) -> tuple[str, str | None, str]:
    """The protocol strings of the full-ranking, sampled (None when skipped) and bucket
    metrics, printed with every number."""
    skipped, n_users, n_items = data.skipped_users, len(data.inputs), len(data.catalogue)
    users = f"{n_users:,} users" + (f" ({skipped:,} with < 3 events skipped)" if skipped else "")
    protocol = (
        f"leave-one-out, {split} split, full ranking over {n_items:,} items, "
        f"seen items filtered, {users}"
    )
    sampled_protocol = None
    if sampled_negatives:
        fewer = details["users_with_fewer_negatives"]
        sampled_protocol = (
            f"leave-one-out, {split} split, target ranked among {sampled_negatives} "
            f"items sampled uniformly (seed {seed}) from the {n_items:,} items minus the "
            "user's own"
            + (f" (all of them for {fewer:,} users with fewer left)" if fewer else "")
            + f", {users}"
        )
    bucket_protocol = (
        f"recall in {num_buckets} item-frequency buckets of equal "
        f"{'item count' if bucket_by == 'items' else 'training mass'} "
        "(macro: mean over buckets, weighted: mean over users)"
    )
    return protocol, sampled_protocol, bucket_protocol
