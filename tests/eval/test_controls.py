"""userfm.eval.controls: a model given another user's input, the user's own items still left
out; and the control scored by evaluate_retrieval like any model."""

import numpy as np
import pytest

from userfm import UserEncoder, read_events
from userfm.api.recommend import Recommendations
from userfm.data import SyntheticConfig, generate_synthetic_log
from userfm.data.log import UserHistory
from userfm.errors import ConfigError
from userfm.eval import OtherUsersInput, evaluate_retrieval

CATALOGUE = ["a1", "a2", "b1", "b2", "c"]


class ReadsInput:
    """Ranks the history's items first (most recent first), then the rest in catalogue order."""

    def __init__(self):
        self.calls = []

    def recommend(self, histories, *, k=None, exclude_seen=True, **kwargs):
        histories = list(histories)
        self.calls.append(dict(k=k, exclude_seen=exclude_seen, **kwargs))
        rows = []
        for h in histories:
            own = list(h.items[::-1])
            ranked = own + [i for i in CATALOGUE if i not in own]
            if exclude_seen:
                ranked = [i for i in ranked if i not in own] + [None] * len(own)
            rows.append(ranked[: k or len(ranked)])
        scores = np.tile(np.arange(len(rows[0]), 0, -1, dtype=np.float32), (len(rows), 1))
        scores[np.array(rows, dtype=object) == None] = -np.inf  # noqa: E711
        return Recommendations([h.user for h in histories], np.array(rows, dtype=object), scores)


def history(user, items):
    return UserHistory(user, np.array(items, dtype=object), np.arange(len(items)))


def test_each_user_is_ranked_from_the_next_users_history_without_their_own_items():
    model = ReadsInput()
    users = [history("A", ["a1", "a2"]), history("B", ["b1", "b2"]), history("C", ["c"])]
    recs = OtherUsersInput(model).recommend(users, k=None, batch_size=7)
    assert recs.user_ids == ["A", "B", "C"]
    # A reads B's history: b2, b1 first; A's own a1, a2 are left out
    assert list(recs.item_ids[0]) == ["b2", "b1", "c", None, None]
    assert list(recs.item_ids[1]) == ["c", "a1", "a2", None, None]  # B reads C's
    assert list(recs.item_ids[2]) == ["a2", "a1", "b1", "b2", None]  # C reads A's
    assert np.isneginf(recs.scores[0, 3:]).all() and np.isfinite(recs.scores[0, :3]).all()
    # the model ranks everything, its own exclusion off; other options pass through
    assert model.calls == [dict(k=None, exclude_seen=False, batch_size=7)]


def test_k_cuts_after_the_users_own_items_are_removed_and_exclusion_can_be_off():
    users = [history("A", ["a1", "a2"]), history("B", ["b1", "b2"])]
    control = OtherUsersInput(ReadsInput())
    assert list(control.recommend(users, k=2).item_ids[0]) == ["b2", "b1"]
    kept = control.recommend(users, k=3, exclude_seen=False)
    assert list(kept.item_ids[1]) == ["a2", "a1", "b1"]  # B's own b1 stays when asked to


def test_bad_controls_raise_typed_errors():
    with pytest.raises(ConfigError, match="shift"):
        OtherUsersInput(ReadsInput(), shift=0)
    with pytest.raises(ConfigError, match="`shift` must be an integer"):  # the project's rule
        OtherUsersInput(ReadsInput(), shift=1.0)
    with pytest.raises(ConfigError, match="`k`"):
        OtherUsersInput(ReadsInput()).recommend([history("A", ["a1"]), history("B", ["b1"])], k=0)
    with pytest.raises(ConfigError, match="recommend"):
        OtherUsersInput(object())
    with pytest.raises(ConfigError, match="at least 2 users"):
        OtherUsersInput(ReadsInput()).recommend([history("A", ["a1"])])
    two = [history("A", ["a1"]), history("B", ["b1"])]
    with pytest.raises(ConfigError, match="their own input"):
        OtherUsersInput(ReadsInput(), shift=2).recommend(two)


def test_evaluate_retrieval_scores_the_control_of_an_encoder():
    cfg = SyntheticConfig(
        num_users=40, num_items=80, num_categories=4, mean_events=12, max_events=40, seed=0
    )
    log = read_events(generate_synthetic_log(cfg))
    encoder = UserEncoder.from_log(log, seed=0, hidden_size=16, num_heads=2, num_layers=1).eval()
    real = evaluate_retrieval(encoder, log)
    control = evaluate_retrieval(OtherUsersInput(encoder), log)
    assert control.num_users == real.num_users
    assert 0.0 <= control.metrics["NDCG@10"] <= 1.0
    # the user's own items stay filtered: no target hidden in its own input is ranked
    assert control.details["targets_unranked"] == real.details["targets_unranked"]
    assert control.metrics != real.metrics  # other inputs, other rankings
