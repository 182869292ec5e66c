"""benchmarks/streaming_memory.py: one (log, mode) trains and reports its memory; the table
and summary compare each mode with its smallest log."""

from __future__ import annotations

import contextlib
import io
import json
import math
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


def in_process(cmd: list[str]) -> dict:
    """`run_child` without the subprocess: the child's flags through `main`, its JSON line."""
    assert cmd[1] == sm.__file__ and cmd[2] == "--child"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sm.main(cmd[2:]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_small_run_reports_every_configuration_and_the_growth(monkeypatch, capsys):
    """Smoke test (issue 35 §4): `main` end to end on two small synthetic logs (60 and 120
    users, 2 steps), each (log, mode) child run in-process through `main`."""
    calls = []
    monkeypatch.setattr(sm, "run_child", lambda cmd: calls.append(cmd[3:5]) or in_process(cmd))
    assert sm.main(["--users", "60", "120", "--steps", "2", "--max-len", "8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(Path(log).name, mode) for log, mode in calls] == [
        (f"events-{n}.parquet", mode) for n in (60, 120) for mode in sm.MODES
    ]
    growth = [f"peak_rss_growth_{mode}" for mode in sm.MODES]
    assert set(summary) == {"benchmark", "quick", "configs", *growth}
    assert summary["benchmark"] == "streaming_memory" and summary["quick"] is False
    assert set(summary["configs"]) == {f"{m}_{n}" for n in (60, 120) for m in sm.MODES}
    for name, config in summary["configs"].items():
        assert set(config) == {"events", "peak_rss_mib", "setup_s", "steps_per_s"}
        assert config["peak_rss_mib"] > 0 and config["setup_s"] >= 0
        assert (config["steps_per_s"] > 0) == (not name.startswith("read")), name
    assert summary["configs"]["memory_120"]["events"] > summary["configs"]["memory_60"]["events"]
    for key in growth:  # in-process, each reading is this process's peak so far: >= 1
        assert math.isfinite(summary[key]) and summary[key] >= 1, key


def test_a_configuration_runs_in_a_process_of_its_own(tmp_path):
    """The script runs each (log, mode) in a fresh process (its own peak RSS): one real one."""
    args = sm.parse_args(["--users", "60", "--modes", "read", "--steps", "1"])
    (row,) = sm.run(args, sm.write_logs(args.users, tmp_path))
    assert "failed" not in row, row
    assert (row["mode"], row["users"]) == ("read", 60) and row["events"] > 60
    assert row["peak_rss_mib"] > 0 and row["steps_per_s"] == 0
