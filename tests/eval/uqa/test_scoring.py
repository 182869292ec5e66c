"""UQA scoring: normalisation, free-form match, option letters, accuracy tables."""

from __future__ import annotations

import pandas as pd
import pytest

from userfm.errors import ConfigError, DataError
from userfm.eval.uqa import (
    accuracy_table,
    normalise,
    parse_letter,
    score,
    score_free,
    score_mc,
)

OPTIONS = ["Drama", "Comedy", "Action", "Thriller"]
MC = {
    "question_id": "short_term/u1/0",
    "format": "mc",
    "options": OPTIONS,
    "answer": "Comedy",
    "answer_letter": "B",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Drama", "drama"),
        ("  DRAMA.  ", "drama"),
        ("The Matrix (1999)!", "matrix 1999"),
        ("an   apple a day", "apple day"),
        ("Drama->Comedy", "drama comedy"),
        ("Drama -> Comedy", "drama comedy"),
        ("Sci-Fi", "sci fi"),
        ("Children's", "children s"),
        ("snake_case", "snake case"),
        ("A", "a"),  # only an article: kept, never empty
        ("", ""),
        (None, ""),
        (12, "12"),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("Drama", "Drama", True),
        ("drama", "Drama", True),
        ("Drama.", "Drama", True),
        ("drama, I think", "Drama", True),
        ("The drama", "Drama", True),
        ("Answer: Drama", "Drama", True),
        ("The answer is drama.", "Drama", True),
        ("Dramatic", "Drama", False),  # a prefix must end at a word boundary
        ("12", "1", False),
        ("1 movie", "1", True),
        ("I think drama", "Drama", False),  # not a prefix
        ("Drama, Comedy, Action", "Drama, Comedy, Action", True),
        ("drama comedy action", "Drama, Comedy, Action", True),
        ("Drama, Action, Comedy", "Drama, Comedy, Action", False),  # order matters
        ("Drama->Comedy->Thriller", "Drama -> Comedy -> Thriller", True),
        ("", "Drama", False),
        ("   ", "Drama", False),
        (None, "Drama", False),
        ("!!!", "Drama", False),
        ("Comedy", "Drama", False),
    ],
)
def test_score_free(prediction, gold, expected):
    assert score_free(prediction, gold) is expected


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("(b)", "B"),
        ("(B) Comedy", "B"),
        ("[C]", "C"),
        ("B) Comedy", "B"),
        ("b: comedy", "B"),
        ("B. Comedy", "B"),
        ("B\nBecause the user watched many comedies.", "B"),
        ("**D**", "D"),
        ("Answer: B", "B"),
        ("answer: c", "C"),
        ("The answer is (d).", "D"),
        ("I think the answer is C", "C"),
        ("The answer is A because", "A"),
        ("Option D", "D"),
        ("option b is right", "B"),
        ("Comedy", "B"),
        ("comedy.", "B"),
        ("THRILLER", "D"),
        ("comedy, because the user likes it", "B"),
        ("a comedy", "B"),  # "a" is an article here, not option A
        ("The answer is a comedy", "B"),
        ("It is a Thriller movie", "D"),
        ("Answer: the thriller", "D"),
        ("", None),
        ("   ", None),
        (None, None),
        ("garbage", None),
        ("E", None),  # only 4 options
        ("Answer: E", None),
        ("Drama and Comedy are both likely", "A"),  # a prefix match, like score_free
        ("either comedy or thriller", None),  # two options named: no single choice
    ],
)
def test_parse_letter(prediction, letter):
    assert parse_letter(prediction, OPTIONS) == letter


def test_parse_letter_with_numeric_and_nested_options():
    assert parse_letter("12", ["1", "12", "2", "0"]) == "B"
    assert parse_letter("I count 12 of them", ["1", "12", "2", "0"]) == "B"
    assert parse_letter("1 or 2", ["1", "12", "2", "0"]) == "A"  # prefix: "1"
    assert parse_letter("maybe 1 or 2", ["1", "12", "2", "0"]) is None
    nested = ["Drama", "Drama, Comedy", "Action", "War"]
    assert parse_letter("Drama, Comedy", nested) == "B"  # exact beats prefix
    assert parse_letter("I like drama comedy mostly", nested) == "B"  # the longer one contains


def test_score_mc_and_dispatch():
    assert score_mc("B", MC) and score_mc("(b) comedy", MC) and score_mc("Comedy", MC)
    assert not score_mc("A", MC) and not score_mc("", MC) and not score_mc("no idea", MC)
    assert score("answer: b", MC)
    free = {"format": "free", "answer": "Comedy", "options": [], "answer_letter": None}
    assert score("comedy!", free) and not score("B", free)
    with pytest.raises(ConfigError, match="not multiple choice"):
        score_mc("B", free)


def results():
    rows = []
    for i in range(10):  # m1: direct_feature 8/10, next_item 2/10
        rows.append(("m1", "direct_feature", "sequence_understanding", i < 8))
        rows.append(("m1", "next_item", "action_prediction", i < 2))
    rows += [("m2", "long_term", "interest_perception", True)] * 4
    return [dict(zip(("method", "task", "dimension", "correct"), r)) for r in rows]


def test_accuracy_table_levels_order_and_intervals():
    table = accuracy_table(results(), n_resamples=500, seed=0)
    assert list(table.columns) == [
        "method",
        "level",
        "name",
        "n",
        "correct",
        "accuracy",
        "ci_low",
        "ci_high",
    ]
    m1 = table[table.method == "m1"]
    assert list(zip(m1.level, m1.name)) == [
        ("task", "direct_feature"),
        ("task", "next_item"),
        ("dimension", "sequence_understanding"),
        ("dimension", "action_prediction"),
        ("overall", "overall"),
    ]
    assert m1.accuracy.tolist() == pytest.approx([0.8, 0.2, 0.8, 0.2, 0.5])
    assert m1.n.tolist() == [10, 10, 10, 10, 20]
    assert (table.ci_low <= table.accuracy).all() and (table.accuracy <= table.ci_high).all()
    overall = m1[m1.level == "overall"].iloc[0]
    assert 0.2 <= overall.ci_low < 0.5 < overall.ci_high <= 0.8  # about +-0.22 at n=20
    m2 = table[table.method == "m2"]
    assert m2.accuracy.tolist() == [1.0, 1.0, 1.0]
    assert m2.ci_low.tolist() == [1.0, 1.0, 1.0]  # no variance to resample
    # seeded: same seed, same intervals; a DataFrame works as input too
    again = accuracy_table(pd.DataFrame(results()), n_resamples=500, seed=0)
    pd.testing.assert_frame_equal(table, again)
    assert not accuracy_table(results(), n_resamples=500, seed=1).equals(table)


def test_accuracy_table_errors_and_empty_input():
    assert accuracy_table([]).empty
    bad = [{"method": "m", "task": "next_item", "correct": True}]
    with pytest.raises(DataError, match="dimension"):
        accuracy_table(bad)
    with pytest.raises(ConfigError, match="n_resamples"):
        accuracy_table(results(), n_resamples=0)
    with pytest.raises(ConfigError, match="confidence"):
        accuracy_table(results(), confidence=1.0)
