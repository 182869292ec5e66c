"""Question records joined to histories: targets, context cut, and bad input."""

from __future__ import annotations

import json

import pytest

from userfm.adapters.data import join_histories, read_records, record_target
from userfm.errors import DataError, FileFormatError
from userfm.eval.uqa.evaluate import cloze_prompt


def test_multiple_choice_trains_as_cloze_on_the_answer_text():
    mc = {"format": "mc", "question": "Genre?", "prompt": "Genre?\nA. Drama\nB. Comedy",
          "answer": "Comedy", "answer_letter": "B"}  # fmt: skip
    assert record_target(mc) == "Comedy" and cloze_prompt(mc) == "Genre?"
    free = {"format": "free", "question": "Genre?", "prompt": "Genre? One word.", "answer": "Drama"}
    assert record_target(free) == "Drama" and cloze_prompt(free) == "Genre? One word."
    assert record_target({"target": "B. Drama", "answer": "Drama"}) == "B. Drama"


def test_training_draws_every_sub_task_equally_often():
    import torch

    from userfm.adapters.data import QAExample, task_balanced_sampler

    examples = [QAExample(None, "q", "a", {"task": "big"}) for _ in range(90)]
    examples += [QAExample(None, "q", "a", {"task": "small"}) for _ in range(10)]
    sampler = task_balanced_sampler(examples, torch.Generator().manual_seed(0))
    draws = [examples[i].record["task"] for _ in range(20) for i in sampler]
    assert len(draws) == 2000 and 0.45 < draws.count("small") / len(draws) < 0.55


def test_histories_are_cut_at_context_end(tiny_log):
    user = tiny_log.user_ids[0]
    full = tiny_log.history(user)
    [ex] = join_histories(
        [{"user_id": user, "prompt": "q", "answer": "a", "context_end": 3}], tiny_log
    )
    assert list(ex.history.items) == list(full.items[:3]) and ex.prompt == "q"
    with pytest.raises(DataError, match="not in the event log"):
        join_histories([{"user_id": "nobody", "prompt": "q", "answer": "a"}], tiny_log)


def test_bad_lines_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"user_id": "u", "question": "q", "answer": "a"}) + "\n\n{oops\n")
    with pytest.raises(FileFormatError, match="train.jsonl:3 is not valid JSON"):
        read_records(path)
    path.write_text(json.dumps({"user_id": "u", "prompt": "q"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1 lacks \['answer'\]"):
        read_records(path)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl")
