"""The UQA question builder: gold answers, skips, priors, splits, determinism, I/O."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from userfm import read_events
from userfm.data.formats import load_movielens_100k
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError, DataError, FileFormatError
from userfm.eval.uqa import (
    LETTERS,
    SPLITS,
    TASK_DIMENSION,
    TASKS,
    DirectAnswerBaseline,
    ItemPrior,
    QuestionConfig,
    VisibleEvent,
    balance_cap,
    build_questions,
    direct_answer,
    format_multiple_choice,
    load_questions,
    majority_answer_accuracy,
    normalise,
    prior_only_accuracy,
    question_stats,
    save_questions,
    score,
    split_users,
)
from userfm.eval.uqa.sampling import AnswerPool

SCHEMA = EventSchema(category="category", title="title", extra=("year",))

# (user, category, title, year), oldest first; the last event of each user is held out.
EVENTS = [
    ("alice", "Drama|Comedy", "Alpha", "1990"),
    ("alice", "Comedy", "Bravo", "1991"),
    ("alice", "Action|Drama", "Charlie", "1992"),
    ("alice", "Comedy", "Delta", "1990"),
    ("alice", "Drama", "Echo", "1991"),
    ("alice", "Comedy|Action", "Foxtrot", "1990"),
    ("alice", "Action", "Golf", "1993"),
    ("alice", "Thriller", "Heat", "1995"),  # held out
    ("bob", "Comedy", "Alpha", "1990"),
    ("bob", "Drama", "Bravo", "1991"),
    ("bob", "Drama", "Charlie", "1992"),  # held out; context of 2 is too short for everything
    ("carol", "Drama", "Alpha", "1990"),  # a single event: no context at all
    ("dave", "Comedy", "Alpha", "1990"),
    ("dave", None, "Bravo", "1991"),
    ("dave", "Comedy", "Charlie", "1992"),
    ("dave", "Comedy", "Delta", "1990"),
    ("dave", None, "Echo", "1991"),
    ("dave", None, "India", "1996"),  # held out, without a category
]
SMALL = dict(
    n_recent=3,
    window=4,
    short_window=3,
    trajectory_window=2,
    trajectory_steps=2,
    top_k=2,
    min_context=3,
    questions_per_user=3,
    split_fractions=(1.0, 0.0, 0.0),
    max_answer_share=1.0,
    format="free",
)
ALICE_CONTEXT = ["Drama", "Comedy", "Action", "Comedy", "Drama", "Comedy", "Action"]


def hand_log():
    df = pd.DataFrame(EVENTS, columns=["user", "category", "title", "year"])
    df["item"] = df["title"].str.lower()
    df["timestamp"] = np.arange(len(df)) * 60
    return read_events(df, SCHEMA)


@pytest.fixture(scope="module")
def log():
    return hand_log()


@pytest.fixture(scope="module")
def hand_questions(log):
    return build_questions(log, seed=3, **SMALL)


@pytest.fixture(scope="module")
def small_synthetic():
    cfg = SyntheticConfig(num_users=300, num_items=120, num_categories=8, mean_events=30, seed=1)
    schema = EventSchema(category="category", title="title")
    return read_events(generate_synthetic_log(cfg), schema)


@pytest.fixture(scope="module")
def synthetic_questions(small_synthetic):
    return build_questions(small_synthetic, seed=0, format="both")


def by_key(ds):
    return {(r["user_id"], r["task"], r["params"]): r for r in ds}


# ---- gold answers against hand-computed histories ------------------------------------------
def test_every_sub_task_answer_matches_the_hand_computed_history(hand_questions):
    assert len(hand_questions["valid"]) == len(hand_questions["test"]) == 0
    rows = list(hand_questions["train"])
    alice = [r for r in rows if r["user_id"] == "alice"]
    assert {r["task"] for r in alice} == set(TASKS)
    assert all(r["context_end"] == 7 for r in alice)  # the 8th event (Heat) is held out
    nth = {1: "Action", 2: "Comedy", 3: "Drama"}  # first category of each item
    last4 = {"Comedy": "2", "Drama": "1", "Action": "1"}  # of Comedy, Drama, Comedy, Action
    seen = Counter()
    for r in alice:
        p = json.loads(r["params"])
        seen[r["task"]] += 1
        assert r["dimension"] == TASK_DIMENSION[r["task"]]
        if r["task"] == "direct_feature":
            assert r["answer"] == nth[p["n"]], r
        elif r["task"] == "match_feature":
            assert p["window"] == 4
            assert r["answer"] == last4.get(p["value"], "0"), r
            if p["value"] not in last4:  # an absent value: the log's only other one
                assert p["value"] == "Thriller"
        elif r["task"] == "next_item":
            assert r["answer"] == "Heat"
        elif r["task"] == "next_attribute":
            assert r["answer"] == "Thriller"
        elif r["task"] == "long_term":
            # Comedy 3; Drama 2 and Action 2 tie, Action occurred last
            assert r["answer"] == "Comedy, Action"
        elif r["task"] == "short_term":
            # last 3: Drama, Comedy, Action all once: the latest (Action) wins
            assert r["answer"] == "Action"
        elif r["task"] == "trajectory":
            # windows [Comedy, Drama] (tie: Drama, latest) then [Comedy, Action] (Action)
            assert r["answer"] == "Drama -> Action"
    # questions_per_user=3: 3 distinct n; match_feature: all 3 present values + "absent" = 4 slots
    assert seen["direct_feature"] == 3 and seen["match_feature"] == 3
    assert all(seen[t] == 1 for t in TASKS[2:])
    assert len({json.loads(r["params"])["n"] for r in alice if r["task"] == "direct_feature"}) == 3

    dave = {r["task"]: r for r in rows if r["user_id"] == "dave"}
    # context: Comedy, None, Comedy, Comedy, None; held out: India without a category
    assert set(dave) == {"direct_feature", "match_feature", "next_item", "short_term", "trajectory"}
    assert dave["next_item"]["answer"] == "India"
    assert dave["short_term"]["answer"] == "Comedy"  # of Comedy, Comedy, None
    assert dave["trajectory"]["answer"] == "Comedy -> Comedy"  # [None, Comedy], [Comedy, None]
    dave_direct = [r for r in rows if r["user_id"] == "dave" and r["task"] == "direct_feature"]
    # the most recent event has no category: only n = 2 and 3 can be asked
    assert sorted(json.loads(r["params"])["n"] for r in dave_direct) == [2, 3]
    assert all(r["answer"] == "Comedy" for r in dave_direct)


def test_skipped_users_are_counted_by_reason(hand_questions):
    tasks = question_stats(hand_questions)["tasks"]
    skipped = {t: tasks[t]["train"]["users_skipped"] for t in TASKS}
    # bob (context 2) and carol (context 0) are too short for every sub-task
    for t in TASKS:
        assert skipped[t].get("history_too_short") == 2, t
    assert skipped["next_attribute"]["missing_value"] == 1  # dave's held-out event
    assert skipped["long_term"]["too_few_distinct_values"] == 1  # dave only has Comedy
    users = {r["user_id"] for r in hand_questions["train"]}
    assert users == {"alice", "dave"}


def test_other_attribute_column_and_multi_value(log):
    years = build_questions(log, seed=0, **{**SMALL, "attribute": "year", "tasks": ("long_term",)})
    (alice,) = [r for r in years["train"] if r["user_id"] == "alice"]
    # years 1990 x3 (last at 6th), 1991 x2, 1992, 1993: top 2 = 1990, 1991
    assert alice["answer"] == "1990, 1991"
    assert "year" in alice["question"]
    last = build_questions(log, seed=0, **{**SMALL, "multi_value": "last", "tasks": ("long_term",)})
    (alice,) = [r for r in last["train"] if r["user_id"] == "alice"]
    # last categories: Comedy, Comedy, Drama, Comedy, Drama, Action, Action
    assert alice["answer"] == "Comedy, Action"
    nouns = build_questions(log, seed=0, **SMALL, item_noun="movie", attribute_noun="genre")
    text = " ".join(nouns["train"]["question"])
    assert "genre" in text and "movie" in text and "category" not in text


def test_direct_answer_equals_gold_for_understanding_and_interest_tasks(log):
    dd = build_questions(log, seed=1, **{**SMALL, "format": "both", "num_options": 2})
    base = DirectAnswerBaseline(log)
    rows = list(dd["train"])
    assert {r["format"] for r in rows} == {"mc", "free"}
    for r in rows:
        if TASK_DIMENSION[r["task"]] != "action_prediction":
            assert score(base.answer(r), r), r
    # next_attribute heuristic: the attribute of the most recent visible event. Only alice has
    # a next_attribute question, so there is no other answer to draw a distractor from: the
    # mc copy is dropped (and counted), the free copy stays.
    (na,) = [r for r in rows if r["task"] == "next_attribute"]
    assert na["format"] == "free" and base.answer(na) == "Action"  # alice's 7th event
    stats = question_stats(dd)["tasks"]["next_attribute"]["train"]
    assert stats["dropped_no_distractors"] == 1 and stats["questions"] == 1


def test_next_item_heuristic_mixes_repeats_and_popular_unseen_items():
    events = [VisibleEvent("x", "X", "a"), VisibleEvent("x", "X", "a"), VisibleEvent("z", "Z", "b")]
    rec = {"task": "next_item", "format": "free", "params": "{}"}
    prior = ItemPrior(ranked_titles=("X", "Y", "Z"), counts={"X": 9, "Y": 5, "Z": 1})
    assert direct_answer(events, rec, item_prior=prior) == "Y"  # never repeats: popular unseen
    repeats = ItemPrior(prior.ranked_titles, prior.counts, repeat_rate=0.9)
    assert direct_answer(events, rec, item_prior=repeats) == "X"  # the user's most frequent
    mc = {**rec, "format": "mc", "options": ["Z", "Y", "W"], "answer_letter": "B"}
    assert direct_answer(events, mc, item_prior=prior) == "Y"


# ---- multiple choice -------------------------------------------------------------------------
def test_format_multiple_choice():
    text = format_multiple_choice("Which genre?", ["Drama", "Comedy", "Action"])
    assert text == (
        "Which genre?\nA. Drama\nB. Comedy\nC. Action\n"
        "Answer with the letter of the correct option (A, B or C)."
    )
    with pytest.raises(ConfigError, match="options"):
        format_multiple_choice("?", ["only one"])


def test_mc_records_are_well_formed_and_distractors_are_real_answers(synthetic_questions):
    for split in SPLITS:
        ds = synthetic_questions[split]
        golds: dict[str, set[str]] = {}
        for r in ds:
            golds.setdefault(r["task"], set()).add(normalise(r["answer"]))
        for r in ds:
            if r["format"] == "free":
                assert r["options"] == [] and r["answer_letter"] is None
                assert r["prompt"].startswith(r["question"] + "\n")
                continue
            opts = r["options"]
            assert len(opts) == 4
            assert opts[LETTERS.index(r["answer_letter"])] == r["answer"]
            keys = [normalise(o) for o in opts]
            assert len(set(keys)) == 4  # distinct, and the gold appears once
            assert r["prompt"] == format_multiple_choice(r["question"], opts)
            # every distractor is some user's gold answer for this sub-task (this split's
            # pool here: every split is big enough)
            assert set(keys) <= golds[r["task"]], r
    # format="both": each question twice, mc and free, same gold
    ids = Counter((r["question_id"], r["format"]) for r in synthetic_questions["train"])
    assert set(ids.values()) == {1}
    per_question = Counter(q for q, _ in ids)
    assert set(per_question.values()) == {2}


def test_phrasings_vary_and_questions_are_deterministic_by_seed(small_synthetic):
    a = build_questions(small_synthetic, seed=5, format="mc")
    b = build_questions(small_synthetic, seed=5, format="mc")
    c = build_questions(small_synthetic, seed=6, format="mc")
    for split in SPLITS:
        assert a[split].to_list() == b[split].to_list()
    assert a["train"].to_list() != c["train"].to_list()
    assert question_stats(a) == question_stats(b)
    for task in TASKS:
        qs = [r["question"] for r in a["train"] if r["task"] == task]
        openings = {" ".join(q.split()[:3]) for q in qs}
        assert len(openings) >= 3, (task, openings)  # three phrasings per sub-task


def test_users_are_split_disjointly(small_synthetic, synthetic_questions):
    users = {s: set(synthetic_questions[s]["user_id"]) for s in SPLITS}
    assert not users["train"] & users["valid"]
    assert not users["train"] & users["test"]
    assert not users["valid"] & users["test"]
    parts = split_users(small_synthetic.user_ids, (0.8, 0.1, 0.1), seed=0)
    assert [len(parts[s]) for s in SPLITS] == [240, 30, 30]
    assert sorted(sum(parts.values(), [])) == sorted(small_synthetic.user_ids)
    for s in SPLITS:
        assert users[s] <= set(parts[s])
    assert question_stats(synthetic_questions)["users"] == {"train": 240, "valid": 30, "test": 30}
    assert split_users(["a", "b", "c"], (0.0, 0.0, 1.0))["test"] == ["a", "b", "c"]


# ---- priors --------------------------------------------------------------------------------
def test_balance_cap():
    assert balance_cap([10, 1, 1, 1], 0.25) == 1
    assert balance_cap([5, 5, 5, 5], 0.25) == 5
    assert balance_cap([100, 30, 30, 30, 30, 30], 0.25) == 50  # 50 <= .25 * (50 + 150)
    assert balance_cap([9, 3], 0.25) == 3  # 2 values: the best possible share is 1/2
    assert balance_cap([], 0.25) == 0


def test_distractor_design_leaves_only_chance_to_a_prior():
    # a skewed (but capped: max share .25) answer distribution
    counts = {"v1": 25, "v2": 25, "v3": 20, "v4": 10, "v5": 10, "v6": 6, "v7": 4}
    pool = AnswerPool([k for k, c in counts.items() for _ in range(c)])
    rng = np.random.default_rng(0)
    golds = rng.choice(list(counts), size=4000, p=np.array(list(counts.values())) / 100)
    hits, appear = 0, Counter()
    for g in golds:
        opts = [g, *pool.distractors(g, 3, rng)]
        assert len(set(opts)) == 4
        appear.update(opts)
        # the "usually right" option (ties by name: the gold is listed first here)
        hits += max(opts, key=lambda o: (counts[o], o)) == g
    assert abs(hits / len(golds) - 0.25) < 0.03
    # each value is an option in proportion to how often it is right: 4 * share
    for k, c in counts.items():
        assert abs(appear[k] / len(golds) - 4 * c / 100) < 0.04, k


def skewed_log(n_users=400, seed=0):
    """Most users' favourite is 'drama' (like MovieLens): the failure priors exploit."""
    rng = np.random.default_rng(seed)
    cats = ["drama", "comedy", "action", "horror", "western", "noir", "war", "music"]
    rows = []
    for u in range(n_users):
        fav = "drama" if rng.random() < 0.7 else cats[rng.integers(1, len(cats))]
        for t in range(25):
            c = fav if rng.random() < 0.6 else cats[rng.integers(len(cats))]
            rows.append((f"u{u:03d}", f"{c}-{rng.integers(30)}", t, c, f"{c} film {t}"))
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp", "category", "title"])
    return read_events(df, EventSchema(category="category", title="title"))


def test_balancing_removes_the_majority_answer_advantage():
    log = skewed_log()
    tasks = ("long_term", "short_term")
    raw = build_questions(log, seed=0, tasks=tasks, max_answer_share=1.0)
    assert majority_answer_accuracy(raw)["short_term"] > 0.55  # "drama" wins without balance
    dd = build_questions(log, seed=0, tasks=tasks)
    stats = question_stats(dd)
    for split in SPLITS:
        for t in tasks:
            s = stats["tasks"][t][split]
            assert s["top_answer_share"] <= 0.25 + 1e-9
            assert s["candidates"] - s["dropped_for_balance"] == s["questions"]
    assert stats["tasks"]["short_term"]["train"]["dropped_for_balance"] > 0
    for t, acc in majority_answer_accuracy(dd).items():
        assert acc <= 0.25 + 0.1, t


def test_prior_only_accuracy_is_near_chance_on_the_synthetic_log():
    log = read_events(
        generate_synthetic_log(), EventSchema(action="action", category="category", title="title")
    )
    dd = build_questions(log, seed=0)
    prior = prior_only_accuracy(dd)  # counted on train, applied to test
    assert set(prior) == set(TASKS)
    for task, acc in prior.items():
        assert acc <= 1 / 4 + 0.15, (task, acc)
    stats = question_stats(dd)
    assert stats["questions"]["test"] > 1000 and stats["questions"]["train"] > 8 * 1000


def test_prior_only_accuracy_is_near_chance_on_movielens(ml100k_dir):
    log = load_movielens_100k(ml100k_dir)
    dd = build_questions(log, seed=0, item_noun="movie", attribute_noun="genre")
    for task, acc in prior_only_accuracy(dd).items():
        assert acc <= 1 / 4 + 0.15, (task, acc)
    for task, acc in majority_answer_accuracy(dd).items():
        assert acc <= 1 / 4 + 0.15, (task, acc)
    # the real failure: "Drama" as long-term favourite. Now no long-term answer dominates.
    assert question_stats(dd)["tasks"]["long_term"]["train"]["top_answer_share"] <= 0.25


# ---- config --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_recent", 0),
        ("window", 0),
        ("short_window", -1),
        ("trajectory_steps", 1),
        ("top_k", 0),
        ("min_context", 0),
        ("num_options", 1),
        ("num_options", 27),
        ("questions_per_user", 0),
        ("split_fractions", (0.5, 0.5, 0.5)),
        ("split_fractions", (1.0, 0.0)),
        ("tasks", ("next_item", "nope")),
        ("tasks", ()),
        ("tasks", ("next_item", "next_item")),
        ("format", "yes"),
        ("max_answer_share", 0),
        ("max_answer_share", 1.5),
        ("multi_value", "middle"),
        ("attribute", ""),
        ("item_noun", " "),
        ("window", True),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"QuestionConfig\.{field}"):
        QuestionConfig(**{field: value})


def test_build_errors(log):
    with pytest.raises(ConfigError, match=r"QuestionConfig\.attribute.*genre"):
        build_questions(log, attribute="genre")
    with pytest.raises(
        ConfigError,
        match=r"\['windw'\] \(did you mean 'windw' -> 'window'\?\); QuestionConfig's fields",
    ):
        build_questions(log, windw=3)
    with pytest.raises(ConfigError, match=r"QuestionConfig\.window"):
        build_questions(log, config=QuestionConfig(), window=0)
    with pytest.raises(ConfigError, match="seed"):
        build_questions(log, seed=-1)


def test_config_round_trips_through_json():
    cfg = QuestionConfig(tasks=("next_item", "trajectory"), format="both", num_options=5)
    again = QuestionConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.answer_share == pytest.approx(0.2)
    with pytest.raises(
        ConfigError, match=r"`questions` has no field\(s\) \['nope'\]; QuestionConfig's"
    ):
        QuestionConfig.from_dict({"nope": 1})


# ---- saving and loading --------------------------------------------------------------------
def test_jsonl_and_dataset_round_trip(tmp_path, hand_questions, synthetic_questions):
    out = save_questions(synthetic_questions, tmp_path / "q")
    assert {p.name for p in out.iterdir()} >= {"train.jsonl", "valid.jsonl", "test.jsonl"}
    assert (out / "dataset" / "dataset_dict.json").is_file()
    from_dataset = load_questions(out)
    assert list(from_dataset) == list(SPLITS)
    for s in SPLITS:
        assert from_dataset[s].to_list() == synthetic_questions[s].to_list()
    assert question_stats(from_dataset) == question_stats(synthetic_questions)
    one = load_questions(out / "test.jsonl")
    assert list(one) == ["test"] and one["test"].to_list() == synthetic_questions["test"].to_list()
    both = load_questions([out / "train.jsonl", out / "valid.jsonl"])
    assert list(both) == ["train", "valid"]
    assert both["valid"].features == synthetic_questions["valid"].features
    # without the saved dataset: the jsonl files (and stats.json)
    jsonl_only = tmp_path / "jsonl"
    jsonl_only.mkdir()
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl", "stats.json"):
        (jsonl_only / name).write_text((out / name).read_text())
    again = load_questions(jsonl_only)
    assert list(again) == list(SPLITS)
    assert again["train"].to_list() == synthetic_questions["train"].to_list()
    assert question_stats(again) == question_stats(synthetic_questions)
    # empty splits survive (datasets cannot reload an empty saved split by itself)
    empty = load_questions(save_questions(hand_questions, tmp_path / "hand"))
    assert [len(empty[s]) for s in SPLITS] == [len(hand_questions["train"]), 0, 0]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_questions(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="jsonl"):
        load_questions(tmp_path)
    bad = tmp_path / "test.jsonl"
    bad.write_text(json.dumps({"question_id": "x"}) + "\n")
    with pytest.raises(DataError, match="test.jsonl:1 lacks"):
        load_questions(bad)
    bad.write_text("not json\n")
    with pytest.raises(FileFormatError, match="test.jsonl:1 is not valid JSON"):
        load_questions(bad)
