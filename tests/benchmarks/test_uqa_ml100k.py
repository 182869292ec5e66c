"""benchmarks/uqa_ml100k.py: the issue's targets are read correctly off a written report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import uqa_ml100k as bench  # noqa: E402

from userfm.eval.uqa.report import write_report  # noqa: E402
from userfm.eval.uqa.schema import TASK_DIMENSION  # noqa: E402

N = 60  # questions per sub-task


def results_for(method: str, accuracy: dict[str, float], tokens: int | None = None) -> list:
    """N questions per sub-task, the first accuracy * N right; answers spread over A-D."""
    rows = []
    for task, dim in TASK_DIMENSION.items():
        right = round(accuracy.get(task, 0.25) * N)
        for i in range(N):
            gold = "ABCD"[i % 4]
            pred = gold if i < right else "ABCD"[(i + 1) % 4]
            rows.append({"question_id": f"{task}/{i}", "method": method, "task": task,
                         "dimension": dim, "format": "mc", "prediction": pred, "gold": gold,
                         "correct": pred == gold, "prompt_tokens": tokens, "ms": 1.0})  # fmt: skip
    return rows


def write(tmp_path, soft: dict[str, float], *, stuck: bool = False) -> Path:
    results = results_for(bench.NO_USER, {}, 60)
    results += results_for(bench.SOFT, soft, 68)
    results += results_for(bench.SOFT + bench.SWAPPED, {}, 68)
    results += results_for(bench.XATTN, soft, 60)
    results += results_for(bench.XATTN + bench.SWAPPED, {}, 60)
    results += results_for("text-256 + LoRA", {"long_term": 0.3}, 700)
    results += results_for(bench.PROBE, {"long_term": 0.6})
    if stuck:  # a scored method that always answers "A"
        results += [dict(r, method="stuck", prediction="A", correct=r["gold"] == "A")
                    for r in results_for("stuck", {})]  # fmt: skip
    write_report(results, tmp_path)
    return tmp_path


def test_a_soft_prompt_that_reads_the_user_meets_the_targets(tmp_path):
    good = {t: 0.7 for t in TASK_DIMENSION}
    verdict = bench.check_targets(write(tmp_path, good), 256)
    assert all(verdict["targets"].values()), verdict["targets"]
    assert verdict["soft_prompt_judged"] == bench.SOFT and verdict["token_ratio"] == 10.3


@pytest.mark.parametrize("stuck", [False, True])
def test_a_soft_prompt_at_chance_meets_none(tmp_path, stuck):
    verdict = bench.check_targets(write(tmp_path, {}, stuck=stuck), 256)
    assert not any(v for k, v in verdict["targets"].items() if "position bias" not in k)
    assert verdict["targets"]["no scored method flagged for position bias"] == (not stuck)
    assert verdict["flagged"] == (["stuck"] if stuck else [])
