"""benchmarks/child_run.py: a child process reports its own peak, not its parent's (the
ru_maxrss a child inherits through fork on Linux); a failed child is a row that says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_a_child_reports_its_own_peak_not_its_parents():
    ballast = bytearray(400 * 2**20)  # the parent's peak passes 400 MiB
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import child_run; print(child_run.peak_rss_mib())"
    child = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert 0 < child < 200, child
    del ballast


def test_a_child_gives_its_last_json_line_or_a_failure_row():
    sys.path.insert(0, str(BENCHMARKS))
    import child_run

    ok = child_run.run_child([sys.executable, "-c", "print('noise'); print('{\"a\": 1}')"])
    assert ok == {"a": 1}
    bad = child_run.run_child([sys.executable, "-c", "import sys; sys.exit('boom')"])
    assert bad["failed"].startswith("exit 1:") and "boom" in bad["failed"]
