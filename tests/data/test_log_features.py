import datasets
import numpy as np
import pandas as pd
import pytest

from userfm.data.collate import collate
from userfm.data.features import FIRST_EVENT_GAP, Featurizer, hours_and_weekdays, time_gap_buckets
from userfm.data.log import EventLog, UserHistory
from userfm.data.splits import leave_one_out, time_split
from userfm.data.vocab import OOV, PAD, build_vocabs
from userfm.errors import ConfigError, EmptyLogError


def make_log(rows, **kw):
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp", "category"][: len(rows[0])])
    return EventLog(datasets.Dataset.from_pandas(df, preserve_index=False), **kw)


def test_sort_is_stable_by_user_then_time_and_ties_keep_input_order():
    log = make_log(
        [("u1", "c", 5), ("u2", "x", 1), ("u1", "a", 3), ("u1", "b1", 3), ("u1", "b2", 3)]
    )
    h = log.history("u1")
    assert h.items.tolist() == ["a", "b1", "b2", "c"]
    assert h.timestamps.tolist() == [3, 3, 3, 5]
    assert log.stats.rows_reordered > 0
    assert log.user_ids.tolist() == ["u1", "u2"]
    assert log.lengths.tolist() == [4, 1]
    assert log.stats.single_event_users == 1


def test_iter_histories_covers_every_user_in_chunks():
    rows = [(f"u{u}", f"i{k}", k) for u in range(7) for k in range(u + 1)]
    log = make_log(rows)
    hs = list(log.iter_histories(chunk_users=3))
    assert [len(h) for h in hs] == list(range(1, 8))
    assert sum(len(h) for h in hs) == len(rows)


def test_empty_log_raises():
    df = pd.DataFrame(
        {
            "user": pd.Series([], dtype=str),
            "item": pd.Series([], dtype=str),
            "timestamp": pd.Series([], dtype="int64"),
        }
    )
    with pytest.raises(EmptyLogError):
        EventLog(datasets.Dataset.from_pandas(df, preserve_index=False))


def test_unknown_user_names_it():
    with pytest.raises(KeyError, match="nobody"):
        make_log([("u1", "a", 1)]).history("nobody")


def test_time_gap_buckets_are_log2_and_first_event_is_marked():
    ts = np.array([0, 0, 1, 4, 1000, 10**10], dtype=np.int64)
    b = time_gap_buckets(ts, num_buckets=32)
    assert b[0] == FIRST_EVENT_GAP
    assert b[1] == 2  # gap 0
    assert b[2] == 3  # gap 1 -> floor(log2 2) = 1
    assert b[3] == 4  # gap 3 -> log2 4 = 2
    assert b[4] == 2 + 9  # gap 996 -> floor(log2 997) = 9
    assert b[5] == 31  # clipped to the last bucket
    assert time_gap_buckets(ts, num_buckets=8).max() == 7


def test_hours_and_weekdays_utc():
    # 2024-01-01 was a Monday; 13:30 UTC
    t = np.array([1704115800], dtype=np.int64)
    hours, weekdays = hours_and_weekdays(t)
    assert hours.tolist() == [14] and weekdays.tolist() == [1]


def test_featurizer_truncates_to_most_recent_and_counts_oov():
    log = make_log([("u", f"i{k}", 100 * k, "A|B" if k % 2 else "C") for k in range(10)])
    vocabs = build_vocabs(log)
    f = Featurizer(vocabs, max_len=4, max_categories=2)
    h = log.history("u")
    enc = f(h)
    assert vocabs.items.decode(enc.items) == ["i6", "i7", "i8", "i9"]
    assert enc.time_gaps[0] != FIRST_EVENT_GAP  # its previous event exists, just not kept
    assert enc.categories.shape == (4, 2)
    assert vocabs.categories.decode(enc.categories[1]) == ["A", "B"]
    assert enc.categories[0, 1] == PAD
    unknown = UserHistory("new", np.array(["i1", "never-seen"], dtype=object), np.array([0, 5]))
    e2 = f(unknown)
    assert e2.items[1] == OOV and e2.oov == 1 and f.oov_items == 1


def test_collate_right_pads_and_masks():
    log = make_log([("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "x", 1)])
    f = Featurizer(build_vocabs(log))
    batch = collate([f(h) for h in log.iter_histories()])
    assert batch.items.shape == (2, 3)
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.items[1, 1:].tolist() == [PAD, PAD]
    assert batch.lengths.tolist() == [3, 1]
    assert batch.user_ids == ["a", "b"]
    assert batch.categories is None and batch.actions is None


def test_leave_one_out_and_time_split():
    log = make_log([("a", f"i{k}", k) for k in range(5)] + [("b", "x", 1), ("b", "y", 9)])
    s = leave_one_out(log.history("a"))
    assert s.train.items.tolist() == ["i0", "i1", "i2"]
    assert s.valid_target == "i3" and s.test_target == "i4"
    assert s.test_input.items.tolist() == ["i0", "i1", "i2", "i3"]
    assert leave_one_out(log.history("b")) is None
    before, after = time_split(log, cutoff=3)
    assert len(before) + len(after) == len(log)
    assert sorted(after.user_ids.tolist()) == ["a", "b"]
    with pytest.raises(EmptyLogError, match="cutoff"):
        time_split(log, cutoff=100)


def test_collate_pads_to_a_multiple_but_never_beyond_max_len():
    log = make_log([("a", f"i{k}", k) for k in range(5)] + [("b", "x", 1)])
    f = Featurizer(build_vocabs(log))
    hs = [f(h) for h in log.iter_histories()]
    assert collate(hs, pad_to_multiple_of=4).items.shape == (2, 8)
    assert collate(hs, pad_to_multiple_of=4, max_len=6).items.shape == (2, 6)
    assert collate(hs, pad_to_multiple_of=4).mask.sum().item() == 6


def test_histories_without_the_models_side_features_get_pad_and_are_counted():
    log = make_log([("u", f"i{k}", k, "A|B") for k in range(4)])
    f = Featurizer(build_vocabs(log), max_categories=2)
    plain = UserHistory("new", np.array(["i1", "i2"], dtype=object), np.array([0, 5]))
    enc = f(plain)
    assert enc.categories.shape == (2, 2) and enc.categories.max() == PAD
    assert f.missing_side_features == 1
    f(log.history("u"))
    assert f.missing_side_features == 1


def test_item_category_table_encodes_each_items_categories_like_its_events():
    log = make_log(
        [("u", "a", 1, "A|B|C"), ("u", "b", 2, None), ("v", "a", 3, "A|B|C"), ("v", "c", 4, "C")]
    )
    f = Featurizer(build_vocabs(log), max_categories=2)
    table = f.item_category_table(log)
    vocabs = f.vocabs
    assert table.shape == (len(vocabs.items), 2)
    index = dict(zip(vocabs.items.tokens, vocabs.items.encode(vocabs.items.tokens)[0], strict=True))
    assert vocabs.categories.decode(table[index["a"]]) == ["A", "B"]  # first max_categories
    assert vocabs.categories.decode(table[index["c"]][:1]) == ["C"] and table[index["c"], 1] == PAD
    assert (table[index["b"]] == PAD).all()  # no category
    assert (table[:3] == PAD).all()  # specials
    np.testing.assert_array_equal(table[index["a"]], f(log.history("u")).categories[0])


def test_item_category_table_needs_categories():
    log = make_log([("u", "a", 1), ("u", "b", 2)])
    with pytest.raises(ConfigError, match="category"):
        Featurizer(build_vocabs(log)).item_category_table(log)
