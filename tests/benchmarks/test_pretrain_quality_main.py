"""benchmarks/pretrain_quality.py's smoke test (issue 35 §4): `main` end to end on a tiny log
in MovieLens-100K's format, every row of ``--quick`` (ours + text through a tiny text model),
its JSON line, its ``--out`` file, and that file read back by ``--reuse``. (Its parts are
tested in test_pretrain_quality.py.)"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import pretrain_quality as pq  # noqa: E402

#: the rows a --quick run trains (next_item: the SASRec-CE run under its own name)
QUICK_ROWS = {"sasrec_reference", "sasrec_bce", "sasrec_ce", "next_item", "ours",
              "ours_selected", "ours_dro", "ours_text"}  # fmt: skip
#: the JSON line's fields of each section
SECTIONS = {
    "baselines": {"ndcg10_most_popular", "ndcg10_sasrec_bce", "ndcg10_sasrec_reference",
                  "ndcg10_sasrec_ce", "ndcg10_ours", "bce_baseline", "seeds", "ndcg10_per_seed",
                  "sampled_ndcg10_sasrec_bce", "sampled_ndcg10_ours", "ndcg_vs_most_popular",
                  "ndcg_vs_sasrec_bce", "ndcg_vs_sasrec_ce", "ndcg_vs_sasrec_bce_se",
                  "ndcg_vs_sasrec_ce_se"},
    "selection": {"ndcg10_ours_selected", "ndcg10_ours_selected_per_seed", "ours_selected_epochs",
                  "ndcg_vs_sasrec_reference_same_selection", "ndcg10_ours_another_user"},
    "dro": {"macro_recall10_dro", "macro_recall10_no_dro", "dro_macro_recall_ratio",
            "dro_ndcg_rel_change"},
    "text": {"ndcg10_ours_text_per_seed", "ndcg_text_vs_ours", "ndcg_text_vs_ours_per_seed"},
    "throughput": {"throughput_events_per_s_reference", "throughput_events_per_s_sasrec_bce",
                   "throughput_events_per_s_sasrec_bce_grouped", "throughput_events_per_s_ours",
                   "throughput_ratio", "throughput_ratio_random_batches", "throughput_ratio_cpu",
                   "throughput_ratio_ours"},
    "settings": {"benchmark", "skipped", "epochs", "hidden", "heads", "targets_met", "seconds",
                 "reused", "not_run", "quick", "machine"},
}  # fmt: skip


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_quick_run_trains_every_row_and_reports_every_section(
    fake_ml100k_dir, tiny_text_model, tmp_path, capsys
):
    out = tmp_path / "rows.json"
    argv = ["--data", str(fake_ml100k_dir), "--quick", "--epochs", "2", "--reference-epochs", "2",
            "--seeds", "2", "--throughput-repeats", "1", "--throughput-epochs", "1",
            "--text-model", str(tiny_text_model)]  # fmt: skip
    assert pq.main([*argv, "--out", str(out)]) == 0
    summary = last_json(capsys)
    assert set(summary) == set().union(*SECTIONS.values())
    assert summary["benchmark"] == "pretrain_quality" and summary["skipped"] is False
    assert (summary["quick"], summary["epochs"], summary["seeds"]) == (True, 2, [0, 1])
    assert summary["not_run"] == [] and summary["reused"] == []
    assert set(summary["targets_met"]) == {"ndcg_vs_sasrec_bce", "ndcg_vs_sasrec_ce",
                                           "ndcg_vs_sasrec_reference_same_selection",
                                           "text_nothing_lost", "throughput_vs_sasrec"}  # fmt: skip
    numbers = {k: v for k, v in summary.items() if isinstance(v, float)}
    assert all(math.isfinite(v) for v in numbers.values()), numbers  # 2 seeds: finite sds
    ndcg = [v for k, v in numbers.items() if k.startswith(("ndcg10_", "macro_recall10_"))]
    assert ndcg and all(0 <= v <= 1 for v in ndcg)
    assert all(numbers[k] > 0 for k in SECTIONS["throughput"])
    assert all(len(v) == 2 for v in summary["ndcg10_per_seed"].values())
    # ours + text against ours on their shared seeds (both trained on 0 and 1)
    assert len(summary["ndcg_text_vs_ours_per_seed"]) == 2 and summary["ndcg_text_vs_ours"] > 0
    assert len(summary["ours_selected_epochs"]) == 2

    rows = json.loads(out.read_text())  # --out: every trained row with its configuration
    assert set(rows) == QUICK_ROWS | {"most_popular", "throughput"}
    for name in QUICK_ROWS - {"next_item"}:
        row = rows[name]
        assert row["config"]["seeds"] == ([0] if name == "ours_dro" else [0, 1]), name
        assert len(row["seed_reports"]) == len(row["config"]["seeds"]), name
        assert 0 <= row["report"]["metrics"]["NDCG@10"] <= 1, name
    assert rows["next_item"]["seed_reports"] == rows["sasrec_ce"]["seed_reports"]  # its alias
    assert rows["ours_text"]["config"]["data"]["text_model"] == str(tiny_text_model)
    assert rows["ours_text"]["config"]["data"]["items"] == "auto"
    assert set(rows["throughput"]["paired"]) == {"reference", "sasrec_bce",
                                                 "sasrec_bce_grouped", "ours"}  # fmt: skip

    assert pq.main([*argv, "--reuse", str(out)]) == 0  # the file read back: nothing retrained
    again = last_json(capsys)
    assert again["reused"] == sorted(QUICK_ROWS - {"next_item"} | {"throughput"})
    changed = {"seconds", "reused"}
    assert {k: v for k, v in again.items() if k not in changed} == {
        k: v for k, v in summary.items() if k not in changed
    }
