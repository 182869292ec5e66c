"""Every readable sub-task's gold answer can be read from the history text the model sees.

For each question of a sub-task in `READABLE_TASKS`, the visible history is rendered with
`history_lines` (no token budget), the bracketed attribute of each line is parsed back, and the
answer is recomputed from those parsed values only. The recomputation is written here, from
the documented definitions, on purpose: it must not share code with the builder, so that it
fails whenever the questions ask about a value the text does not show (as they did when the
text wrote MovieLens' ``Action|Adventure|Drama`` and the questions asked about ``Action``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from userfm.data.attributes import MULTI_VALUES, attribute_value
from userfm.data.history_text import history_lines
from userfm.data.log import EventLog
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.errors import ConfigError
from userfm.eval.uqa import READABLE_TASKS, SPLITS, TASKS, build_questions
from userfm.eval.uqa.evaluate import visible_history

ML100K = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-100k"

# "- <title> [<attribute>] (<action>, <date>)": the attribute is the last bracketed part,
# followed only by the optional details, so titles with brackets inside stay titles.
_ATTRIBUTE = re.compile(r" \[([^\[\]]*)\](?: \([^()]*\))?$")

# Item categories of the hand-made log: several multi-valued ones whose first, last and
# joined forms differ, one with spaces around its parts, one whose first part is empty (a
# missing attribute under "first") and missing ones.
CATEGORIES = (
    "Drama",
    "Comedy",
    "Action",
    "Horror",
    "Action|Drama",
    "Comedy|Drama",
    "Action|Comedy|Horror",
    "Drama|Horror",
    " Comedy | Action ",
    "Horror|Comedy",
    "|Drama",
    None,
)


def multi_valued_log(seed: int = 0) -> EventLog:
    """80 users with 30..60 events each over 60 items of `CATEGORIES`; each user prefers a
    few categories, so that the answers vary from user to user."""
    rng = np.random.default_rng(seed)
    n_items = 60
    item_category = [CATEGORIES[i % len(CATEGORIES)] for i in range(n_items)]
    # a title with brackets inside (not at its end) must not be read as an attribute
    titles = [f"Film {i}" if i % 7 else f"Film [{i}] Cut" for i in range(n_items)]
    rows = []
    for u in range(80):
        weights = rng.dirichlet(np.full(n_items, 0.3))
        n = int(rng.integers(30, 61))
        for t, i in enumerate(rng.choice(n_items, size=n, p=weights)):
            rows.append((f"u{u}", f"i{i}", 1_700_000_000 + 3600 * t, "view"))
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp", "action"])
    df["category"] = [item_category[int(i[1:])] for i in df["item"]]
    df["title"] = [titles[int(i[1:])] for i in df["item"]]
    return read_events(df, EventSchema(action="action", category="category", title="title"))


def parsed_attributes(lines: list[str]) -> list[str | None]:
    """The attribute written on each line, oldest first (lines are most recent first)."""
    values = []
    for line in reversed(lines):
        m = _ATTRIBUTE.search(line)
        values.append(m.group(1) if m else None)
    return values


def dominant(values: list[str | None]) -> list[str]:
    """Distinct values by count, most frequent first; a tie goes to the value seen last."""
    count = Counter(v for v in values if v is not None)
    latest = {v: i for i, v in enumerate(values) if v is not None}
    return sorted(count, key=lambda v: (-count[v], -latest[v]))


def answer_from_text(task: str, params: dict, values: list[str | None]) -> str:
    """The gold answer of ``task`` as a reader of the text would compute it."""
    if task == "direct_feature":
        return str(values[-params["n"]])
    if task == "match_feature":
        return str(sum(v == params["value"] for v in values[-params["window"] :]))
    if task == "long_term":
        return ", ".join(dominant(values)[: params["top_k"]])
    if task == "short_term":
        return dominant(values[-params["window"] :])[0]
    if task == "trajectory":
        w, s = params["window"], params["steps"]
        tail = values[len(values) - w * s :]
        return " -> ".join(dominant(tail[k * w : (k + 1) * w])[0] for k in range(s))
    raise AssertionError(f"no text reading for sub-task {task!r}")


def check_readable(log: EventLog, questions, multi_value: str) -> Counter:
    """Assert that every readable record's answer is the one read from its rendered history;
    returns the number of records checked per sub-task."""
    checked: Counter = Counter()
    multi_valued_contexts = 0
    wrong = []
    histories: dict[tuple[str, int], list[str | None]] = {}
    for split in SPLITS:
        for r in questions[split]:
            if r["task"] not in READABLE_TASKS:
                continue
            key = (r["user_id"], r["context_end"])
            if key not in histories:
                history = visible_history(log, r)
                lines = history_lines(history, multi_value=multi_value)
                assert len(lines) == r["context_end"]
                histories[key] = parsed_attributes(lines)
                raw = [] if history.categories is None else list(history.categories)
                multi_valued_contexts += any(c is not None and "|" in c for c in raw)
            expected = answer_from_text(r["task"], json.loads(r["params"]), histories[key])
            checked[r["task"]] += 1
            if expected != r["answer"]:
                wrong.append((r["question_id"], r["answer"], expected))
    assert not wrong, f"{len(wrong)} answers differ from the text's (id, gold, text): {wrong[:5]}"
    # the check is only meaningful where several values could be shown
    assert multi_valued_contexts > 0
    assert set(checked) == set(READABLE_TASKS), f"sub-tasks without questions: {checked}"
    return checked


def test_readable_tasks_are_the_ones_answered_from_the_context():
    assert set(READABLE_TASKS) <= set(TASKS)
    assert "next_item" not in READABLE_TASKS and "next_attribute" not in READABLE_TASKS


@pytest.mark.parametrize("multi_value", MULTI_VALUES)
def test_answers_are_readable_from_the_text_of_a_multi_valued_log(multi_value):
    log = multi_valued_log()
    questions = build_questions(log, seed=0, multi_value=multi_value)
    check_readable(log, questions, multi_value)


def test_answers_are_readable_from_the_text_of_movielens_100k():
    if not (ML100K / "u.data").is_file() or not (ML100K / "u.item").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    from userfm.data.sources import load_source

    log = load_source(str(ML100K), format="movielens-100k")
    checked = check_readable(log, build_questions(log, seed=0), "first")
    assert all(n >= 50 for n in checked.values()), checked


def test_attribute_value():
    for missing in (None, "", "  ", "\t"):
        for mv in MULTI_VALUES:
            assert attribute_value(missing, mv) is None
    assert attribute_value("A|B") == "A"  # "first" by default
    assert attribute_value("A|B", "first") == "A"
    assert attribute_value("A|B", "last") == "B"
    assert attribute_value("A|B", "joined") == "A|B"
    assert attribute_value(" A | B ", "last") == "B"
    assert attribute_value(" A | B ", "joined") == "A | B"
    assert attribute_value("|B", "first") is None  # an empty part is a missing value
    assert attribute_value("Drama", "last") == "Drama"
    assert attribute_value(1995, "first") == "1995"
    for bad in ("middle", "", None, "First"):
        with pytest.raises(ConfigError, match=r"multi_value.*first.*last.*joined"):
            attribute_value("A|B", bad)
    with pytest.raises(ConfigError, match="multi_value"):
        attribute_value(None, "middle")  # a bad setting fails even on a missing value
