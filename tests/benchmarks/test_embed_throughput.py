"""benchmarks/embed_throughput.py: the synthetic stream, one measurement in a process of its
own (as the script runs each), and a small run that reports throughput, speed-ups and memory."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import embed_throughput as et  # noqa: E402


def test_the_stream_yields_the_users_asked_with_capped_time_ordered_histories():
    for lengths in ("uniform", "lognormal"):
        users = list(et.stream_users(10, lengths, chunk=4))  # across chunks
        assert len(users) == 10 and len({u.user for u in users}) == 10
        for u in users:
            assert 1 <= len(u) <= et.MAX_LEN and np.all(np.diff(u.timestamps) >= 0)


def test_a_measurement_runs_in_a_process_of_its_own():
    run = et.run_worker("naive", 3, "lognormal", "cpu", 4, "sdpa")
    assert (run["mode"], run["users"], run["lengths"]) == ("naive", 3, "lognormal")
    assert run["users_per_s"] > 0 and run["peak_rss_mb"] > 0


def in_process(*args) -> dict:
    """`run_worker` without the subprocess: the same flags through `main`, its JSON line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert et.main(et.worker_argv(*args)) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_small_run_reports_throughput_speedups_and_memory(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(et, "run_worker", lambda *a: calls.append(a[:3]) or in_process(*a))
    assert et.main(["--users", "12", "--naive-users", "3", "--batch-size", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benchmark"] == "embed_throughput" and summary["device"] == "cpu"
    assert summary["users"] == 12 and summary["users_memory_run"] == 120
    assert calls == [("batched", 12, "uniform"), ("naive", 3, "uniform"), ("onnx", 12, "uniform"),
                     ("batched", 12, "lognormal"), ("naive", 3, "lognormal"),
                     ("onnx", 12, "lognormal"), ("batched", 120, "uniform")]  # fmt: skip
    keys = ["rss_ratio", "peak_rss_mb", "peak_rss_mb_memory_run"]
    for k in ("uniform", "lognormal"):
        keys += [f"batched_users_per_s_{k}", f"naive_users_per_s_{k}", f"speedup_{k}",
                 f"onnx_users_per_s_{k}", f"onnx_vs_torch_{k}"]  # fmt: skip
    for key in keys:
        assert math.isfinite(summary[key]) and summary[key] > 0, key
