"""Answering UQA questions with a model and the non-learned baselines, and the written report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError, DataError
from userfm.eval.uqa import build_questions
from userfm.eval.uqa import evaluate as ev
from userfm.eval.uqa.report import write_report


@pytest.fixture(scope="module")
def log():
    return read_events(
        generate_synthetic_log(SyntheticConfig(num_users=80, num_items=40, seed=2)),
        EventSchema(action="action", category="category", title="title"),
    )


@pytest.fixture(scope="module")
def questions(log):
    return build_questions(log, seed=0, format="both")


class Oracle:
    """Answers from the gold record (looked up by user and prompt), and records its calls."""

    def __init__(self, records, wrong_tasks=()):
        self.gold = {(r["user_id"], r["prompt"]): r for r in records}
        assert len(self.gold) == len(records)
        self.wrong_tasks = set(wrong_tasks)
        self.calls = []

    def _answer(self, history, prompt, letter):
        r = self.gold[history.user, prompt]
        right = r["answer_letter"] if letter else r["answer"]
        return "zzz" if r["task"] in self.wrong_tasks else right

    def choose(self, histories, prompts, options):
        self.calls.append(("choose", len(prompts), tuple(options)))
        return [self._answer(h, p, True) for h, p in zip(histories, prompts, strict=True)]

    def generate(self, histories, prompts, *, max_new_tokens):
        self.calls.append(("generate", len(prompts), max_new_tokens))
        return [self._answer(h, p, False) for h, p in zip(histories, prompts, strict=True)]

    def prompt_lengths(self, histories, prompts):
        return [len(h) for h in histories]


def test_answers_are_scored_per_question_in_record_order(log, questions):
    records = list(questions["test"])
    model = Oracle(records, wrong_tasks={"long_term"})
    results = ev.answer_questions("oracle", model, records, log, batch_size=5, progress=False)
    assert [r["question_id"] for r in results] == [r["question_id"] for r in records]
    for res, rec in zip(results, records, strict=True):
        assert res["correct"] == (rec["task"] != "long_term")
        assert res["format"] == rec["format"] and res["method"] == "oracle"
        assert res["prompt_tokens"] == rec["context_end"]  # the visible history only
        assert res["ms"] >= 0
    kinds = {c[0] for c in model.calls}
    assert kinds == {"choose", "generate"}
    assert all(n <= 5 for _, n, _ in model.calls)
    assert ("choose", 5, ("A", "B", "C", "D")) in model.calls


def test_bad_records_and_arguments_are_named(log, questions):
    record = dict(questions["test"][0])
    with pytest.raises(DataError, match="not in the event log"):
        ev.answer_questions("m", Oracle([record]), [dict(record, user_id="nobody")], log)
    with pytest.raises(DataError, match="format 'essay'"):
        ev.answer_questions("m", Oracle([record]), [dict(record, format="essay")], log)
    with pytest.raises(ConfigError, match="batch_size"):
        ev.answer_questions("m", Oracle([record]), [record], log, batch_size=0)


def test_random_prior_and_direct_baselines(log, questions):
    train, test = list(questions["train"]), list(questions["test"])
    rand = ev.random_answers(test, seed=1)
    mc = [r for r in test if r["format"] == "mc"]
    assert len(rand) == len(mc) and {r["prediction"] for r in rand} <= set("ABCD")
    assert rand == ev.random_answers(test, seed=1)

    # the prior picks, per sub-task, the option that is most often a training answer
    fake_train = [
        {"question_id": f"q{i}", "task": "short_term", "answer": a}
        for i, a in enumerate(["Drama", "Drama", "Comedy"])
    ]
    q = {
        "question_id": "t",
        "user_id": test[0]["user_id"],
        "task": "short_term",
        "dimension": "interest_perception",
        "format": "mc",
        "prompt": "p",
        "options": ["Comedy", "Drama", "Horror"],
        "answer": "Drama",
        "answer_letter": "B",
    }
    free = dict(q, format="free", options=[], answer_letter=None, answer="Comedy")
    picked = ev.prior_answers([q, free], fake_train)
    assert [r["prediction"] for r in picked] == ["B", "drama"]
    assert [r["correct"] for r in picked] == [True, False]
    assert len(ev.prior_answers(test, train)) == len(test)

    direct = pd.DataFrame(ev.direct_answers(test, log))
    exact = direct[direct["dimension"] != "action_prediction"]
    assert exact["correct"].all()  # computable from the history: always right


def test_sample_per_task_is_seeded_and_keeps_order(questions):
    records = list(questions["test"])
    sample = ev.sample_per_task(records, 2, seed=0)
    counts = pd.Series([r["task"] for r in sample]).value_counts()
    assert counts.max() <= 2 and set(counts.index) == {r["task"] for r in records}
    assert sample == ev.sample_per_task(records, 2, seed=0)
    positions = [records.index(r) for r in sample]
    assert positions == sorted(positions)
    assert ev.sample_per_task(records, None) == records
    with pytest.raises(ConfigError):
        ev.sample_per_task(records, 0)


def test_report_tables_charts_and_results(tmp_path, log, questions):
    test = list(questions["test"])
    results = ev.answer_questions("oracle", Oracle(test), test, log, progress=False)
    results += ev.random_answers(test) + ev.direct_answers(test, log)
    paths = write_report(results, tmp_path, title="T", facts={"LLM": "none"})
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    assert paths["task_chart"].read_bytes()[:4] == b"\x89PNG"
    text = paths["report"].read_text()
    assert "- **LLM:** none" in text
    for method in ("oracle", ev.RANDOM, ev.DIRECT):
        assert f"| {method} |" in text
    assert "| oracle | 1.000 [1.00, 1.00]" in text  # dimension table, with its interval
    lines = paths["results"].read_text().splitlines()
    assert len(lines) == len(results)
    assert json.loads(lines[0])["method"] == "oracle"
    acc = pd.read_csv(paths["accuracy"])
    overall = acc[(acc["level"] == "overall")].set_index("method")["accuracy"]
    assert overall["oracle"] == 1.0 and 0 < overall[ev.RANDOM] < 0.6


def test_the_question_config_travels_with_the_questions(tmp_path, log):
    from userfm.eval.uqa import QuestionConfig, load_question_config, save_questions

    config = QuestionConfig(tasks=("short_term",), n_recent=7)
    save_questions(build_questions(log, seed=0, config=config), tmp_path, config=config)
    assert load_question_config(tmp_path) == config
    assert load_question_config(tmp_path / "elsewhere") == QuestionConfig()


def test_eval_uqa_names_bad_splits_logs_and_method_names(tmp_path, log, capsys):
    from userfm.cli import main
    from userfm.eval.uqa import save_questions

    save_questions(build_questions(log, seed=0, tasks=("short_term",)), tmp_path / "qa")
    rc = main(
        ["eval", "uqa", "--questions", str(tmp_path / "qa"), "--log", "synthetic",
         "--split", "holdout", "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 2 and "no 'holdout' questions" in capsys.readouterr().err
    rc = main(
        ["eval", "uqa", "--questions", str(tmp_path / "qa"), "--log", "synthetic",
         "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 2 and "not in the event log" in capsys.readouterr().err
    rc = main(
        ["eval", "uqa", "--questions", str(tmp_path / "qa"), "--log", "synthetic",
         "--adapter", "a/x/adapter", "--adapter", "b/x", "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 2 and "share a name" in capsys.readouterr().err
