"""The encoder's own answers: the linear probe and the next-item scores over the options."""

from __future__ import annotations

import numpy as np
import pytest

from userfm.api.recommend import Recommendations
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.encoder import UserEncoder
from userfm.eval.uqa import build_questions
from userfm.eval.uqa.encoder_answers import (
    NEXT_ITEM,
    PROBE,
    mean_state_features,
    next_item_answers,
    probe_answers,
)
from userfm.eval.uqa.tasks import QuestionConfig, UserEvents


@pytest.fixture(scope="module")
def log():
    return read_events(
        generate_synthetic_log(SyntheticConfig(num_users=120, num_items=40, seed=4)),
        EventSchema(action="action", category="category", title="title"),
    )


@pytest.fixture(scope="module")
def questions(log):
    return build_questions(log, seed=0, tasks=("short_term", "next_item", "next_attribute"))


def test_the_probe_reads_features_that_hold_the_answer(log, questions):
    """Features = one-hot of the user's short-term answer: the probe must answer every test
    question; features of noise: about chance."""
    train = [r for r in questions["train"] if r["task"] == "short_term"]
    test = list(questions["test"])
    records = train + [r for r in test if r["task"] == "short_term"]
    values = sorted({r["answer"] for r in records})
    gold = {r["user_id"]: values.index(r["answer"]) for r in records}

    def oracle(histories):
        return np.eye(len(values), dtype=np.float32)[[gold[h.user] for h in histories]]

    results = probe_answers(oracle, log, train, test, steps=200)
    assert {r["method"] for r in results} == {PROBE}
    # sub-tasks without training questions get no probe answer
    assert len(results) == sum(r["task"] == "short_term" for r in test)
    assert all(r["correct"] for r in results)

    rng = np.random.default_rng(0)
    noise = probe_answers(
        lambda hs: rng.normal(size=(len(hs), 8)).astype(np.float32), log, train, test, steps=50
    )
    assert np.mean([r["correct"] for r in noise]) < 0.7


def test_mean_state_features_average_the_valid_positions(log):
    encoder = UserEncoder.from_log(log, hidden_size=16, num_layers=1, num_heads=2, max_len=32)
    hs = [log.history_at(i) for i in range(3)]
    x = mean_state_features(encoder.eval(), batch_size=2)(hs)
    one = mean_state_features(encoder, batch_size=1)(hs[:1])
    assert x.shape == (3, 16)
    np.testing.assert_allclose(x[0], one[0], rtol=1e-4, atol=1e-5)  # padding changes nothing


class FixedRanker:
    """Scores the gold next item (by title) highest for every question."""

    def __init__(self, log, records):
        ev = UserEvents(log, QuestionConfig())
        self.items = sorted({str(i) for i in ev.items})
        title = {str(i): t for i, t in zip(ev.items, ev.titles)}
        self.gold_items = [[i for i in self.items if title[i] == r["answer"]] for r in records]

    def recommend(self, histories, *, k, exclude_seen, progress):
        assert k is None and exclude_seen
        scores = np.zeros((len(histories), len(self.items)), dtype=np.float32)
        for row, gold in enumerate(self.gold_items):
            for i in gold:
                scores[row, self.items.index(i)] = 10.0
        order = np.argsort(-scores, axis=1, kind="stable")
        ids = np.asarray(self.items, dtype=object)[order]
        return Recommendations(
            [h.user for h in histories], ids, np.take_along_axis(scores, order, 1)
        )


def test_next_item_scores_answer_with_the_top_scored_option(log, questions):
    test = [r for r in questions["test"] if r["task"] == "next_item"]
    results = next_item_answers(FixedRanker(log, test), log, test)
    assert {r["method"] for r in results} == {NEXT_ITEM}
    assert len(results) == len(test) and all(r["correct"] for r in results)
    assert {r["prediction"] for r in results} <= set("ABCD")  # letters, for the position table


def test_next_attribute_sums_the_probability_of_each_attributes_items(log, questions):
    """All mass on items of the gold attribute: every next_attribute answer is right."""
    test = [r for r in questions["test"] if r["task"] == "next_attribute"]
    ev = UserEvents(log, QuestionConfig())
    attr = {str(i): a for i, a in zip(ev.items, ev.attrs)}
    items = sorted(attr)

    class AttrRanker:
        def recommend(self, histories, *, k, exclude_seen, progress):
            scores = np.array(
                [[10.0 if attr[i] == r["answer"] else 0.0 for i in items] for r in test],
                dtype=np.float32,
            )
            ids = np.tile(np.asarray(items, dtype=object), (len(test), 1))
            return Recommendations([h.user for h in histories], ids, scores)

    results = next_item_answers(AttrRanker(), log, test)
    assert len(results) == len(test) and all(r["correct"] for r in results)
