"""The reference SASRec used as the training-throughput baseline really trains."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import sasrec_reference  # noqa: E402


def test_left_padding_keeps_the_most_recent_events():
    inputs, targets = sasrec_reference.left_padded(
        [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8])],
        [np.array([2, 3, 4]), np.array([5, 6, 7, 8, 9])],
        max_len=4,
    )
    assert inputs.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    assert targets.tolist() == [[0, 2, 3, 4], [6, 7, 8, 9]]


def test_training_lowers_the_loss():
    # users repeat a short cycle of items: easy to learn
    seqs = [np.array([(u + t) % 6 + 1 for t in range(12)]) for u in range(64)]
    targets = [np.array([(u + t + 1) % 6 + 1 for t in range(12)]) for u in range(64)]
    first = sasrec_reference.train(seqs, targets, num_items=30, max_len=12, hidden=16, epochs=1)
    later = sasrec_reference.train(seqs, targets, num_items=30, max_len=12, hidden=16, epochs=30)
    assert later["events"] == 30 * first["events"] == 30 * 64 * 12
    assert later["loss"] < first["loss"] - 0.5, (first, later)


def test_the_reference_recipe_keeps_its_best_validation_checkpoint_and_ranks_every_item():
    """Issue 20 §2: the reference code trained for quality, scored by evaluate_retrieval on
    the same protocol as the other rows (every real item ranked, the user's own left out)."""
    from userfm.eval.retrieval import evaluate_retrieval
    from userfm.pretrain.data import EventDataModule

    dm = EventDataModule(synthetic={"num_users": 60, "num_items": 40, "seed": 0}, max_len=12,
                         batch_size=16, use_actions=False, use_categories=False)  # fmt: skip
    dm.setup("fit")
    scores = iter([0.2, 0.5, 0.1])  # the second evaluation is the best
    r = sasrec_reference.train(
        [e.inputs.items for e in dm.datasets["train"].examples],
        [e.targets for e in dm.datasets["train"].examples],
        num_items=len(dm.vocabs.items), max_len=12, hidden=16, epochs=3,
        evaluate=lambda model: next(scores), eval_every=1,
    )  # fmt: skip
    assert r["best_epoch"] == 2 and [e for e, _ in r["curve"]] == [1, 2, 3]
    rec = sasrec_reference.ReferenceRecommender(r["model"], dm.vocabs.items, max_len=12)
    history = dm.log_.history_at(0)
    out = rec.recommend([history], k=None)
    ranked = [i for i in out.item_ids[0] if i is not None]
    assert set(ranked) == set(dm.vocabs.items.tokens) - set(history.items)
    assert np.all(np.diff(out.scores[0][: len(ranked)]) <= 0)
    r = sasrec_reference.reference_quality(dm, seed=0, epochs=2, eval_every=1, hidden=16)
    assert r["valid"] == max(s for _, s in r["curve"]) and 0 <= r["valid"] <= 1
    assert (
        r["test"].metrics
        == evaluate_retrieval(
            sasrec_reference.ReferenceRecommender(r["model"], dm.vocabs.items, 12), dm.log_
        ).metrics
    )


def test_main_trains_and_scores_the_reference_recipe_on_a_tiny_movielens_log(
    fake_ml100k_dir, tmp_path, capsys
):
    """Smoke test (issue 35 §4): the script's own `main`, end to end on a tiny log in
    MovieLens-100K's format (2 seeds of 2 epochs); the JSON line it prints last."""
    argv = ["--data", str(fake_ml100k_dir), "--quick", "--epochs", "2", "--seeds", "2"]
    assert sasrec_reference.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert set(summary) == {"benchmark", "quick", "epochs", "ndcg10_per_seed", "ndcg10_mean"}
    assert summary["benchmark"] == "sasrec_reference" and summary["quick"] is True
    assert summary["epochs"] == 2 and len(summary["ndcg10_per_seed"]) == 2
    assert all(0 <= x <= 1 for x in summary["ndcg10_per_seed"])
    assert summary["ndcg10_mean"] == pytest.approx(np.mean(summary["ndcg10_per_seed"]), abs=1e-4)
    assert sum(line.startswith("seed ") for line in out) == 2  # a line per seed
    assert sasrec_reference.main(["--data", str(tmp_path / "absent")]) == 0  # no data: skipped
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "benchmark": "sasrec_reference", "skipped": True}  # fmt: skip
