"""benchmarks/uqa_ml100k.py: the issue's targets are read correctly off a written report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import uqa_ml100k as bench  # noqa: E402

from userfm.eval.uqa import evaluate as ev  # noqa: E402
from userfm.eval.uqa.report import write_report  # noqa: E402
from userfm.eval.uqa.schema import TASK_DIMENSION  # noqa: E402

N = 60  # questions per sub-task


def results_for(method: str, accuracy: dict[str, float], tokens: int | None = None) -> list:
    """N questions per sub-task, the first accuracy * N right; answers spread over A-D."""
    rows = []
    for task, dim in TASK_DIMENSION.items():
        right = round(accuracy.get(task, 0.25) * N)
        for i in range(N):
            gold = "ABCD"[i % 4]
            pred = gold if i < right else "ABCD"[(i + 1) % 4]
            rows.append({"question_id": f"{task}/{i}", "method": method, "task": task,
                         "dimension": dim, "format": "mc", "prediction": pred, "gold": gold,
                         "correct": pred == gold, "prompt_tokens": tokens, "ms": 1.0})  # fmt: skip
    return rows


def write(tmp_path, soft: dict[str, float], *, stuck: bool = False, text_tokens: int = 300) -> Path:
    results = results_for(ev.ZERO_SHOT_NONE, {}, 50)  # the question alone: 50 tokens
    results += results_for(bench.NO_USER, {}, 50)
    results += results_for(bench.SOFT, soft, 68)
    results += results_for(bench.SOFT + bench.SWAPPED, {}, 68)
    results += results_for(bench.XATTN, soft, 60)
    results += results_for(bench.XATTN + bench.SWAPPED, {}, 60)
    results += results_for("text-256 + LoRA", {"long_term": 0.3}, text_tokens)
    results += results_for(bench.PROBE, {"long_term": 0.6})
    if stuck:  # a scored method that always answers "A"
        results += [dict(r, method="stuck", prediction="A", correct=r["gold"] == "A")
                    for r in results_for("stuck", {})]  # fmt: skip
    write_report(results, tmp_path)
    return tmp_path


def test_a_soft_prompt_that_reads_the_user_meets_the_targets(tmp_path):
    good = {t: 0.7 for t in TASK_DIMENSION}
    verdict = bench.check_targets(write(tmp_path, good), 256)
    assert all(verdict["targets"].values()), verdict["targets"]
    assert verdict["soft_prompt_judged"] == bench.SOFT
    # the user context: 250 text tokens against 18 vectors; whole prompts 300 / 68
    assert verdict["token_ratio"] == 13.9 and verdict["prompt_token_ratio"] == 4.4


def test_the_token_target_counts_the_user_context_only(tmp_path):
    good = {t: 0.7 for t in TASK_DIMENSION}
    verdict = bench.check_targets(write(tmp_path, good, text_tokens=200), 256)
    assert verdict["token_ratio"] == 8.3  # 150 / 18: accurate, but not 10x fewer user tokens
    assert not verdict["targets"]["soft prompt >= text-256 + LoRA on interest_perception with "
                                  ">= 10x fewer user tokens"]  # fmt: skip
    assert sum(verdict["targets"].values()) == len(verdict["targets"]) - 1


def test_check_reads_an_existing_report(tmp_path, capsys):
    good = {t: 0.7 for t in TASK_DIMENSION}
    assert bench.main(["--check", str(write(tmp_path, good))]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["checked"] == str(tmp_path) and all(summary["targets"].values())
    assert "MET: soft prompt above no-user and swapped on interest_perception" in out


def test_the_aligned_soft_prompt_is_trained_only_when_named():
    default = [r[0] for r in bench.select_runs(bench.parse_args([]), (256, 1024))]
    assert bench.ALIGNED not in default and bench.SOFT in default and len(default) == 4
    named = bench.select_runs(bench.parse_args(["--methods", bench.ALIGNED]), (256, 1024))
    assert [r[0] for r in named] == [bench.ALIGNED] and named[0][3]  # starts from alignment


@pytest.mark.parametrize("stuck", [False, True])
def test_a_soft_prompt_at_chance_meets_none(tmp_path, stuck):
    verdict = bench.check_targets(write(tmp_path, {}, stuck=stuck), 256)
    assert not any(v for k, v in verdict["targets"].items() if "position bias" not in k)
    assert verdict["targets"]["no scored method flagged for position bias"] == (not stuck)
    assert verdict["flagged"] == (["stuck"] if stuck else [])


def test_the_encoder_keeps_the_depth_the_published_numbers_were_measured_with(
    monkeypatch, tmp_path
):
    """configs/pretrain/ml100k.yaml went to 3 blocks (issue 20); README's UQA numbers come
    from a 2-block encoder, so the benchmark pins that depth unless told otherwise."""
    calls: list[list[str]] = []
    monkeypatch.setattr(bench, "cli", calls.append)
    assert bench.parse_args([]).encoder_layers == 2
    layers = bench.parse_args(["--encoder-layers", "3"]).encoder_layers
    bench.pretrain(tmp_path, "ml-100k", 1, layers, {})
    fit, export = calls
    assert fit[:2] == ["pretrain", "fit"]
    assert fit[fit.index("--model.encoder.num_layers") + 1] == "3"
    # the export reads the run folder the fit wrote its checkpoints under (it read a
    # "ml100k" subfolder the fit never wrote, so a run without --encoder stopped there)
    assert export[:2] == ["pretrain", "export"]
    assert export[2] == fit[fit.index("--trainer.default_root_dir") + 1]


def test_the_item_text_soft_prompt_is_opt_in_and_reads_item_text(monkeypatch, tmp_path):
    """Issue 33 §4: "soft prompt + item text" trains only when named, with recent_text on;
    ``--item-text`` pretrains the encoder with the items table; ``--split valid`` scores the
    validation questions."""
    default = [r[0] for r in bench.select_runs(bench.parse_args([]), (256, 1024))]
    assert bench.SOFT_TEXT not in default
    calls: list[list[str]] = []
    monkeypatch.setattr(bench, "cli", calls.append)
    bench.pretrain(tmp_path, "ml-100k", 1, 2, {}, item_text=True)
    fit = calls.pop(0)
    assert fit[fit.index("--data.items") + 1] == "auto"
    assert fit[fit.index("--model.encoder.item_id_dropout") + 1] == "0.5"
    calls.clear()
    monkeypatch.setattr(bench, "check_targets", lambda report, budget: {"lines": []})
    data = tmp_path / "ml-100k"
    data.mkdir()
    (data / "u.data").write_text("")
    argv = ["--encoder", str(tmp_path / "enc"), "--data", str(data), "--out", str(tmp_path / "o"),
            "--methods", f"{bench.SOFT},{bench.SOFT_TEXT}", "--split", "valid", "--quick",
            "--seed", "3"]  # fmt: skip
    assert bench.main(argv) == 0
    fits = [c for c in calls if c[:2] == ["adapters", "fit"]]
    assert len(fits) == 2
    plain, texted = fits
    assert "--model.adapter.recent_text" not in plain
    assert texted[texted.index("--model.adapter.recent_text") + 1] == "true"
    assert all(f[f.index("--seed_everything") + 1] == "3" for f in fits)
    (uqa,) = [c for c in calls if c[:2] == ["eval", "uqa"]]
    assert uqa[uqa.index("--split") + 1] == "valid"


def test_compare_pairs_two_methods_by_question_pooled_over_seeds(tmp_path, capsys):
    """--compare: A minus B on the same questions, averaged over the reports (seeds), with a
    bootstrap interval over questions; a method a report lacks is named."""
    reports = []
    for seed, right in enumerate((0.7, 0.5)):  # A right on 70% then 50% of each sub-task
        rows = results_for(bench.SOFT_TEXT, {t: right for t in TASK_DIMENSION})
        rows += results_for(bench.SOFT, {t: 0.5 for t in TASK_DIMENSION})
        folder = tmp_path / f"seed{seed}"
        write_report(rows, folder)
        reports.append(folder)
    argv = ["--compare", bench.SOFT_TEXT, bench.SOFT, "--reports", *map(str, reports)]
    assert bench.main(argv) == 0
    paired = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["paired"]
    overall = paired["overall"]
    assert overall["n"] == N * len(TASK_DIMENSION)
    assert overall["a"] == pytest.approx(0.6, abs=0.01) and overall["b"] == pytest.approx(
        0.5, abs=0.01
    )
    assert overall["diff"] == pytest.approx(0.1, abs=0.01)
    assert overall["lo"] < overall["diff"] < overall["hi"]
    assert set(paired) == {"overall", *TASK_DIMENSION.values()}
    with pytest.raises(SystemExit, match="no method"):
        bench.main(["--compare", "nobody", bench.SOFT, "--reports", str(reports[0])])
