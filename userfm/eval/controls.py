"""Degenerate controls for retrieval: what a model scores when it cannot use the input.

An accuracy means little until it is set beside what a model that ignores its input scores.
Two such controls, each a `Recommender` that `evaluate_retrieval` scores like any other:

* **most popular** (`userfm.eval.baselines.MostPopular`): one ranking for everyone, by
  training count;
* **another user's input** (`OtherUsersInput`): the trained model itself, given each user's
  history swapped for another user's. It keeps everything the model knows about items
  (popularity, quality, the time of the split) and loses only what it reads from this user.
  The evaluated user's own items are still left out of the ranking, exactly as in the real
  evaluation, so the two numbers differ by the input alone.

A model that reads its input scores well above both; one that scores near "another user's
input" has learnt a prior, not the user.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from userfm.api.embed import as_histories
from userfm.api.recommend import Recommendations
from userfm.errors import ConfigError, check_int, check_k
from userfm.eval.retrieval import Recommender


class OtherUsersInput:
    """Ranks each user's items from another user's history (a `Recommender` wrapper).

    User i of the histories given (in their order) is ranked from the history of user
    ``(i + shift) mod N``, and user i's own items are then removed from that ranking when
    ``exclude_seen`` is set. With N >= 2 and ``shift`` not a multiple of N, no user reads
    their own history.

    Args:
        model: the trained recommender (anything with ``recommend``).
        shift: how far along the input order the donor history is (>= 1).
    """

    def __init__(self, model: Recommender, *, shift: int = 1) -> None:
        if not callable(getattr(model, "recommend", None)):
            raise ConfigError(f"{type(model).__name__} has no `recommend` method")
        self.model, self.shift = model, check_int("shift", shift, minimum=1)

    def recommend(
        self,
        histories: Any,
        *,
        k: int | None = None,
        exclude_seen: bool = True,
        **kwargs: Any,
    ) -> Recommendations:
        """The model's ranking from a donor's history, minus the user's own items.

        Args:
            histories: anything `as_histories` accepts (``schema`` may be a keyword).
            k: items per user (``None``: every item the model ranks).
            exclude_seen: leave out the evaluated user's own items (not the donor's).
            **kwargs: passed to the model's ``recommend`` (``batch_size``, ``progress``).

        Returns:
            `Recommendations` for the users given, in their order; ``None`` / ``-inf`` in the
            slots left empty.
        """
        k = check_k(k, allow_none=True)
        users = list(as_histories(histories, kwargs.pop("schema", None))[0])
        n = len(users)
        if n < 2:
            raise ConfigError(f"another user's input needs at least 2 users, got {n}")
        if self.shift % n == 0:
            raise ConfigError(
                f"`shift` {self.shift} gives every one of the {n} users their own input"
            )
        donors = [replace(users[(i + self.shift) % n], user=h.user) for i, h in enumerate(users)]
        # the full ranking, so that removing the user's own items still leaves k
        full = self.model.recommend(donors, k=None, exclude_seen=False, **kwargs)
        rows = {u: r for r, u in enumerate(full.user_ids)}
        width = full.item_ids.shape[1] if k is None else min(k, full.item_ids.shape[1])
        item_ids = np.full((n, width), None, dtype=object)
        scores = np.full((n, width), -np.inf, dtype=np.float32)
        for i, h in enumerate(users):
            ranked, ranked_scores = full.item_ids[rows[h.user]], full.scores[rows[h.user]]
            keep = ranked != None  # noqa: E711 (object array)
            if exclude_seen:
                keep &= ~np.isin(ranked, h.items.astype(object))
            kept = np.flatnonzero(keep)[:width]
            item_ids[i, : len(kept)] = ranked[kept]
            scores[i, : len(kept)] = ranked_scores[kept]
        return Recommendations([h.user for h in users], item_ids, scores, dict(full.stats))
