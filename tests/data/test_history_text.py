"""The text rendering of a history (the text-prompt baseline)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from userfm.data.history_text import HEADER, history_lines, history_prompt
from userfm.data.log import UserHistory


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
