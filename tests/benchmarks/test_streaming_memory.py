"""benchmarks/streaming_memory.py: one (log, mode) trains and reports its memory; the table
and summary compare each mode with its smallest log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import streaming_memory as sm  # noqa: E402


@pytest.mark.parametrize("mode", sm.MODES)
def test_one_configuration_trains_and_reports(tmp_path, capsys, mode):
    from userfm.data.synthetic import SyntheticConfig, write_synthetic_log

    path = write_synthetic_log(tmp_path / "e.parquet", SyntheticConfig(num_users=60, num_items=50))
    sm.child(sm.parse_args(["--child", str(path), mode, "--steps", "2", "--max-len", "8"]))
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["mode"] == mode and row["users"] == 60 and row["events"] > 60
    assert row["peak_rss_mib"] > 0 and (row["steps_per_s"] > 0) == (mode != "read")


def test_the_table_and_summary_compare_each_mode_with_its_smallest_log():
    rows = [
        {"users": 10, "events": 500, "mode": "memory", "peak_rss_mib": 500.0, "setup_s": 1.0, "steps_per_s": 5.0},
        {"users": 10, "events": 500, "mode": "streaming", "peak_rss_mib": 400.0, "setup_s": 1.0, "steps_per_s": 4.0},
        {"users": 100, "events": 5000, "mode": "memory", "peak_rss_mib": 1000.0, "setup_s": 9.0, "steps_per_s": 5.0},
        {"users": 100, "mode": "streaming", "failed": "killed"},
    ]  # fmt: skip
    lines = sm.table(rows)
    assert "| 100 | 5,000 | memory | 1,000 | 2.00 | 9 | 5.0 |" in lines
    assert "| 100 | | streaming | failed | | | |" in lines
    out = sm.summary(rows, quick=True)
    assert out["peak_rss_growth_memory"] == 2.0 and "peak_rss_growth_streaming" not in out
