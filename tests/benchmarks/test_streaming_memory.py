"""benchmarks/streaming_memory.py (issue 34 §5): every stage runs on a tiny log (in this
process: the same functions a child process runs) and reports one row; the table and the
summary compare each stage with its smallest log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import streaming_memory as sm  # noqa: E402

pytest.importorskip("duckdb")


def test_every_stage_runs_on_a_tiny_log(tmp_path, capsys):
    log = sm.write_log(tmp_path / "log", 3000, events_per_user=50, items=40)
    assert len(list(log.glob("*.parquet"))) == 1
    rows = {}
    for stage in sm.STAGES:  # prepare first: the others read its shards
        argv = ["--child", stage, str(log), str(tmp_path), "--steps", "2", "--batch-size", "4",
                "--max-len", "8"]  # fmt: skip
        sm.child(sm.parse_args(argv))
        rows[stage] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows["prepare"]["events"] == rows["prepare_pyarrow"]["events"] > 2500
    assert rows["prepare"]["users"] == rows["prepare_pyarrow"]["users"] == 60
    assert rows["validate"]["users"] == rows["embed"]["users"] == 60
    for stage, row in rows.items():
        assert row["stage"] == stage and row["rate"] > 0 and row["peak_rss_mib"] > 0


def test_the_table_and_summary_compare_each_stage_with_its_smallest_log():
    args = sm.parse_args(["--quick"])
    rows = [
        {"size": 10**6, "stage": "memory", "peak_rss_mib": 900.0, "seconds": 10.0, "rate": 100.0, "unit": "input events/s"},
        {"size": 10**6, "stage": "train", "peak_rss_mib": 800.0, "seconds": 10.0, "rate": 95.0, "unit": "input events/s"},
        {"size": 10**8, "stage": "train", "peak_rss_mib": 880.0, "seconds": 10.0, "rate": 90.0, "unit": "input events/s"},
        {"size": 10**8, "stage": "embed", "failed": "exit 137: killed"},
    ]  # fmt: skip
    lines = sm.table(rows)
    assert "| 100,000,000 | train | 880 | 1.10 | 10 | 90 input events/s |" in lines
    assert "| 100,000,000 | embed | failed | | | |" in lines
    out = sm.summary(rows, args)
    assert out["peak_growth_train"] == 1.1 and out["train_streamed_vs_memory"] == 0.95
    assert out["failed"] == ["embed_100000000"]
