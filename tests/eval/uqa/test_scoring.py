"""UQA scoring: normalisation, free-form match, option letters, accuracy and position tables."""

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
from userfm.eval.uqa.scoring import POSITION_BIAS_SHARE, position_table, wilson_interval

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


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (8, 10, 0.4902, 0.9433),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_known_values(correct, n, low, high):
    lo, hi = wilson_interval(correct, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert 0.0 <= lo <= correct / n <= hi <= 1.0


def test_wilson_interval_edges_confidence_and_errors():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0  # exact
    for k in (0, 20):  # unlike the bootstrap, never zero-width at accuracy 0 or 1
        lo, hi = wilson_interval(k, 20)
        assert hi - lo > 0.1
    # wider with more confidence, narrower with more questions
    assert wilson_interval(5, 10, 0.99)[1] > wilson_interval(5, 10)[1]
    assert wilson_interval(50, 100)[1] < wilson_interval(5, 10)[1]
    lo, hi = wilson_interval(3, 7)
    assert lo + hi != pytest.approx(2 * 3 / 7)  # pulled towards 0.5, not centred on p
    with pytest.raises(ConfigError, match="`n`"):
        wilson_interval(0, 0)
    with pytest.raises(ConfigError, match="`correct`"):
        wilson_interval(11, 10)
    with pytest.raises(ConfigError, match="`correct`"):
        wilson_interval(-1, 10)
    with pytest.raises(ConfigError, match="`n`"):
        wilson_interval(1, 2.5)
    with pytest.raises(ConfigError, match="confidence"):
        wilson_interval(1, 2, confidence=0.0)


def test_accuracy_table_levels_order_and_intervals():
    table = accuracy_table(results())
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
    # every interval is the Wilson interval of its row's counts
    for row in table.itertuples(index=False):
        assert (row.ci_low, row.ci_high) == wilson_interval(row.correct, row.n)
    overall = m1[m1.level == "overall"].iloc[0]
    assert (overall.ci_low, overall.ci_high) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    m2 = table[table.method == "m2"]
    assert m2.accuracy.tolist() == [1.0, 1.0, 1.0]
    assert m2.ci_high.tolist() == [1.0, 1.0, 1.0]
    assert m2.ci_low.tolist() == pytest.approx([0.5101] * 3, abs=1e-4)  # 4 of 4: not certain
    # deterministic; a DataFrame works as input too; confidence widens the intervals
    pd.testing.assert_frame_equal(table, accuracy_table(pd.DataFrame(results())))
    wide = accuracy_table(results(), confidence=0.99)
    assert (wide.ci_low <= table.ci_low).all() and (wide.ci_low < table.ci_low).any()


def test_accuracy_table_errors_and_empty_input():
    assert accuracy_table([]).empty
    bad = [{"method": "m", "task": "next_item", "correct": True}]
    with pytest.raises(DataError, match="dimension"):
        accuracy_table(bad)
    with pytest.raises(ConfigError, match="confidence"):
        accuracy_table(results(), confidence=1.0)
    with pytest.raises(TypeError):
        accuracy_table(results(), n_resamples=100)  # the bootstrap is gone


def mc(method, predictions, golds="ABCD", fmt="mc"):
    return [
        {"method": method, "format": fmt, "prediction": p, "gold": g}
        for p, g in zip(predictions, golds * len(predictions), strict=False)
    ]


def test_position_table_flags_a_method_stuck_on_one_letter():
    rows = (
        mc("free_text", ["Drama"] * 3, fmt="free")  # free-form only: absent
        + mc("always_a", ["A"] * 8)
        + mc("balanced", list("ABCDABCD"))
        + mc("free_text", ["x"], fmt="free")
        + mc("unsure", ["A", None, " b ", "Comedy", "AB", None])
    )
    table = position_table(rows)
    tail = ["none", "n", "max_share", "flagged"]
    assert list(table.columns) == ["method", "A", "B", "C", "D", *tail]
    assert table.method.tolist() == ["always_a", "balanced", "unsure"]
    t = table.set_index("method")
    assert t.loc["always_a", "max_share"] == 1.0 and bool(t.loc["always_a", "flagged"])
    assert t.loc["always_a", ["B", "C", "D", "none"]].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert t.loc["balanced", ["A", "B", "C", "D"]].tolist() == [0.25] * 4
    assert t.loc["balanced", "max_share"] == 0.25 and not t.loc["balanced", "flagged"]
    # None, option text and "AB" name no letter; " b " does
    assert t.loc["unsure", "none"] == pytest.approx(4 / 6)
    assert t.loc["unsure", ["A", "B"]].tolist() == pytest.approx([1 / 6, 1 / 6])
    assert t.n.tolist() == [8, 8, 6]
    shares = t[["A", "B", "C", "D", "none"]].sum(axis=1)
    assert shares.tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_position_table_threshold_gold_row_and_columns():
    # exactly half on one letter is not flagged; just over half is
    half = position_table(mc("m", list("AABC"))).iloc[0]
    assert half.max_share == POSITION_BIAS_SHARE and not half.flagged
    over = position_table(mc("m", list("AAABC"))).iloc[0]
    assert over.max_share == 0.6 and over.flagged
    # columns reach the largest letter seen, among predictions and gold letters
    wide = position_table(mc("m", list("AE"), golds="AB"))
    assert [c for c in wide.columns if c.isupper()] == list("ABCDE")
    three = position_table(mc("m", list("ABC"), golds="ABC"))
    assert [c for c in three.columns if c.isupper()] == list("ABC")
    # the gold row: the first method's questions, after the methods
    rows = mc("first", list("AAAA"), golds="ABCD") + mc("second", list("BBBB"), golds="DDDD")
    table = position_table(rows, include_gold=True)
    assert table.method.tolist() == ["first", "second", "gold"]
    gold = table.iloc[-1]
    assert gold[["A", "B", "C", "D"]].tolist() == [0.25] * 4 and not gold.flagged
    assert "gold" not in position_table(rows).method.tolist()


def test_position_table_empty_and_missing_fields():
    assert position_table([]).empty
    assert position_table(mc("m", ["x"], fmt="free")).empty
    with pytest.raises(DataError, match="format"):
        position_table([{"method": "m", "prediction": "A"}])
    with pytest.raises(DataError, match="gold"):
        position_table([{"method": "m", "format": "mc", "prediction": "A"}], include_gold=True)
