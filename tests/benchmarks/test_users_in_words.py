"""benchmarks/users_in_words.py: graded NDCG@k, shares of held-out events, and a quick run
on a tiny catalogue in MovieLens' file format that reports every row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import users_in_words as uw  # noqa: E402


def test_graded_ndcg_is_one_for_the_ideal_order_and_zero_without_relevant_users():
    relevance = np.array([0.0, 0.5, 0.2, 0.0])
    assert uw.ndcg_at(relevance, relevance, k=2) == pytest.approx(1.0)
    worse = uw.ndcg_at(-relevance, relevance, k=2)
    assert worse == 0.0
    middle = uw.ndcg_at(np.array([0, 0.1, 0.9, 0]), relevance, k=2)
    expected = (0.2 + 0.5 / np.log2(3)) / (0.5 + 0.2 / np.log2(3))
    assert middle == pytest.approx(expected)
    assert uw.ndcg_at(np.ones(4), np.zeros(4)) == 0.0


def test_genre_shares_count_each_of_an_items_genres():
    shares = uw.genre_shares([["a", "b"], ["c"]], {"a": {"X", "Y"}, "b": {"X"}}, ["X", "Y"])
    np.testing.assert_allclose(shares, [[1.0, 0.5], [0.0, 0.0]])


def test_quick_run_reports_every_row(tiny_text_model, fake_ml100k_dir, capsys):
    argv = ["--data", str(fake_ml100k_dir), "--quick", "--epochs", "1", "--steps", "20",
            "--horizon", "3", "--text-model", str(tiny_text_model)]  # fmt: skip
    assert uw.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["ndcg@50"]) == {
        "aligned", "aligned_infonce", "history_share", "another_user", "random"}  # fmt: skip
    assert all(0 <= v <= 1 for v in summary["ndcg@50"].values())
    assert summary["genres"] >= 2 and len(summary["aligned_per_seed"]) == 1
    assert summary["split"] == "test"


def test_the_validation_split_never_reads_the_test_events(fake_ml100k_dir, tmp_path):
    """--valid drops each user's last `horizon` events before anything: its held-out events
    are the ones before them, its inputs the ones before those."""
    import cold_items as ci
    import pandas as pd

    log, _ = ci.load_ml100k(fake_ml100k_dir)
    events = log.to_pandas()
    per_user = {str(u): part["item"].tolist() for u, part in events.groupby("user", sort=False)}
    (tmp_path / "t").mkdir()
    (tmp_path / "v").mkdir()
    path, users, inputs, future = uw.split_log(log, 2, tmp_path / "t")
    vpath, vusers, vinputs, vfuture = uw.split_log(log, 2, tmp_path / "v", valid=True)
    for user, inp, fut in zip(users, inputs, future):
        assert inp + fut == per_user[user] and len(fut) == 2
    for user, inp, fut in zip(vusers, vinputs, vfuture):
        assert inp + fut == per_user[user][:-2] and len(fut) == 2 and inp
    assert set(vusers) == {u for u, items in per_user.items() if len(items) > 4}
    written = pd.read_parquet(vpath)
    assert len(written) == sum(len(i) for i in vinputs)
