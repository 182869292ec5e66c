"""The text rendering of a history (the text-prompt baseline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from userfm.data.history_text import HEADER, history_lines, history_prompt, lines_within
from userfm.data.log import UserHistory
from userfm.errors import ConfigError


class CharTokenizer:
    """One token per character: easy budgets to reason about."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text)))}


HISTORY = UserHistory(
    "u1",
    np.array(["i1", "i2", "i3"], dtype=object),
    timestamps=np.array([0, 86_400, 2 * 86_400]),
    actions=np.array(["view", "buy", "view"], dtype=object),
    categories=np.array(["books", "games", "books"], dtype=object),
)
ATTRS = {"i1": {"title": "Dune"}, "i2": {"title": "Chess", "category": "board games"}}


def test_lines_are_most_recent_first_with_the_known_parts():
    assert history_lines(HISTORY, ATTRS) == [
        "- item i3 [books] (view, 1970-01-03)",
        "- Chess [board games] (buy, 1970-01-02)",
        "- Dune [books] (view, 1970-01-01)",
    ]
    bare = UserHistory("u2", np.array(["i9"], dtype=object))
    assert history_lines(bare) == ["- item i9"]


def test_prompt_keeps_whole_recent_lines_within_the_budget():
    lines = history_lines(HISTORY, ATTRS)
    tok = CharTokenizer()
    full = history_prompt(tok, lines, "Q?", max_tokens=None)
    assert full == "\n".join([HEADER, *lines, "", "Q?"])
    budget = len(lines[0]) + 1 + len(lines[1]) + 1  # exactly two lines with their newlines
    assert history_prompt(tok, lines, "Q?", max_tokens=budget) == "\n".join(
        [HEADER, *lines[:2], "", "Q?"]
    )
    assert history_prompt(tok, lines, "Q?", max_tokens=3) == "Q?"


def test_lines_within_counts_whole_recent_lines_and_checks_the_budget():
    lines = history_lines(HISTORY, ATTRS)
    tok = CharTokenizer()
    sizes = [len(line) + 1 for line in lines]  # each line with its newline
    assert lines_within(tok, lines, None) == 3
    assert lines_within(None, lines, None) == 3  # no budget: nothing to count
    assert lines_within(tok, lines, 0) == 0
    assert lines_within(tok, lines, sizes[0] - 1) == 0
    assert lines_within(tok, lines, sizes[0]) == 1
    assert lines_within(tok, lines, sizes[0] + sizes[1] - 1) == 1
    assert lines_within(tok, lines, sum(sizes)) == 3
    assert lines_within(tok, lines, 10**6) == 3
    # a later shorter line is not squeezed in after one that did not fit: no gaps
    assert lines_within(tok, ["- " + "x" * 50, "- y"], 10) == 0
    assert lines_within(tok, [], 5) == 0
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="max_tokens"):
            lines_within(tok, lines, bad)
    with pytest.raises(ConfigError, match="tokenizer"):
        lines_within(None, lines, 10)


def test_a_multi_valued_category_is_written_as_the_questions_attribute():
    history = UserHistory(
        "u",
        np.array(["i1", "i2", "i3", "i4"], dtype=object),
        categories=np.array(["Comedy|Drama", " Drama ", None, "|Horror"], dtype=object),
        titles=np.array(["A", "B", "C", "D"], dtype=object),
    )
    # the first part, as `QuestionConfig.multi_value="first"` asks about; missing parts are
    # not written at all (no empty brackets)
    assert history_lines(history) == ["- D", "- C", "- B [Drama]", "- A [Comedy]"]
    assert history_lines(history, multi_value="last")[-1] == "- A [Drama]"
    assert history_lines(history, multi_value="joined") == [
        "- D [|Horror]",
        "- C",
        "- B [Drama]",
        "- A [Comedy|Drama]",
    ]
    # the attribute table's categories follow the same rule
    assert history_lines(history[:1], {"i1": {"category": "Action|Crime"}}) == ["- A [Action]"]
    with pytest.raises(ConfigError, match="multi_value"):
        history_lines(UserHistory("u", np.array(["i1"], dtype=object)), multi_value="middle")


def test_titles_come_from_the_history_itself_and_survive_slicing():
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema

    df = pd.DataFrame(
        {
            "user": ["u", "u", "u"],
            "item": ["i1", "i2", "i3"],
            "timestamp": [1, 2, 3],
            "title": ["Dune", "Chess", "Go"],
        }
    )
    history = read_events(df, EventSchema(title="title")).history("u")
    assert list(history.titles) == ["Dune", "Chess", "Go"]
    assert list(history[:2].titles) == ["Dune", "Chess"]
    # the history's own title wins over the attribute table
    assert history_lines(history[:1], {"i1": {"title": "Other"}}) == ["- Dune (1970-01-01)"]
