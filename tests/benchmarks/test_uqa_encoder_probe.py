"""benchmarks/uqa_encoder_probe.py: on the run folder `benchmarks/uqa_ml100k.py` leaves (an
encoder, the question set), it reports the probe's and the next-item scores' accuracy per
sub-task; without one it says it skipped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import uqa_encoder_probe as probe  # noqa: E402

from userfm.eval.uqa import encoder_answers as enc  # noqa: E402


@pytest.fixture
def tiny_run(tmp_path, fake_ml100k_dir) -> Path:
    """What uqa_ml100k.py writes for this script, on a tiny log: ``encoder/`` (untrained
    here) and ``qa/`` (from the same `userfm eval questions` line)."""
    from userfm.cli import main as cli
    from userfm.data.sources import load_source
    from userfm.encoder import UserEncoder

    run = tmp_path / "run"
    log = load_source(str(fake_ml100k_dir), format="movielens-100k")
    encoder = UserEncoder.from_log(log, hidden_size=16, num_layers=1, num_heads=2, max_len=32)
    encoder.save_pretrained(run / "encoder")
    ml = ["--log", str(fake_ml100k_dir), "--log_format", "movielens-100k"]
    nouns = ["--item_noun", "movie", "--attribute_noun", "genre"]
    assert cli(["eval", "questions", *ml, *nouns, "--out", str(run / "qa")]) == 0
    return run


def test_a_run_reports_accuracy_per_method_and_sub_task(tiny_run, fake_ml100k_dir, capsys):
    from userfm.eval.uqa import load_questions

    argv = ["--run", str(tiny_run), "--data", str(fake_ml100k_dir), "--quick"]
    assert probe.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benchmark"] == "uqa_encoder_probe" and summary["steps"] == 100
    accuracy = summary["accuracy"]
    assert set(accuracy) == {enc.PROBE, enc.NEXT_ITEM}
    tested = set(load_questions(tiny_run / "qa")["test"]["task"])
    assert set(accuracy[enc.PROBE]) == tested  # the probe answers every sub-task
    assert accuracy[enc.NEXT_ITEM] and set(accuracy[enc.NEXT_ITEM]) <= tested
    assert all(0 <= a <= 1 for scores in accuracy.values() for a in scores.values())


def test_without_a_run_it_says_it_skipped(tmp_path, fake_ml100k_dir, capsys):
    argv = ["--run", str(tmp_path / "no-run"), "--data", str(fake_ml100k_dir)]
    assert probe.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benchmark"] == "uqa_encoder_probe" and "no-run" in summary["skipped"]
