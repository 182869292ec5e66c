"""Alignment data: descriptions of each user's visible history, split like the questions."""

from __future__ import annotations

import pytest

from userfm.data.history_text import history_lines
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.eval.uqa import build_questions
from userfm.eval.uqa.describe import DESCRIBE_TASKS, build_descriptions
from userfm.eval.uqa.evaluate import visible_history


@pytest.fixture(scope="module")
def log():
    return read_events(
        generate_synthetic_log(SyntheticConfig(num_users=60, num_items=40, seed=6)),
        EventSchema(action="action", category="category", title="title"),
    )


def test_descriptions_are_read_off_the_visible_history(log):
    dd = build_descriptions(log, seed=0, recent=3)
    records = [r for s in dd.values() for r in s]
    assert {r["task"] for r in records} == set(DESCRIBE_TASKS)
    for r in records:
        assert r["format"] == "free" and r["prompt"] == r["question"]
        lines = history_lines(visible_history(log, r))  # most recent first, as the text shows
        if r["task"] == "describe_recent":
            # "- Title [genre] (action, date)" -> "Title [genre]"
            shown = [line[2:].rsplit(" (", 1)[0] for line in lines[:3]]
            assert r["answer"] == "; ".join(shown)
        else:
            assert r["answer"].startswith("Overall: ") and "Lately: " in r["answer"]


def test_users_are_split_as_the_questions_split_them(log):
    dd = build_descriptions(log, seed=3)
    qs = build_questions(log, seed=3, tasks=("long_term",))
    for split in ("train", "valid", "test"):
        described = {r["user_id"] for r in dd[split]}
        assert described
        others = {r["user_id"] for s in ("train", "valid", "test") if s != split for r in qs[s]}
        assert not described & others  # a test user is never described in training
