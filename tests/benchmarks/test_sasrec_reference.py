"""The reference SASRec used as the training-throughput baseline really trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

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
