"""benchmarks/catalogue_scale.py: one configuration's step runs and reports itself; the
table's ratios are against the smallest catalogue of the same loss; a skipped full softmax is
named in the table and left out of the headline ratios."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import catalogue_scale as cs  # noqa: E402


def test_a_chunked_step_trains_and_reports_events_and_memory(capsys):
    args = cs.parse_args(["--child", "600", "chunked", "--batch", "4", "--max-len", "6",
                          "--chunk", "128", "--steps", "1", "--warmup", "0"])  # fmt: skip
    cs.child(args)  # 600 items in blocks of 128: the chunked path itself
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["items"] == 600 and row["loss"] == "chunked"
    assert row["events_per_s"] > 0 and row["peak_rss_mib"] > 0 and row["final_loss"] > 0


def test_a_sparse_step_moves_only_the_rows_it_read(capsys, monkeypatch):
    from userfm.pretrain.lazy_adamw import LazyAdamW

    moved: list[int] = []
    row_step = LazyAdamW._row_step

    def spy(self, p, group):
        moved.append(p.grad.coalesce().indices().shape[1])
        row_step(self, p, group)

    monkeypatch.setattr(LazyAdamW, "_row_step", spy)
    args = cs.parse_args(["--child", "5000", "sparse", "--batch", "4", "--max-len", "6",
                          "--negatives", "16", "--steps", "1", "--warmup", "0"])  # fmt: skip
    cs.child(args)
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["loss"] == "sparse" and row["final_loss"] > 0
    assert moved and max(moved) <= 4 * 7 + 16  # the batch's items and negatives, of 5,003


def test_the_table_and_summary_compare_each_loss_with_its_smallest_catalogue():
    args = cs.parse_args(["--items", "1000", "10000", "100000", "--losses", "full", "sampled"])
    rows = [
        {"items": 1000, "loss": "full", "events_per_s": 100.0, "peak_rss_mib": 400.0},
        {"items": 1000, "loss": "sampled", "events_per_s": 80.0, "peak_rss_mib": 400.0},
        {"items": 10000, "loss": "full", "events_per_s": 50.0, "peak_rss_mib": 800.0},
        {"items": 10000, "loss": "sampled", "events_per_s": 80.0, "peak_rss_mib": 410.0},
        {"items": 100000, "loss": "full", "skipped": "logits need 9 GiB"},
        {"items": 100000, "loss": "sampled", "events_per_s": 40.0, "peak_rss_mib": 500.0},
    ]
    lines = cs.table(rows, args.losses)
    assert "| 10,000 | full | 50 | 0.50 | 800 | 2.00 |" in lines
    assert any("logits need 9 GiB" in line for line in lines)
    out = cs.summary(rows, args)
    assert out["events_per_s_sampled_100000_vs_10000"] == 0.5
    assert "events_per_s_full_100000_vs_10000" not in out  # skipped: no ratio


def test_the_length_table_compares_with_the_shortest_history():
    rows = [
        {"items": 10000, "loss": "sparse", "max_len": 50, "batch": 128, "events_per_s": 400.0, "peak_rss_mib": 800.0},
        {"items": 10000, "loss": "sparse", "max_len": 200, "batch": 32, "events_per_s": 200.0, "peak_rss_mib": 1200.0},
        {"items": 10000, "loss": "sparse", "max_len": 1000, "skipped": "failed (exit 137)"},
    ]  # fmt: skip
    lines = cs.length_table(rows)
    assert "| 200 | 32 | 200 | 0.50 | 1,200 | 1.50 |" in lines
    assert any("exit 137" in line for line in lines)


def test_a_step_runs_under_a_forced_sdpa_kernel_and_bf16(capsys, monkeypatch):
    forced: list[object] = []
    real = cs.sdpa_context

    def spy(kernel):
        make = real(kernel)

        def context():
            forced.append(kernel)
            return make()

        return context

    monkeypatch.setattr(cs, "sdpa_context", spy)
    args = cs.parse_args(["--child", "600", "sampled", "--batch", "4", "--max-len", "6",
                          "--negatives", "16", "--steps", "1", "--warmup", "0",
                          "--sdpa-kernel", "math", "--precision", "bf16"])  # fmt: skip
    cs.child(args)
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["sdpa_kernel"] == "math" and row["precision"] == "bf16" and row["device"] == "cpu"
    assert forced == ["math"] and row["final_loss"] > 0
    assert "peak_gpu_mib" not in row  # a CPU run reports its RSS only
    assert isinstance(real("default")(), contextlib.nullcontext)  # default: PyTorch chooses


def test_gpu_rows_report_the_cards_memory_and_each_kernel_is_its_own_group():
    rows = [
        {"max_len": 50, "batch": 1024, "sdpa_kernel": "flash", "events_per_s": 4e6,
         "peak_rss_mib": 900.0, "peak_gpu_mib": 1000.0},
        {"max_len": 1000, "batch": 51, "sdpa_kernel": "flash", "events_per_s": 2e6,
         "peak_rss_mib": 900.0, "peak_gpu_mib": 1500.0},
        {"max_len": 50, "batch": 1024, "sdpa_kernel": "math", "events_per_s": 3e6,
         "peak_rss_mib": 900.0, "peak_gpu_mib": 1200.0},
        {"max_len": 1000, "batch": 51, "sdpa_kernel": "math", "events_per_s": 1e6,
         "peak_rss_mib": 900.0, "peak_gpu_mib": 6000.0},
    ]  # fmt: skip
    lines = cs.length_table(rows)
    assert "peak GPU MiB" in lines[0] and "SDPA kernel" in lines[0]
    assert "| flash | 1,000 | 51 | 2,000,000 | 0.50 | 1,500 | 1.50 |" in lines
    assert "| math | 1,000 | 51 | 1,000,000 | 0.33 | 6,000 | 5.00 |" in lines
    assert cs.length_summary(rows) == {
        "events_per_s_len1000_vs_len50_flash": 0.5,
        "events_per_s_len1000_vs_len50_math": 0.333,
    }


def test_quality_sets_each_model_beside_itself_given_another_users_input(capsys):
    """The guide's degenerate controls beside the quality numbers: most popular, and each
    trained model reading another user's history; the summary gives no ratio for them."""
    args = cs.parse_args(["--losses", "full", "--quality", "--quality-users", "60",
                          "--quality-items", "40", "--quality-epochs", "1", "--seeds", "2",
                          "--batch", "16", "--max-len", "8"])  # fmt: skip
    scores = cs.quality(args)
    assert set(scores) == {"full", "another_user_full", "most_popular"}
    assert len(scores["full"]) == len(scores["another_user_full"]) == 2
    assert all(0 <= x <= 1 for values in scores.values() for x in values)
    out = cs.summary([], args, scores)
    assert "ndcg10_another_user_full" in out and "ndcg10_another_user_full_vs_full" not in out
    assert out["ndcg10_most_popular_vs_full"] > 0


def in_process(cmd: list[str], *, cwd=None) -> dict:
    """`run_child` without the subprocess: the child's flags through `main`, its JSON line."""
    assert cmd[1] == cs.__file__ and cmd[2] == "--child"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cs.main(cmd[2:]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_small_run_reports_every_section(tmp_path, monkeypatch, capsys):
    """Smoke test (issue 35 §4): `main` end to end on tiny shapes, every section (catalogue
    sizes with a skipped full softmax, history lengths under two SDPA kernels, the chart,
    quality), each configuration's child run in-process through `main`."""
    calls = []
    monkeypatch.setattr(cs, "run_child", lambda cmd, cwd: calls.append(cmd) or in_process(cmd))
    chart = tmp_path / "chart.png"
    argv = ["--items", "10000", "20000", "--batch", "4", "--max-len", "6", "--chunk", "4096",
            "--negatives", "16", "--steps", "1", "--warmup", "1",
            "--max-logits-gib", "0.0013",  # (24, 10,003) float32 logits pass, (24, 20,003) not
            "--lengths", "6", "12", "--length-items", "600", "--sdpa-kernels", "default", "math",
            "--out", str(chart), "--quality", "--quality-users", "60", "--quality-items", "40",
            "--quality-epochs", "1", "--seeds", "1"]  # fmt: skip
    assert cs.main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert "20,000 full     skipped: its (N, V) logits need 0 GiB" in out
    assert len(calls) == 7 + 4  # 2 x 4 losses but full at 20,000; 2 lengths x 2 kernels
    assert chart.read_bytes().startswith(b"\x89PNG")
    losses = list(cs.LOSSES)
    measured = {f"{loss}_{n}" for loss in losses for n in (10000, 20000)} - {"full_20000"}
    assert set(summary["configs"]) == measured
    for config in summary["configs"].values():
        assert config["events_per_s"] > 0 and config["peak_rss_mib"] > 0
    ratios = [f"events_per_s_{loss}_20000_vs_10000" for loss in losses[1:]]  # full skipped
    lengths = ["events_per_s_len12_vs_len6", "events_per_s_len12_vs_len6_math"]
    quality = [f"ndcg10_{name}" for name in [*losses, "most_popular"]]
    quality += [f"ndcg10_another_user_{loss}" for loss in losses]
    vs_full = [f"ndcg10_{name}_vs_full" for name in [*losses, "most_popular"]]
    assert set(summary) == {"benchmark", "quick", "configs", *ratios, *lengths, *quality,
                            *vs_full}  # fmt: skip
    assert summary["benchmark"] == "catalogue_scale" and summary["quick"] is False
    for key in ratios + lengths + vs_full:
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert all(0 <= summary[key] <= 1 for key in quality)
    assert summary["ndcg10_full_vs_full"] == 1.0


def test_a_configuration_runs_in_a_process_of_its_own():
    """The script runs each configuration in a fresh process (its own peak RSS): one real one."""
    args = cs.parse_args(["--batch", "4", "--max-len", "6", "--negatives", "16", "--steps", "1",
                          "--warmup", "0"])  # fmt: skip
    row = cs.run_one(args, 600, "sparse", args.batch, args.max_len)
    assert "skipped" not in row, row
    assert (row["items"], row["loss"], row["device"]) == (600, "sparse", "cpu")
    assert row["events_per_s"] > 0 and row["peak_rss_mib"] > 0 and row["final_loss"] > 0
