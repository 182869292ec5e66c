"""The linear probe of the UQA diagnosis reads answers that are in the features, and only those."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import uqa_encoder_probe  # noqa: E402

ANSWERS = ["Drama", "Comedy", "Action", "Horror"]


def records(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        answer = ANSWERS[int(torch.randint(4, (1,), generator=g))]
        others = [a for a in ANSWERS if a != answer]
        out.append({"answer": answer, "options": [others[0], answer, others[1], "Unseen"]})
    return out


def one_hot(recs, noise: float, seed: int) -> torch.Tensor:
    x = torch.zeros(len(recs), 8)
    for i, r in enumerate(recs):
        x[i, ANSWERS.index(r["answer"])] = 1.0
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_the_probe_finds_answers_in_the_features_and_not_elsewhere():
    train, test = records(200, 0), records(100, 1)
    acc = uqa_encoder_probe.probe_accuracy(
        train, test, one_hot(train, 0.1, 0), one_hot(test, 0.1, 1), steps=100
    )
    assert acc == 1.0
    noise = uqa_encoder_probe.probe_accuracy(
        train, test, torch.randn(200, 8), torch.randn(100, 8), steps=100
    )
    assert noise < 0.5  # 3 options it knows: chance is about 1/3
