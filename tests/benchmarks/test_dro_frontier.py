"""benchmarks/dro_frontier.py: the frontier is judged against λ = inf, the best λ is the one
with the most macro recall within the NDCG budget, and λ = inf is required."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dro_frontier as df  # noqa: E402


def test_the_best_lambda_is_the_most_macro_recall_within_three_percent_ndcg():
    points = [
        df.Point(math.inf, ndcg=[0.100, 0.102], macro=[0.050, 0.052]),
        df.Point(4.0, ndcg=[0.099, 0.100], macro=[0.058, 0.060]),  # -1.5% NDCG, 1.157x
        df.Point(1.0, ndcg=[0.090, 0.092], macro=[0.070, 0.072]),  # -9.9%: over budget
    ]
    verdict = df.judge(points)
    assert verdict["best_lambda"] == "4" and verdict["met"]
    assert verdict["points"]["1"]["macro_vs_plain"] == round(0.071 / 0.051, 3)
    lines = df.table(
        "long-tail", points, verdict, tail=612, popular={"ndcg10": 0.02, "macro_recall10": 0.01}
    )
    assert "612 test targets in the tail bucket" in lines[0]
    assert "| most popular (no model) | 0.0200 | 0.0100 | | |" in lines
    assert any(line.startswith("| 4 | 0.0995 ± 0.0007") for line in lines)
    points[1].macro = [0.052, 0.053]  # within budget but not 1.15x
    assert not df.judge(points)["met"]


def test_lambda_inf_is_required(capsys):
    with pytest.raises(SystemExit):
        df.parse_args(["--lambdas", "4", "2"])
    assert "inf" in capsys.readouterr().err


def test_runs_kept_in_a_results_file_are_read_back_not_retrained(tmp_path, monkeypatch):
    """The 30 runs of the judged frontier can be split across processes and sessions: each
    finished run is a line of --results, read back when the configuration matches."""
    from userfm.eval.retrieval import RetrievalReport

    trained = []

    def fake(log, temperature, seed, args):
        trained.append((temperature, seed, args.epochs))
        metrics = {"NDCG@10": 0.1 + seed / 100, "macro_recall@10": 0.05 + 1 / (1 + temperature)}
        buckets = [{"bucket": 2, "items": 5, "targets": 612, "recall@10": 0.1}]
        control = {"NDCG@10": 0.01, "macro_recall@10": 0.005}
        return tuple(
            RetrievalReport(metrics=m, protocol="p", num_users=3, buckets=buckets)
            for m in (metrics, control)
        )

    monkeypatch.setattr(df, "fit_and_score", fake)
    results = tmp_path / "runs.jsonl"
    part = df.parse_args(["--lambdas", "inf", "2", "--seeds", "2", "--results", str(results)])
    df.frontier("long-tail", part)
    assert len(trained) == 4 and len(results.read_text().splitlines()) == 4
    every = df.parse_args(["--lambdas", "inf", "2", "1", "--seeds", "2", "--results", str(results)])
    points, tail = df.frontier("long-tail", every)
    assert len(trained) == 6 and trained[-2:] == [(1.0, 0, 20), (1.0, 1, 20)]  # only λ = 1 new
    assert tail == 612 and points[0].ndcg == [0.1, 0.11] and points[1].macro == [0.05 + 1 / 3] * 2
    longer = df.parse_args(["--lambdas", "inf", "--seeds", "1", "--epochs", "30",
                            "--results", str(results)])  # fmt: skip
    df.frontier("long-tail", longer)
    assert trained[-1] == (math.inf, 0, 30)  # another budget is another run


def test_each_run_is_also_scored_given_another_users_input(tmp_path, monkeypatch):
    """The guide's degenerate control beside every frontier point; runs saved before it
    existed are read back without it, and the table says which λ lack it."""
    from userfm.eval.retrieval import RetrievalReport

    def fake(log, temperature, seed, args):
        buckets = [{"bucket": 2, "items": 5, "targets": 612, "recall@10": 0.1}]
        return tuple(
            RetrievalReport(
                metrics={"NDCG@10": x, "macro_recall@10": x / 2},
                protocol="p",
                num_users=3,
                buckets=buckets,
            )  # fmt: skip
            for x in (0.2 + seed / 100, 0.02 + seed / 100)
        )

    monkeypatch.setattr(df, "fit_and_score", fake)
    results = tmp_path / "runs.jsonl"
    args = df.parse_args(["--lambdas", "inf", "1", "--seeds", "2", "--results", str(results)])
    old = {"key": df.run_key("long-tail", 1.0, 0, args), "ndcg10": 0.19,
           "macro_recall10": 0.1, "tail_targets": 612}  # saved before the control  # fmt: skip
    results.write_text(json.dumps(old) + "\n")
    points, tail = df.frontier("long-tail", args)
    assert points[0].control_ndcg == [0.02, 0.03] and points[1].control_ndcg == [0.03]
    assert json.loads(results.read_text().splitlines()[1])["another_user"] == {
        "ndcg10": 0.02, "macro_recall10": 0.01}  # fmt: skip
    verdict = df.judge(points)
    assert verdict["points"]["inf"]["another_user"] == {
        "ndcg10": 0.025, "macro_recall10": 0.0125, "runs": 2}  # fmt: skip
    lines = df.table("long-tail", points, verdict, tail)
    assert "| λ = inf, another user's input (2 of 2 seeds) | 0.0250 ± 0.0071 | " in "\n".join(lines)
    assert "| λ = 1, another user's input (1 of 2 seeds) | 0.0300 | 0.0150 | | |" in lines
    assert lines[-2].startswith("another user's input not measured for some runs of λ 1 ")


def test_a_small_run_draws_both_frontiers_and_reads_its_runs_back(
    fake_ml100k_dir, tmp_path, capsys
):
    """Smoke test (issue 35 §4): `main` end to end, both logs (a tiny long-tail log and a tiny
    log in MovieLens-100K's format), λ = inf and 2, 2 epochs (DRO applies from the second),
    the chart and a --results file; a second call reads every run back from it."""
    chart, results = tmp_path / "frontier.png", tmp_path / "runs.jsonl"
    argv = ["--quick", "--epochs", "2", "--lambdas", "inf", "2", "--long-tail-size", "150", "80",
            "--data", str(fake_ml100k_dir), "--out", str(chart), "--results", str(results)]  # fmt: skip
    assert df.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"benchmark", "quick", "long-tail", "ml-100k", "target_met"}
    assert summary["benchmark"] == "dro_frontier" and summary["target_met"] in (True, False)
    for log in ("long-tail", "ml-100k"):
        frontier = summary[log]
        assert set(frontier) == {"points", "best_lambda", "best_macro_vs_plain", "met",
                                 "tail_test_targets", "most_popular"}  # fmt: skip
        assert set(frontier["points"]) == {"inf", "2"} and frontier["tail_test_targets"] > 0
        assert frontier["points"]["inf"]["macro_vs_plain"] == 1.0
        for point in frontier["points"].values():
            assert 0 <= point["ndcg10"] <= 1 and 0 <= point["macro_recall10"] <= 1
            assert math.isfinite(point["macro_vs_plain"]) and point["another_user"]["runs"] == 1
        assert set(frontier["most_popular"]) == {"ndcg10", "macro_recall10"}
    assert not summary["target_met"]  # 150 users: too few tail targets to judge
    points = summary["long-tail"]["points"]
    assert points["2"]["ndcg10"] != points["inf"]["ndcg10"]  # DRO's second epoch moved it
    assert chart.read_bytes().startswith(b"\x89PNG")
    runs = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(runs) == 4 and all(r["key"]["epochs"] == 2 for r in runs)
    assert [r["key"].get("long_tail_size") for r in runs] == [[150, 80]] * 2 + [None] * 2
    assert df.main(argv) == 0  # every run read back, none retrained
    again = capsys.readouterr().out
    assert again.count(f"(read from {results})") == 4
    assert json.loads(again.strip().splitlines()[-1]) == summary
    assert len(results.read_text().splitlines()) == 4
