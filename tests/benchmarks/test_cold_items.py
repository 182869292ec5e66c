"""benchmarks/cold_items.py: a seed's cold movies never reach training, text models are given
them with add_items and ranked on them, and the report's JSON line has its headline keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cold_items as ci  # noqa: E402


def test_cold_movies_are_a_seeded_share_of_the_catalogue():
    ids = [str(i) for i in range(100)]
    cold = ci.cold_movies(ids, 0.2, seed=0)
    assert len(cold) == 20 and cold == ci.cold_movies(ids, 0.2, seed=0)
    assert cold != ci.cold_movies(ids, 0.2, seed=1)


def test_paired_interval_is_the_ratio_of_pooled_means_with_a_covering_interval():
    a = [np.array([0.5, 0.0, 1.0, 0.5]), np.array([1.0, 0.0])]
    b = [np.array([0.25, 0.0, 0.5, 0.25]), np.array([0.5, 0.0])]
    c = ci.paired_interval(a, b)
    assert c["ratio"] == pytest.approx(2.0) and c["ratio_lo"] <= 2.0 <= c["ratio_hi"]
    assert c["diff"] == pytest.approx(np.concatenate(a).mean() - np.concatenate(b).mean())


def test_quick_run_on_a_tiny_catalogue_reports_every_row(
    tmp_path, tiny_text_model, fake_ml100k_dir, capsys
):
    data = fake_ml100k_dir
    results = tmp_path / "runs.jsonl"
    argv = ["--data", str(data), "--quick", "--epochs", "1", "--text-model",
            str(tiny_text_model), "--results", str(results)]  # fmt: skip
    assert ci.main([*argv, "--plot", str(tmp_path / "cold.png")]) == 0
    assert (tmp_path / "cold.png").stat().st_size > 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) >= {"rows", "valid", "comparisons", "cold_targets", "seconds"}
    rows = summary["rows"]
    assert set(rows) >= {*ci.TRAINED, "text_nn", "most_popular", "text/another_user"}
    assert rows["id_only"]["ndcg@10_cold"] == 0 and rows["id_only"]["hr@10_cold"] == 0
    assert "text_vs_warm_reference_cold" in summary["comparisons"]
    # scored before add_items too: the training catalogue, as id_only ranks it (no cold
    # movie is a candidate, so no cold target is ranked), compared on warm targets
    known = rows[f"text{ci.KNOWN}"]
    assert known["ndcg@10_cold"] == 0 and known["hr@10_cold"] == 0
    assert "text_known_catalogue_vs_id_only_warm" in summary["comparisons"]
    # every fit is kept; --report reads them back and trains nothing
    saved = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["row"] for r in saved) == sorted(ci.TRAINED)
    text = next(r for r in saved if r["row"] == "text")
    assert text["config"]["data"]["items"] == "<items table>"
    assert len(text["ranks_known"]["test"]) == len(text["ranks"]["test"])
    assert ci.main([*argv, "--report"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["rows"] == summary["rows"]
    assert len(results.read_text().splitlines()) == len(ci.TRAINED)
