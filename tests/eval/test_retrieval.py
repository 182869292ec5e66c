import json
import math

import numpy as np
import pandas as pd
import pytest

from userfm import UserEncoder, read_events
from userfm.api.recommend import Recommendations
from userfm.data import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError, DataError
from userfm.eval import (
    MostPopular,
    Recommender,
    bucket_recall,
    evaluate_retrieval,
    frequency_buckets,
    hit_rate,
    leave_one_out_split,
    macro_recall,
    mrr,
    ndcg,
    sampled_ranks,
    weighted_recall,
)
from userfm.eval.retrieval import sample_negatives

INF = np.inf


# ---- metric math on hand-computed ranks -------------------------------------------------------
def test_hit_rate_ndcg_and_mrr_on_hand_ranks():
    ranks = np.array([1, 3, 11, INF])
    assert hit_rate(ranks, 1) == 0.25
    assert hit_rate(ranks, 3) == 0.5 and hit_rate(ranks, 10) == 0.5
    assert hit_rate(ranks, 20) == 0.75
    assert ndcg(ranks, 1) == 0.25
    assert ndcg(ranks, 5) == pytest.approx((1 + 1 / 2) / 4)  # 1/log2(3+1) = 1/2
    assert ndcg(ranks, 20) == pytest.approx((1 + 1 / 2 + 1 / math.log2(12)) / 4)
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 11) / 4)
    assert math.isnan(hit_rate(np.array([]), 5))


def test_sampled_ranks_count_negatives_ranked_above_the_target():
    target = np.array([5, INF, 2])
    negatives = np.array([[1, 7, INF], [1, 2, 3], [INF, INF, 3]])
    np.testing.assert_array_equal(sampled_ranks(target, negatives), [2, INF, 1])


def test_frequency_buckets_split_by_equal_event_mass():
    # sorted counts 6, 3, 2, 1 (total 12); mass before each: 0, 6, 9, 11 -> buckets 0, 1, 2, 2
    mass = np.array([1, 6, 3, 2])
    np.testing.assert_array_equal(frequency_buckets(mass, 3, by="mass"), [2, 0, 1, 2])
    # ties keep position order; zero-count items go to the tail
    np.testing.assert_array_equal(frequency_buckets(np.array([2, 2, 0]), 2, by="mass"), [0, 1, 1])
    np.testing.assert_array_equal(frequency_buckets(np.array([0, 0]), 3, by="mass"), [2, 2])
    np.testing.assert_array_equal(frequency_buckets(np.array([5, 1]), 1, by="mass"), [0, 0])
    with pytest.raises(ConfigError, match="num_buckets"):
        frequency_buckets(np.array([1]), 0)


def test_frequency_buckets_split_by_equal_item_count_by_default():
    # popularity ranks of [1, 6, 3, 2, 9, 0] are 4, 1, 2, 3, 0, 5 -> thirds of 6 items
    counts = np.array([1, 6, 3, 2, 9, 0])
    np.testing.assert_array_equal(frequency_buckets(counts, 3), [2, 0, 1, 1, 0, 2])
    # one very popular item: by mass it is a bucket alone, by items the head third
    skewed = np.array([100, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(frequency_buckets(skewed, 3, by="mass"), [0, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(frequency_buckets(skewed, 3), [0, 0, 1, 1, 2, 2])
    with pytest.raises(ConfigError, match="`by`"):
        frequency_buckets(counts, 3, by="events")


def test_macro_and_weighted_recall():
    ranks = np.array([1, 1, 1, INF])
    buckets = np.array([0, 0, 0, 1])  # bucket 2 has no target
    per_bucket = bucket_recall(ranks, buckets, 1, 3)
    np.testing.assert_array_equal(per_bucket[:2], [1.0, 0.0])
    assert np.isnan(per_bucket[2])
    assert macro_recall(ranks, buckets, 1, 3) == 0.5  # mean over the 2 buckets with targets
    assert weighted_recall(ranks, buckets, 1, 3) == 0.75 == hit_rate(ranks, 1)


def test_sample_negatives_are_distinct_unseen_and_deterministic():
    exclude = np.array([0, 1, 2, 3, -1])
    a = sample_negatives(np.random.default_rng(0), 1000, exclude, 100)
    b = sample_negatives(np.random.default_rng(0), 1000, exclude, 100)
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(set(a.tolist())) == 100 and a.min() >= 4 and a.max() < 1000
    np.testing.assert_array_equal(
        sample_negatives(np.random.default_rng(0), 6, exclude, 100), [4, 5]
    )
    dense = sample_negatives(np.random.default_rng(0), 150, exclude, 100)
    assert len(set(dense.tolist())) == 100 and dense.min() >= 4


# ---- the protocol on logs ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def log():
    cfg = SyntheticConfig(
        num_users=40, num_items=80, num_categories=4, mean_events=12, max_events=40, seed=0
    )
    return read_events(generate_synthetic_log(cfg))


@pytest.fixture(scope="module")
def encoder(log):
    return UserEncoder.from_log(
        log, seed=0, hidden_size=16, num_heads=2, num_layers=1, max_len=16
    ).eval()


def check_report(report, log, split):
    m = report.metrics
    assert all(0.0 <= v <= 1.0 for v in m.values()), m
    hr = [m[f"HR@{k}"] for k in (1, 5, 10, 20)]
    assert hr == sorted(hr)
    for k in (5, 10, 20):
        assert m[f"NDCG@{k}"] <= m[f"HR@{k}"]
        assert m[f"weighted_recall@{k}"] == pytest.approx(m[f"HR@{k}"])
    assert {"MRR", "sampled_HR@10", "sampled_NDCG@10", "macro_recall@10"} <= set(m)
    assert m["sampled_HR@10"] >= m["HR@10"]  # fewer competitors than the full ranking
    n_eval = int((log.lengths >= 3).sum())
    assert report.num_users == n_eval
    assert f"{split} split" in report.protocol and "full ranking" in report.protocol
    assert f"over {log.stats.items:,} items" in report.protocol
    assert f"{n_eval:,} users" in report.protocol and "seen items filtered" in report.protocol
    assert "100 items sampled" in report.sampled_protocol
    lines = report.format().splitlines()
    assert len(lines) == len(m)
    for line, name in zip(lines, m, strict=True):
        assert line.startswith(name) and line.endswith(report.protocol_of(name))
        assert report.protocol in line or report.sampled_protocol in line
    json.dumps(report.to_dict())
    assert sum(b["targets"] for b in report.buckets) == n_eval
    assert report.details["users_skipped"] == log.num_users - n_eval


@pytest.mark.parametrize("split", ["test", "valid"])
def test_most_popular_and_an_untrained_encoder_give_sane_reports(log, encoder, split):
    pop = MostPopular().fit(log, split=split)
    assert isinstance(pop, Recommender) and isinstance(encoder, Recommender)
    for model in (pop, encoder):
        check_report(evaluate_retrieval(model, log, split=split, batch_size=16), log, split)


def test_reports_are_deterministic(log, encoder):
    a = evaluate_retrieval(encoder, log, seed=3)
    b = evaluate_retrieval(encoder, log, seed=3)
    assert a.metrics == b.metrics


class Oracle:
    """Cheats: knows every user's target and ranks it first."""

    def __init__(self, targets: dict[str, str], extra=("i00",)):
        self.targets, self.extra = targets, list(extra)

    def recommend(self, histories, *, k=None, exclude_seen=True, **kwargs):
        users = [h.user for h in histories]
        items = [[self.targets[u], *self.extra] for u in users]
        return Recommendations(users, np.array(items, dtype=object), np.ones((len(users), 2)))


def test_an_oracle_scores_one_everywhere(log):
    split = leave_one_out_split(log, "test")
    oracle = Oracle(dict(zip(split.users, split.targets, strict=True)))
    report = evaluate_retrieval(oracle, log)
    for name in ("HR@1", "HR@20", "NDCG@5", "NDCG@20", "MRR", "sampled_HR@10", "sampled_NDCG@10"):
        assert report.metrics[name] == 1.0, name
    assert report.metrics["macro_recall@1"] == 1.0


def test_misses_filtered_and_unknown_targets_on_a_hand_log():
    rows = [
        ("u1", "a"), ("u1", "b"), ("u1", "d"),  # target d: rank 1 after a, b are filtered
        ("u2", "a"), ("u2", "b"), ("u2", "a"),  # target a is in the input: filtered -> miss
        ("u3", "b"), ("u3", "d"), ("u3", "a"),  # target a: rank 1 after b, d are filtered
        ("u4", "x"),  # < 3 events: not evaluated, a training event
        ("u5", "b"), ("u5", "a"), ("u5", "new"),  # target never in training: unknown -> miss
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["user", "item"]).assign(timestamp=range(len(rows)))
    log = read_events(df)
    report = evaluate_retrieval(MostPopular().fit(log), log, ks=(1, 2), sampled_negatives=0)
    assert report.num_users == 4 and report.sampled_protocol is None
    assert report.metrics["HR@1"] == 0.5 and report.metrics["MRR"] == 0.5
    assert "sampled_HR@10" not in report.metrics
    d = report.details
    assert d["users_skipped"] == 1 and d["targets_in_input"] == 1 and d["targets_unranked"] == 2
    assert "(1 with < 3 events skipped)" in report.protocol
    assert "over 5 items" in report.protocol  # a, b, d, x, new
    # default buckets: equal item count, head first (training counts a 3, b 4, d 1, x 1, new 0)
    assert [bk["items"] for bk in report.buckets] == [2, 2, 1]  # {b, a}, {d, x}, {new}
    assert [bk["targets"] for bk in report.buckets] == [2, 1, 1]  # a, a | d | new
    assert "equal item count" in report.bucket_protocol
    by_mass = evaluate_retrieval(MostPopular().fit(log), log, ks=(1,), bucket_by="mass")
    assert "equal training mass" in by_mass.bucket_protocol
    assert [bk["items"] for bk in by_mass.buckets] == [1, 1, 3]  # {b}, {a}, {d, x, new}


def test_bad_arguments_raise_typed_errors(log, encoder):
    with pytest.raises(ConfigError, match="split"):
        evaluate_retrieval(encoder, log, split="train")
    with pytest.raises(ConfigError, match="ks"):
        evaluate_retrieval(encoder, log, ks=(0, 5))
    with pytest.raises(ConfigError, match="recommend"):
        evaluate_retrieval(object(), log)
    with pytest.raises(ConfigError, match="bucket_by"):
        evaluate_retrieval(encoder, log, bucket_by="events")
    short = read_events(pd.DataFrame({"user": ["u", "u"], "item": ["a", "b"], "timestamp": [1, 2]}))
    with pytest.raises(DataError, match="3 events"):
        evaluate_retrieval(MostPopular().fit(short, split=None), short)
