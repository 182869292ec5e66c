"""The UQA recipe in miniature: synthetic log -> questions -> every trained method (tiny random
LLM) -> `userfm eval uqa` -> a report with every method, baselines included."""

from __future__ import annotations

import pandas as pd
import pytest

from userfm.adapters.cli import make_cli
from userfm.adapters.config import ENCODER_MODES
from userfm.cli import main as userfm_main

from .conftest import fit_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TRAINED = {  # method name -> (mode, lora)
    "none + LoRA": ("none", True),
    "text + LoRA": ("text", True),
    "soft prompt": ("soft_prompt", False),
    "soft prompt + LoRA": ("soft_prompt", True),
    "cross-attn": ("cross_attn", False),
    "cross-attn + LoRA": ("cross_attn", True),
}


def test_every_method_trains_and_lands_in_one_report(workspace, tmp_path, capsys):
    adapters = []
    for i, (name, (mode, lora)) in enumerate(TRAINED.items()):
        out = tmp_path / f"m{i}"
        make_cli(
            [
                "fit",
                *fit_args(workspace, "soft_prompt_lora", out, steps=2),
                "--model.adapter.mode", mode,
                "--model.adapter.lora", str(lora).lower(),
                *([] if mode in ENCODER_MODES else ["--model.adapter.recent_events", "0"]),
                "--model.adapter.text_tokens", "24",
                "--model.max_length", "96",
            ]
        )  # fmt: skip
        adapters += ["--adapter", f"{name}={out / 'adapter'}"]
    report = tmp_path / "report"
    rc = userfm_main(
        [
            "eval", "uqa",
            "--questions", str(workspace / "qa"),
            "--log", str(workspace / "events.parquet"),
            "--schema.action", "action", "--schema.category", "category", "--schema.title", "title",
            "--out", str(report),
            *adapters,
            "--zero_shot", "--llm", str(workspace / "llm"), "--text_tokens", "12", "24",
            "--max_per_task", "4", "--swapped", "--letters",
            "--encoder", str(workspace / "encoder"),
        ]
    )  # fmt: skip
    assert rc == 0
    zero_shot = ["none (zero-shot)", "text-12 (zero-shot)", "text-24 (zero-shot)"]
    llm_methods = [*TRAINED, *zero_shot]
    user_methods = [m for m, (mode, _) in TRAINED.items() if mode in ENCODER_MODES]
    methods = [
        *llm_methods,
        *(m + " [per token]" for m in llm_methods),
        *(m + " [letter]" for m in zero_shot),
        *(m + " [swapped user]" for m in user_methods),
        "random",
        "prior-only",
        "direct (from history)",
        "encoder probe (linear)",
    ]
    text = (report / "report.md").read_text()
    for m in methods:  # dimension, sub-task, positions and efficiency tables
        assert text.count(f"| {m} |") + text.count(f"| {m} (position bias) |") >= 3, m
    assert "## Predicted option positions" in text
    assert "none + LoRA" in capsys.readouterr().out  # the headline table is printed
    for chart in ("accuracy_by_task.png", "accuracy_vs_tokens.png"):
        assert (report / chart).read_bytes()[:4] == b"\x89PNG"

    results = pd.read_json(report / "results.jsonl", lines=True)
    questions = results[results["method"] == "random"]["question_id"]
    assert len(questions) == 8  # two sub-tasks, at most 4 each
    for m in methods:  # every question scored by every method
        assert sorted(results[results["method"] == m]["question_id"]) == sorted(questions), m
    tokens = results.groupby("method")["prompt_tokens"].mean()
    assert tokens["text-24 (zero-shot)"] > tokens["text-12 (zero-shot)"] > tokens["none + LoRA"]
    # K = 2 latents (fit_args) + R = 10 recent events (the shipped configs)
    assert tokens["soft prompt"] == tokens["none + LoRA"] + 2 + 10
    assert tokens["cross-attn"] == tokens["none + LoRA"]
    assert results[results["method"] == "random"]["prompt_tokens"].isna().all()
    events = results.groupby("method")["events_read"].mean()
    assert events["text-24 (zero-shot)"] > events["text-12 (zero-shot)"] > 0
    assert events["none (zero-shot)"] == 0 and events["soft prompt"] > events["text-24 (zero-shot)"]
    assert "history events read (mean)" in text
