"""benchmarks/recommend_scale.py: one (items, mode) recommends and reports its memory; blocks
and one block recommend the same items; the table measures each mode above the model's own
memory and compares blocks with one block."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import recommend_scale as rs  # noqa: E402


def child_row(capsys, items: int, mode: str) -> dict:
    argv = ["--child", str(items), mode, "--users", "12", "--history", "5", "--batch-size", "4"]
    rs.child(rs.parse_args(argv))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_blocks_and_one_block_recommend_the_same_items(capsys, monkeypatch):
    import userfm.api.recommend as api

    monkeypatch.setattr(api, "ITEM_BLOCK", 7)  # 300 items: 43 blocks
    blocks, one = child_row(capsys, 300, "blocks"), child_row(capsys, 300, "one block")
    assert blocks["first_user"] == one["first_user"] and len(blocks["first_user"]) == 10
    assert blocks["users_per_s"] > 0 and blocks["peak_rss_mib"] > 0
    floor = child_row(capsys, 300, "model")
    assert floor["users_per_s"] is None and floor["first_user"] == []


def test_the_table_and_summary_measure_scoring_above_the_model():
    args = rs.parse_args(["--items", "1000", "1000000"])
    rows = [
        {"items": 1000, "mode": "model", "peak_rss_mib": 400.0, "users_per_s": None},
        {"items": 1000, "mode": "blocks", "peak_rss_mib": 410.0, "users_per_s": 90.0, "first_user": [1]},
        {"items": 1000, "mode": "one block", "peak_rss_mib": 410.0, "users_per_s": 100.0, "first_user": [1]},
        {"items": 1000000, "mode": "model", "peak_rss_mib": 900.0, "users_per_s": None},
        {"items": 1000000, "mode": "blocks", "peak_rss_mib": 1200.0, "users_per_s": 9.0, "first_user": [2]},
        {"items": 1000000, "mode": "one block", "peak_rss_mib": 4900.0, "users_per_s": 10.0, "first_user": [2]},
    ]  # fmt: skip
    lines = rs.table(rows)
    assert "| 1,000,000 | blocks | 1,200 | 300 | 0.07 | 9 |" in lines
    assert "| 1,000,000 | one block | 4,900 | 4,000 | 1.00 | 10 |" in lines
    out = rs.summary(rows, args)
    assert out["scoring_mib_blocks_vs_one_block_1000000"] == 0.075
    assert out["same_top_k"] is True
    rows[4] = {"items": 1000000, "mode": "blocks", "failed": "exit 137"}
    assert "| 1,000,000 | blocks | failed | | | |" in rs.table(rows)
    assert "scoring_mib_blocks_vs_one_block_1000000" not in rs.summary(rows, args)


@pytest.mark.parametrize("flag", ["--users", "--history", "--batch-size"])
def test_a_size_below_one_is_refused(flag, capsys):
    with pytest.raises(SystemExit):
        rs.parse_args([flag, "0"])
    assert f"{flag} must be >= 1" in capsys.readouterr().err


def test_a_small_run_reports_every_configuration_and_the_scoring_ratio(monkeypatch, capsys):
    """Smoke test (issue 35 §4): `main` end to end on a 300-item catalogue, its children run
    in-process (their flags through `main`)."""
    calls: list[list[str]] = []
    # an in-process child's VmHWM is the test process's: a fixed reading per mode instead
    fake_peak = {"model": 400.0, "blocks": 410.0, "one block": 440.0}

    def in_process(cmd: list[str], *, cwd=None) -> dict:
        assert cmd[1] == rs.__file__ and cmd[2] == "--child"
        calls.append(cmd)
        monkeypatch.setattr(rs, "peak_rss_mib", lambda: fake_peak[cmd[4]])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert rs.main(cmd[2:]) == 0
        return json.loads(out.getvalue().strip().splitlines()[-1])

    monkeypatch.setattr(rs, "run_child", in_process)
    argv = ["--items", "300", "--users", "12", "--history", "5", "--batch-size", "4"]
    assert rs.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [c[3:5] for c in calls] == [["300", m] for m in rs.MODES]
    assert set(summary) == {"benchmark", "quick", "users", "configs", "same_top_k",
                            "scoring_mib_blocks_vs_one_block_300"}  # fmt: skip
    assert summary["benchmark"] == "recommend_scale" and summary["users"] == 12
    assert set(summary["configs"]) == {"model_300", "blocks_300", "one_block_300"}
    assert summary["configs"]["model_300"] == {"peak_rss_mib": 400, "users_per_s": None}
    for name in ("blocks_300", "one_block_300"):
        assert summary["configs"][name]["users_per_s"] > 0
    assert summary["same_top_k"] is True
    assert summary["scoring_mib_blocks_vs_one_block_300"] == 0.25  # (410 - 400) / (440 - 400)


def test_a_configuration_runs_in_a_process_of_its_own(capsys):
    """The script runs each (items, mode) in a fresh process (its own peak RSS): one real one
    recommends what the same child in this process does."""
    flags = ["--users", "12", "--history", "5", "--batch-size", "4"]
    real = rs.run_child([sys.executable, rs.__file__, "--child", "300", "one block", *flags],
                        cwd=rs.ROOT)  # fmt: skip
    assert "failed" not in real, real
    assert real["first_user"] == child_row(capsys, 300, "one block")["first_user"]
    assert len(real["first_user"]) == 10 and real["users_per_s"] > 0
    assert math.isfinite(real["peak_rss_mib"]) and real["peak_rss_mib"] > 0
