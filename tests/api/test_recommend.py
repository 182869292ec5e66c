import numpy as np
import pandas as pd
import pytest
import torch

from userfm import UserEncoder, UserHistory, read_events
from userfm.api.recommend import Recommendations, stable_topk
from userfm.errors import ConfigError

ITEMS = list("abcdefgh")


def make_log():
    # item frequency sets the vocabulary order: a (most frequent) ... h (least)
    rows, t = [], 1_600_000_000
    for u in range(8):
        for j, item in enumerate(ITEMS[: 8 - u]):
            rows.append((f"u{u}", item, t + 60 * j))
    return read_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


@pytest.fixture(scope="module")
def log():
    return make_log()


def controlled_model(log, item_scores: dict[str, float], num_hash_buckets=0):
    """An encoder whose user embedding is the unit vector e0 for every user (final LayerNorm
    gain 0, bias e0) and whose item rows are ``score * e0``: the ranking is known."""
    model = UserEncoder.from_log(
        log,
        seed=0,
        hidden_size=8,
        num_heads=2,
        num_layers=1,
        max_len=4,
        num_hash_buckets=num_hash_buckets,
    )
    vocab = model.vocabs.items
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0
        table = model.embeddings.item.weight
        table.zero_()
        table[:, 0] = 100.0  # specials and hash buckets score highest: they must be skipped
        for item, score in item_scores.items():
            table[int(vocab.encode([item])[0][0]), 0] = score
    return model


SCORES = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 3.0, "e": -1.0, "f": 4.0, "g": 0.5, "h": 2.0}


def expected_order(model, exclude=()):
    index = {t: i for i, t in enumerate(model.vocabs.items.tokens)}
    items = [i for i in ITEMS if i not in exclude]
    return sorted(items, key=lambda i: (-SCORES[i], index[i]))  # ties: vocabulary order


def test_controlled_scores_give_the_known_order_without_specials_or_seen_items(log):
    model = controlled_model(log, SCORES, num_hash_buckets=3)
    recs = model.recommend({"x": ["b", "g"]}, k=4, progress=False)
    assert isinstance(recs, Recommendations)
    assert recs.user_ids == ["x"] and recs.item_ids.shape == (1, 4)
    # b (5) is seen; c and d tie at 3 and come in vocabulary order (c is more frequent)
    assert list(recs.item_ids[0]) == ["f", "c", "d", "h"] == expected_order(model, "bg")[:4]
    np.testing.assert_allclose(recs.scores[0], [4.0, 3.0, 3.0, 2.0], atol=1e-5)
    assert recs.scores.dtype == np.float32


def test_exclude_seen_uses_the_full_history_not_only_the_max_len_window(log):
    model = controlled_model(log, SCORES)
    history = ["b", "f", "a", "c", "d", "e"]  # max_len=4: b and f are outside the window
    recs = model.recommend({"x": history}, k=2, progress=False)
    assert list(recs.item_ids[0]) == ["h", "g"]
    kept = model.recommend({"x": history}, k=2, exclude_seen=False, progress=False)
    assert list(kept.item_ids[0]) == ["b", "f"]


def test_k_none_ranks_every_real_item_minus_seen_ones(log):
    model = controlled_model(log, SCORES, num_hash_buckets=2)
    recs = model.recommend({"x": ["a", "e", "zzz"]}, k=None, progress=False)  # zzz: unknown
    assert recs.k == len(ITEMS)
    row = list(recs.item_ids[0])
    assert row[:-2] == expected_order(model, "ae") and row[-2:] == [None, None]
    assert np.isneginf(recs.scores[0, -2:]).all() and np.isfinite(recs.scores[0, :-2]).all()
    assert recs.stats["oov_items"] == 1
    full = model.recommend({"x": ["a"]}, k=None, exclude_seen=False, progress=False)
    assert list(full.item_ids[0]) == expected_order(model)
    assert model.recommend({"x": ["a"]}, k=1000, progress=False).k == len(ITEMS)  # capped


def test_to_pandas_is_long_format_without_empty_slots(log):
    model = controlled_model(log, SCORES)
    recs = model.recommend({"x": ["a"], "y": list("abcdef")}, k=3, progress=False)
    df = recs.to_pandas()
    assert list(df.columns) == ["user", "rank", "item", "score"]
    assert df[df.user == "x"].item.tolist() == ["b", "f", "c"]
    assert df[df.user == "y"].item.tolist() == ["h", "g"]  # only two items left for y
    assert df[df.user == "y"]["rank"].tolist() == [1, 2]
    assert recs["y"] == ["h", "g"]


def test_recommend_scores_are_the_embedding_dot_the_item_table(log):
    model = UserEncoder.from_log(log, seed=1, hidden_size=16, num_heads=2, max_len=4).eval()
    emb = model.embed(log, progress=False)
    ids, table = model.item_embeddings()
    assert ids == model.vocabs.items.tokens and table.shape == (len(ITEMS), 16)
    assert table.dtype == np.float32
    recs = model.recommend(log, k=None, exclude_seen=False, batch_size=3, progress=False)
    assert recs.user_ids == emb.user_ids
    col = {t: i for i, t in enumerate(ids)}
    full = emb.vectors @ table.T  # (N, V)
    for n in range(len(recs)):
        expect = full[n, [col[i] for i in recs.item_ids[n]]]
        np.testing.assert_allclose(recs.scores[n], expect, atol=1e-5)
        assert (np.diff(recs.scores[n]) <= 0).all()
    # batching and chunking do not change the result
    other = model.recommend(
        log, k=3, exclude_seen=False, batch_size=100, chunk_size=2, progress=False
    )
    assert (other.item_ids == recs.item_ids[:, :3]).all()
    np.testing.assert_allclose(other.scores, recs.scores[:, :3], atol=1e-5)


def test_item_vectors_are_built_once_per_call_not_per_batch(log, monkeypatch):
    model = UserEncoder.from_log(log, seed=1, hidden_size=16, num_heads=2, max_len=4).eval()
    calls = []
    build = model.embeddings.item_vectors
    monkeypatch.setattr(model.embeddings, "item_vectors", lambda: calls.append(1) or build())
    recs = model.recommend(log, k=2, batch_size=2, progress=False)  # 8 users: 4 batches
    assert len(recs) == 8 and len(calls) == 1


def test_streamed_user_histories_and_model_state(log):
    model = controlled_model(log, SCORES).train()
    stream = iter([UserHistory("x", np.array(["f"], dtype=object))])
    recs = model.recommend(stream, k=1, progress=False)
    assert recs.item_ids.tolist() == [["b"]]
    assert model.training  # restored


def test_bad_k_raises_a_config_error(log):
    model = controlled_model(log, SCORES)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="`k`"):
            model.recommend({"x": ["a"]}, k=k, progress=False)


def test_stable_topk_matches_a_stable_full_sort():
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        scores = torch.randint(0, 4, (6, 30), generator=gen).float()
        scores[scores == 0] = -torch.inf
        k = int(torch.randint(1, 31, (), generator=gen))
        values, cols = stable_topk(scores, k)
        ref = np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(cols.numpy(), ref)
        np.testing.assert_array_equal(values.numpy(), np.take_along_axis(scores.numpy(), ref, 1))


def test_getitem_finds_the_first_and_last_users_and_raises_key_error_for_others():
    users = [f"u{i}" for i in range(1000)]
    items = np.array([[f"i{i}", None] for i in range(1000)], dtype=object)
    recs = Recommendations(users, items, np.zeros((1000, 2), dtype=np.float32))
    assert recs["u0"] == ["i0"] and recs["u999"] == ["i999"]
    with pytest.raises(KeyError, match="'nobody' has no recommendations"):
        recs["nobody"]


def test_k_is_keyword_only_and_a_model_without_vocabularies_raises_one_config_error(log):
    model = controlled_model(log, SCORES)
    with pytest.raises(TypeError):
        model.recommend({"x": ["a"]}, 3)
    bare = UserEncoder(model.config)
    for call in (
        lambda: bare.recommend({"x": ["a"]}, k=1, progress=False),
        bare.item_embeddings,
        bare.featurizer,
    ):
        with pytest.raises(ConfigError, match="no vocabularies; build it with UserEncoder"):
            call()


@pytest.mark.parametrize("k", [1, 3, 8])
def test_items_scored_block_by_block_give_the_same_top_k_ties_and_seen_items_included(log, k):
    """Issue 20 §1: `recommend` scores (batch, item_block) at a time and merges a running
    top-k, with the same result as scoring every item at once: ties in item order, seen items
    excluded, empty slots where fewer than k remain."""
    # ties across block borders: a = c = e, b = d, f = g = h
    scores = {"a": 3.0, "b": 2.0, "c": 3.0, "d": 2.0, "e": 3.0, "f": 1.0, "g": 1.0, "h": 1.0}
    model = controlled_model(log, scores)
    whole = model.recommend(log, k=k, item_block=len(ITEMS), progress=False)
    for block in (1, 2, 3, 5):
        part = model.recommend(log, k=k, item_block=block, progress=False)
        assert part.user_ids == whole.user_ids
        np.testing.assert_array_equal(part.item_ids, whole.item_ids)
        np.testing.assert_array_equal(part.scores, whole.scores)
    index = {t: i for i, t in enumerate(model.vocabs.items.tokens)}
    unseen = sorted(ITEMS[1:], key=lambda i: (-scores[i], index[i]))  # u7 saw a only
    assert whole.user_ids[-1] == "u7" and list(whole["u7"]) == unseen[:k]
    with pytest.raises(ConfigError, match="item_block"):
        model.recommend(log, k=k, item_block=0, progress=False)
