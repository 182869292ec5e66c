"""benchmarks/adapter_efficiency.py: a run on a tiny random LLM reports prompt tokens, prefill
time and FLOPs of every method at every length, and the ratios its targets are judged on."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import adapter_efficiency as ae  # noqa: E402

METHODS = ["text", "soft_k8", "soft_k32", "crossattn_k8"]  # the JSON keys' method slugs


def test_a_tiny_run_reports_every_method_and_the_ratios(tiny_llm, capsys):
    argv = ["--llm", str(tiny_llm), "--users", "1", "--repeats", "1", "--lengths", "5,10"]
    assert ae.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benchmark"] == "adapter_efficiency" and summary["data"] == "synthetic"
    assert summary["users"] == 1 and summary["repeats"] == 1
    for n in (5, 10):
        for m in METHODS:
            for key in ("tokens", "ms", "gflops"):
                value = summary[f"{m}_{key}_{n}"]
                assert math.isfinite(value) and value > 0, f"{m}_{key}_{n}"
    assert set(summary["targets_met"]) == set(ae.TARGETS)
    for k in ae.TARGETS:
        assert math.isfinite(summary[f"{k}_ratio"]) and summary[f"{k}_ratio"] > 0
    # the text prompt grows with the history; a soft prompt is K vectors whatever its length
    assert summary["text_tokens_10"] > summary["text_tokens_5"]
    assert summary["soft_k8_tokens_5"] == summary["soft_k8_tokens_10"] < summary["text_tokens_5"]
    assert summary["soft_k32_tokens_10"] - summary["soft_k8_tokens_10"] == 32 - 8
    ratio = summary["text_tokens_10"] / summary["soft_k8_tokens_10"]
    assert summary["soft_tokens_ratio"] == round(ratio, 2)  # judged at the longest length
