from collections import Counter

import pytest

from userfm.data.vocab import MASK, OOV, PAD, SPECIAL_TOKENS, Vocab, VocabSet
from userfm.errors import ConfigError


def test_specials_are_reserved_and_known_tokens_follow_by_frequency():
    v = Vocab.build(["b", "a", "b", "c", "b", "a"])
    assert (PAD, MASK, OOV) == (0, 1, 2)
    assert v.decode([0, 1, 2]) == list(SPECIAL_TOKENS)
    assert v.tokens == ["b", "a", "c"]
    idx, unknown = v.encode(["b", "a", "c"])
    assert idx.tolist() == [3, 4, 5] and unknown == 0
    assert len(v) == 6


def test_unknown_tokens_map_to_oov_and_are_counted():
    v = Vocab.build(["x", "y"])
    idx, unknown = v.encode(["x", "zzz", "y", "qq"])
    assert idx.tolist() == [3, OOV, 4, OOV]
    assert unknown == 2


def test_min_count_and_max_size():
    tokens = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    assert Vocab.build(tokens, min_count=2).tokens == ["a", "b", "c"]
    assert Vocab.build(tokens, max_size=2).tokens == ["a", "b"]
    assert Vocab.build(Counter({"p": 2, "q": 2}), max_size=1).tokens == ["p"]  # ties by token


def test_hash_buckets_give_stable_distinct_slots_for_unknown_tokens():
    v = Vocab.build(["a"], num_hash_buckets=8)
    assert len(v) == 3 + 1 + 8
    idx, unknown = v.encode(["a", "new-1", "new-2", "new-1"])
    assert unknown == 3
    assert idx[0] == 3
    assert all(4 <= i < 12 for i in idx[1:])
    assert idx[1] == idx[3]  # same token, same bucket
    again, _ = Vocab.from_dict(v.to_dict()).encode(["new-1"])
    assert again[0] == idx[1]  # stable across a JSON round trip (no salted hash())


def test_json_round_trip(tmp_path):
    vs = VocabSet(Vocab.build(["i1", "i2", "i1"]), Vocab.build(["view", "buy"]), None)
    vs.save(tmp_path / "vocab.json")
    back = VocabSet.load(tmp_path / "vocab.json")
    assert back.items.tokens == vs.items.tokens and back.items.counts == [2, 1]
    assert back.actions.tokens == vs.actions.tokens
    assert back.categories is None


@pytest.mark.parametrize("kwargs", [{"min_count": 0}, {"max_size": 0}, {"num_hash_buckets": -1}])
def test_bad_arguments_name_the_field(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        Vocab.build(["a"], **kwargs)
