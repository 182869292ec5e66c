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


class Scores:
    def __init__(self, logprob, tokens):
        self.logprob, self.tokens = logprob, tokens

    def best(self, per_token=False):
        values = [s / n for s, n in zip(self.logprob, self.tokens)] if per_token else self.logprob
        return max(range(len(values)), key=values.__getitem__)


class Oracle:
    """Answers from the gold record (looked up by user and question), and records its calls.
    Its option scores put the gold option first by sum, and a long wrong option first per
    token, so the two rankings differ."""

    def __init__(self, records, wrong_tasks=()):
        self.mc = {(r["user_id"], r["question"]): r for r in records if r["format"] == "mc"}
        self.free = {(r["user_id"], r["prompt"]): r for r in records if r["format"] == "free"}
        self.wrong_tasks = set(wrong_tasks)
        self.calls = []

    def option_logprobs(self, histories, prompts, options):
        self.calls.append(("options", len(prompts), tuple(map(len, options))))
        out = []
        for h, p, opts in zip(histories, prompts, options, strict=True):
            r = self.mc[h.user, p]
            right = -1.0 if r["task"] not in self.wrong_tasks else -9.0  # wrong: gold last
            scores = [right if o == r["answer"] else -5.0 for o in opts]
            out.append(Scores(scores, [1 if o == r["answer"] else 10 for o in opts]))
        return out

    def choose_letter(self, histories, prompts, letters):
        self.calls.append(("letter", len(prompts), tuple(letters)))
        return ["A"] * len(prompts)

    def generate(self, histories, prompts, *, max_new_tokens):
        self.calls.append(("generate", len(prompts), max_new_tokens))
        out = []
        for h, p in zip(histories, prompts, strict=True):
            r = self.free[h.user, p]
            out.append("zzz" if r["task"] in self.wrong_tasks else r["answer"])
        return out

    def prompt_lengths(self, histories, prompts):
        return [len(h) for h in histories]


def test_answers_are_scored_per_question_in_record_order(log, questions):
    records = list(questions["test"])
    model = Oracle(records, wrong_tasks={"long_term"})
    results = ev.answer_questions("oracle", model, records, log, batch_size=5, progress=False)
    main = [r for r in results if r["method"] == "oracle"]
    assert [r["question_id"] for r in main] == [r["question_id"] for r in records]
    for res, rec in zip(main, records, strict=True):
        assert res["correct"] == (rec["task"] != "long_term")
        assert res["format"] == rec["format"]
        assert res["prompt_tokens"] == rec["context_end"]  # the visible history only
        assert res["ms"] >= 0
    kinds = {c[0] for c in model.calls}
    assert kinds == {"options", "generate"}  # no letter is read unless asked
    assert all(n <= 5 for _, n, _ in model.calls)
    # the per-token ranking comes from the same scores: the gold option is 1 token at -1.0,
    # each wrong one 10 tokens at -5.0 in all (-0.5 per token), so it loses per token
    norm = [r for r in results if r["method"] == "oracle" + ev.PER_TOKEN]
    assert [r["question_id"] for r in norm] == [r["question_id"] for r in records]
    assert not any(r["correct"] for r in norm if r["format"] == "mc")
    assert all(r["correct"] for r in norm if r["format"] == "free" and r["task"] != "long_term")


def test_letter_diagnostic_and_swapped_users(log, questions):
    records = [r for r in questions["test"] if r["format"] == "mc"]
    model = Oracle(records)
    results = ev.answer_questions(
        "m", model, records, log, letters=True, per_token=False, progress=False
    )
    letters = [r for r in results if r["method"] == "m" + ev.LETTER]
    assert len(letters) == len(records) and {r["prediction"] for r in letters} == {"A"}
    assert {c[0] for c in model.calls} == {"options", "letter"}

    swap = ev.swapped_users(records, seed=0)
    users = {r["user_id"] for r in records}
    assert set(swap) == users and set(swap.values()) == users
    assert all(u != v for u, v in swap.items())  # nobody keeps their own context
    assert swap == ev.swapped_users(records, seed=0) != ev.swapped_users(records, seed=1)
    seen = []
    model.option_logprobs = lambda hs, ps, opts: (seen.extend(h.user for h in hs) or
                                                  [Scores([0.0] * len(o), [1] * len(o)) for o in opts])  # fmt: skip
    ev.answer_questions("m", model, records, log, swap=swap, per_token=False, progress=False)
    assert seen == [swap[r["user_id"]] for r in records]
    assert ev.swapped_users(records[:1]) == {}


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
    # a method that answers "A" whatever the question: right about a quarter of the time
    results += [dict(r, method="stuck", prediction="A", correct=r["gold"] == "A")
                for r in ev.random_answers(test)]  # fmt: skip
    paths = write_report(results, tmp_path, title="T", facts={"LLM": "none"})
    assert set(paths) == {"results", "accuracy", "positions", "report", "task_chart",
                          "tokens_chart"}  # fmt: skip
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    assert paths["task_chart"].read_bytes()[:4] == b"\x89PNG"
    text = paths["report"].read_text()
    assert "- **LLM:** none" in text
    for method in ("oracle", ev.RANDOM, ev.DIRECT):
        assert f"| {method} |" in text
    assert "95% Wilson interval" in text and "bootstrap" not in text
    # dimension table, with its interval: all right is not "certainly 1"
    oracle_row = next(line for line in text.splitlines() if line.startswith("| oracle | 1.000 ["))
    assert "1.00]" in oracle_row and "[1.00, 1.00]" not in oracle_row
    headline = text.split("## Accuracy by sub-task")[0]
    assert "| stuck (position bias) |" in headline
    assert "| oracle (position bias) |" not in headline and f"| {ev.RANDOM} |" in headline

    section = text.split("## Predicted option positions")[1].split("## Efficiency")[0]
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line[:2] == "| "}
    assert {"stuck", "oracle", ev.RANDOM, ev.DIRECT, "gold"} <= set(rows)
    assert "| 100.0% | 0.0% | 0.0% | 0.0% |" in rows["stuck"]
    assert rows["stuck"].endswith("| **position bias** |")
    for method in ("oracle", ev.RANDOM, "gold"):
        assert "position bias" not in rows[method]
    positions = pd.read_csv(paths["positions"]).set_index("method")
    assert positions.loc["stuck", "max_share"] == 1.0 and positions.loc["stuck", "flagged"]
    assert positions.loc[ev.DIRECT, "none"] == 0.0  # the direct answer's letter
    # oracle answers the gold letter: its positions are the gold row's
    letters = ["A", "B", "C", "D"]
    assert positions.loc["oracle", letters].tolist() == positions.loc["gold", letters].tolist()
    assert not positions.loc["gold", "flagged"]  # shuffled options: no dominant gold letter

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


def test_an_earlier_runs_methods_join_the_report_on_the_same_questions(tmp_path, log, questions):
    from userfm.eval.uqa.report import include_results

    test = list(questions["test"])
    slow = [dict(r, method="slow method") for r in ev.random_answers(test, seed=1)]
    write_report(slow + ev.prior_answers(test, list(questions["train"])), tmp_path / "old")
    rows = include_results([tmp_path / "old"], test, skip=[ev.PRIOR])
    assert rows == slow  # this run's own methods are not taken twice
    # a later file replaces a method of an earlier one
    again = [dict(r, method="slow method") for r in ev.random_answers(test, seed=2)]
    write_report(again, tmp_path / "new")
    later = include_results([tmp_path / "old" / "results.jsonl", tmp_path / "new"], test)
    assert [r for r in later if r["method"] == "slow method"] == again

    write_report(slow[1:], tmp_path / "fewer")  # another question set: refused, not mixed
    with pytest.raises(DataError, match="1 missing"):
        include_results([tmp_path / "fewer"], test)
    write_report(slow + slow[:1], tmp_path / "twice")
    with pytest.raises(DataError, match="more than once"):
        include_results([tmp_path / "twice"], test)
    (tmp_path / "bad.jsonl").write_text('{"method": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1 .*lacks"):
        include_results([tmp_path / "bad.jsonl"], test)
    with pytest.raises(FileNotFoundError, match="no results.jsonl"):
        include_results([tmp_path / "nowhere"], test)


def test_eval_uqa_include_reports_an_earlier_runs_methods(tmp_path, capsys):
    from userfm.cli import main
    from userfm.data.sources import load_source
    from userfm.eval.uqa import save_questions

    log = load_source("synthetic")
    save_questions(build_questions(log, seed=0, tasks=("short_term",)), tmp_path / "qa")
    base = ["eval", "uqa", "--questions", str(tmp_path / "qa"), "--log", "synthetic"]
    assert main([*base, "--out", str(tmp_path / "first")]) == 0
    first = pd.read_json(tmp_path / "first" / "results.jsonl", lines=True)
    slow = first[first["method"] == ev.RANDOM].assign(method="slow method")
    slow.to_json(tmp_path / "slow.jsonl", orient="records", lines=True)
    assert main([*base, "--out", str(tmp_path / "r"), "--include", str(tmp_path / "slow.jsonl"),
                 "--include", str(tmp_path / "first")]) == 0  # fmt: skip
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| slow method |" in report and "- **included:**" in report
    merged = pd.read_json(tmp_path / "r" / "results.jsonl", lines=True)
    methods = (ev.RANDOM, ev.PRIOR, ev.DIRECT, "slow method")  # each once per question
    assert merged["method"].value_counts().to_dict() == {m: len(slow) for m in methods}
    capsys.readouterr()
    other = slow.iloc[1:]
    other.to_json(tmp_path / "other.jsonl", orient="records", lines=True)
    rc = main([*base, "--out", str(tmp_path / "r2"), "--include", str(tmp_path / "other.jsonl")])
    assert rc == 2 and "missing" in capsys.readouterr().err
