"""Training windows: with ``all_windows`` every training event of a long history is a target."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from userfm.data.features import Featurizer
from userfm.data.log import UserHistory
from userfm.pretrain.data import (
    EventDataModule,
    StreamingExamples,
    split_history,
    training_windows,
)

DATA = dict(synthetic={"num_users": 40, "num_items": 50, "seed": 3}, max_len=6)


def history(n: int) -> UserHistory:
    return UserHistory("u", np.array([f"i{k}" for k in range(n)]), np.arange(n, dtype=np.int64))


@pytest.mark.parametrize("n", [2, 7, 8, 12, 13, 25])
def test_windows_cover_every_target_once(n):
    windows = training_windows(history(n), 6, all_windows=True)
    assert windows[0].items.tolist() == history(n).items.tolist()  # newest first
    kept = [w.items[-7:] for w in reversed(windows)]  # what the featurizer keeps of each
    # each example's targets are its kept events but the first; together: every event but e_0
    assert [t for k in kept for t in k[1:]] == [f"i{k}" for k in range(1, n)]


def test_default_is_the_whole_part_cut_by_the_featurizer():
    (window,) = training_windows(history(25), 6, all_windows=False)
    assert window.items.tolist() == history(25).items.tolist()
    assert training_windows(history(1), 6, all_windows=True) == []
    assert training_windows(history(1), 6, all_windows=False) == []


def target_counts(examples) -> Counter:
    return Counter(int(t) for ex in examples for t in ex.targets if t > 0)


def test_datamodule_trains_on_every_event_with_all_windows():
    full = EventDataModule(**DATA, all_windows=True)
    full.setup()
    last = EventDataModule(**DATA)
    last.setup()
    expected = Counter()
    for h in full.log_.iter_histories():
        part = split_history(h, "train")
        expected.update(full.vocabs.items.encode(part.items[1:])[0].tolist())
    assert target_counts(full.datasets["train"].examples) == expected
    assert sum(target_counts(last.datasets["train"].examples).values()) < sum(expected.values())
    assert full.stats["train_users"] == last.stats["train_users"] == last.stats["train_examples"]
    assert full.stats["train_examples"] > last.stats["train_examples"]
    # held-out examples do not change
    for split in ("valid", "test"):
        a, b = full.datasets[split].examples, last.datasets[split].examples
        assert [e.targets.tolist() for e in a] == [e.targets.tolist() for e in b]


def test_an_older_window_keeps_its_first_events_time_gap():
    dm = EventDataModule(**DATA, all_windows=True)
    dm.setup()
    featurizer = Featurizer(dm.vocabs, max_len=DATA["max_len"] + 1)
    long_ = next(h for h in dm.log_.iter_histories() if len(h) > 2 * DATA["max_len"] + 4)
    older = training_windows(split_history(long_, "train"), DATA["max_len"], all_windows=True)[1]
    assert len(older) > DATA["max_len"] + 1
    assert featurizer(older).time_gaps[0] > 1  # 1 = "first event": the gap to the one before


def test_stream_yields_the_same_windows():
    dm = EventDataModule(**DATA, all_windows=True)
    dm.setup()
    featurizer = Featurizer(dm.vocabs, max_len=DATA["max_len"] + 1)
    stream = StreamingExamples(dm.log_, featurizer, all_windows=True)
    assert target_counts(stream) == target_counts(dm.datasets["train"].examples)
