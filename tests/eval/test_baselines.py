import numpy as np
import pandas as pd
import pytest

from userfm import read_events
from userfm.errors import ConfigError
from userfm.eval import MostPopular

ROWS = [
    ("u1", "a"), ("u1", "b"), ("u1", "d"),
    ("u2", "a"), ("u2", "b"), ("u2", "a"),
    ("u3", "b"), ("u3", "d"), ("u3", "a"),
    ("u4", "x"),
]  # fmt: skip


@pytest.fixture(scope="module")
def log():
    df = pd.DataFrame(ROWS, columns=["user", "item"]).assign(timestamp=range(len(ROWS)))
    return read_events(df)


def counts(pop):
    return dict(zip(pop.item_ids.tolist(), pop.counts.tolist(), strict=True))


def test_fit_counts_only_the_training_part_of_the_split(log):
    # test: each evaluated user's last event is held out (u1's d, u2's a, u3's a)
    assert counts(MostPopular().fit(log, split="test")) == {"b": 3, "a": 2, "d": 1, "x": 1}
    # valid: the last two are held out; d is only ever a target there, so it is unknown
    assert counts(MostPopular().fit(log, split="valid")) == {"a": 2, "b": 1, "x": 1}
    # serving: every event
    assert counts(MostPopular().fit(log, split=None)) == {"a": 4, "b": 3, "d": 2, "x": 1}


def test_items_are_ranked_by_count_then_id(log):
    pop = MostPopular().fit(log, split="test")
    assert pop.item_ids.tolist() == ["b", "a", "d", "x"]  # d and x tie at 1: by id


def test_recommend_excludes_seen_items_and_caps_k(log):
    pop = MostPopular().fit(log, split="test")
    recs = pop.recommend({"p": ["a", "b"], "q": ["zzz"]}, k=3)
    assert recs.user_ids == ["p", "q"]
    assert recs.item_ids.tolist() == [["d", "x", None], ["b", "a", "d"]]
    np.testing.assert_array_equal(recs.scores[0], np.array([1, 1, -np.inf], dtype=np.float32))
    assert recs.scores.dtype == np.float32
    assert pop.recommend({"p": ["a"]}, k=None).item_ids.tolist() == [["b", "d", "x", None]]
    kept = pop.recommend({"p": ["a"]}, k=None, exclude_seen=False, batch_size=8, progress=False)
    assert kept.item_ids.tolist() == [["b", "a", "d", "x"]]
    # u1 and u3 have seen everything but x; to_pandas drops the empty slots
    per_user = pop.recommend(log, k=2).to_pandas().groupby("user").item.agg(list).to_dict()
    assert per_user == {"u1": ["x"], "u2": ["d", "x"], "u3": ["x"], "u4": ["b", "a"]}


def test_unfitted_or_bad_arguments_raise(log):
    with pytest.raises(ConfigError, match="fit"):
        MostPopular().recommend({"p": ["a"]})
    with pytest.raises(ConfigError, match="split"):
        MostPopular().fit(log, split="train")
    with pytest.raises(ConfigError, match="`k`"):
        MostPopular().fit(log).recommend({"p": ["a"]}, k=0)


def test_text_neighbours_ranks_items_by_cosine_to_the_users_mean_text_vector():
    from userfm.eval.baselines import TextNeighbours

    ids = ["a", "b", "c", "d"]
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0, 0]], dtype=np.float32)  # d: no text
    nn = TextNeighbours(ids, vectors)
    recs = nn.recommend({"u": ["a"], "v": ["c", "c"]}, k=None)
    assert recs["u"] == ["b", "c", "d"]  # a is seen; c and d (no text) tie at 0: item order
    assert recs["v"] == ["b", "a", "d"]  # c is seen
    np.testing.assert_allclose(recs.scores[0, 0], 0.9 / np.hypot(0.9, 0.1), rtol=1e-6)
    assert nn.recommend({"u": ["a"]}, k=1, exclude_seen=False)["u"] == ["a"]
    assert nn.recommend({"u": ["zzz"]}, k=2)["u"] == ["a", "b"]  # nothing known: all tie at 0
    with pytest.raises(ConfigError, match="vectors"):
        TextNeighbours(ids, vectors[:3])


def test_split_ranks_are_the_per_user_ranks_behind_evaluate_retrieval(log):
    from userfm.eval.retrieval import evaluate_retrieval, leave_one_out_split, ndcg, split_ranks

    pop = MostPopular().fit(log, split="test")
    data = leave_one_out_split(log, "test")
    ranks = split_ranks(pop, data)
    assert ranks.shape == (len(data.users),)
    report = evaluate_retrieval(pop, log, split="test", sampled_negatives=None)
    assert ndcg(ranks, 10) == pytest.approx(report.metrics["NDCG@10"])
