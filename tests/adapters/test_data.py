"""Question records joined to histories: targets, context cut, and bad input."""

from __future__ import annotations

import json

import pytest

from userfm.adapters.data import join_histories, read_records, record_target
from userfm.errors import DataError


def test_targets_are_the_letter_for_multiple_choice():
    assert record_target({"format": "mc", "answer": "Drama", "answer_letter": "B"}) == "B"
    assert record_target({"format": "free", "answer": "Drama"}) == "Drama"
    assert record_target({"target": "B. Drama", "answer": "Drama"}) == "B. Drama"


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
    with pytest.raises(DataError, match="train.jsonl:3 is not JSON"):
        read_records(path)
    path.write_text(json.dumps({"user_id": "u", "prompt": "q"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1 lacks \['answer'\]"):
        read_records(path)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl")
