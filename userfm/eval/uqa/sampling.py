"""Random choices of the UQA question builder: user splits, answer balancing, distractors.

See `userfm.eval.uqa.tasks` (module docstring, "Priors must not answer the questions") for why
gold answers are capped per sub-task and split and why distractors follow the answer shares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from userfm.eval.uqa.config import QuestionConfig
from userfm.eval.uqa.schema import SPLITS
from userfm.eval.uqa.scoring import normalise

__all__ = ["AnswerPool", "balance", "balance_cap", "split_users"]


def split_users(
    user_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> dict[str, list[str]]:
    """Split users at random (by seed) into train / valid / test.

    Args:
        user_ids: distinct user ids.
        fractions: (train, valid, test) shares, >= 0, summing to 1; split sizes are the
            rounded cumulative shares, so they add up to the number of users.
        seed: random seed.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``, each in the input order.
    """
    QuestionConfig(split_fractions=tuple(fractions))  # validates, naming the field
    users = [str(u) for u in user_ids]
    n = len(users)
    perm = np.random.default_rng([seed, 0x5A17]).permutation(n)
    bounds = np.rint(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    split_of = np.empty(n, dtype=object)
    for name, lo, hi in zip(SPLITS, np.r_[0, bounds[:-1]], bounds):
        split_of[perm[lo:hi]] = name
    return {name: [u for u, s in zip(users, split_of) if s == name] for name in SPLITS}


def balance_cap(counts: Sequence[int], share: float) -> int:
    """The largest M with ``M <= share' * sum_v min(n_v, M)``, ``share' = max(share, 1/len)``.

    Keeping at most M questions per gold value then leaves no value above ``share'`` of the
    kept questions.
    """
    c = np.asarray(counts, dtype=np.int64)
    if len(c) == 0:
        return 0
    share = max(share, 1.0 / len(c))
    lo, hi = 0, int(c.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid <= share * np.minimum(c, mid).sum() + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    return lo


def balance(keys: Sequence[str], share: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool mask of the questions kept so that no key exceeds its share.

    Keys above the cap (`balance_cap`) keep a random ``cap`` of their questions, drawn with
    ``rng`` key by key in sorted order; ``share >= 1`` keeps everything.
    """
    keep = np.ones(len(keys), dtype=bool)
    if not len(keys) or share >= 1:
        return keep
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    cap = balance_cap([len(g) for g in groups.values()], share)
    for k in sorted(groups):
        g = groups[k]
        if len(g) > cap:
            keep[g] = False
            keep[np.sort(rng.choice(g, size=cap, replace=False))] = True
    return keep


class AnswerPool:
    """Gold answers of one sub-task (keyed by `normalise`) with their counts: where
    distractors are drawn from.

    Attributes:
        text: normalised key -> the first answer text seen with that key.
        keys: the distinct keys, sorted.
        pos: key -> its index in ``keys``.
        counts: (len(keys),) float64 count of each key.
    """

    def __init__(self, answers: Iterable[str]):
        self.text: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for a in answers:
            k = normalise(a)
            self.text.setdefault(k, a)
            counts[k] += 1
        self.keys = sorted(counts)
        self.pos = {k: i for i, k in enumerate(self.keys)}
        self.counts = np.asarray([counts[k] for k in self.keys], dtype=np.float64)
        self._pi: dict[int, np.ndarray] = {}

    def distractors(self, gold: str, m: int, rng: np.random.Generator) -> list[str] | None:
        """``m`` distinct other answers such that the option set says nothing about the gold.

        Option sets follow a fixed-size sampling design whose inclusion probabilities are
        ``pi_v = n q_v`` (n = m + 1 options, q = this pool's answer shares), conditioned on
        containing the gold g: P(S | g) = P(S) / pi_g. Then P(S, gold = v) = q_v P(S) / (n q_v)
        = P(S) / n for every v in S: given the options, each is equally likely to be right, so
        no answer prior beats 1/n. That needs q_v <= 1/n, which balancing guarantees by
        default; above it pi is clipped to 1 (the value is then always an option). The design
        is systematic pi-ps sampling (Madow 1949) over a random order of the values.
        """
        n = m + 1
        g = self.pos.get(normalise(gold))
        if g is None or len(self.keys) < n:
            return None
        pi = self._inclusion(n)
        for _ in range(8):  # a retry only guards against float ties at interval ends
            order = rng.permutation(len(self.keys))
            cum = np.cumsum(pi[order])
            cum[-1] = n
            k = int(np.flatnonzero(order == g)[0])
            lo = cum[k - 1] if k else 0.0
            t = rng.uniform(lo, cum[k])  # the point that selects g
            points = (t - np.floor(t)) + np.arange(n)
            idx = np.minimum(np.searchsorted(cum, points, side="right"), len(order) - 1)
            idx[int(np.floor(t))] = k
            chosen = order[idx]
            if len(set(chosen.tolist())) == n:
                return [self.text[self.keys[i]] for i in chosen if i != g]
        return None

    def _inclusion(self, n: int) -> np.ndarray:
        """Inclusion probabilities ``min(1, c * count)`` summing to ``n`` (clipped iteratively)."""
        if n not in self._pi:
            fixed = np.zeros(len(self.counts), dtype=bool)
            while True:
                w = np.where(fixed, 0.0, self.counts)
                pi = np.where(fixed, 1.0, (n - fixed.sum()) * w / w.sum())
                over = (pi > 1 + 1e-12) & ~fixed
                if not over.any():
                    break
                fixed |= over
            self._pi[n] = np.minimum(pi, 1.0)
        return self._pi[n]
