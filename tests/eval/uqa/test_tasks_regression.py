"""The question builder's output, byte for byte: a fixed seed and log give the same files.

The hashes were recorded before `userfm.eval.uqa.tasks` was split into config / generators /
sampling / io modules (issue 19 §3b); a refactoring that changes any question, answer,
phrasing, distractor, option order, statistic or saved file changes them. Change a hash only
with a change that is meant to alter the questions, and say so in its commit.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from userfm import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.eval.uqa import (
    QuestionConfig,
    QuestionStats,
    build_questions,
    question_stats,
    save_questions,
)
from userfm.eval.uqa.describe import build_descriptions

FILES = ("train.jsonl", "valid.jsonl", "test.jsonl", "stats.json", "manifest.json")

# (seed, QuestionConfig overrides) -> sha256 of FILES as save_questions writes them
CASES = {
    "both_formats": (
        0,
        {"format": "both"},
        "820b2b0848b44c4405e59c64001a18f3b7ba135d2f01a2085e83baf8bc46570b",
    ),
    "five_options_short_windows": (
        7,
        {
            "num_options": 5,
            "questions_per_user": 3,
            "n_recent": 4,
            "window": 6,
            "short_window": 5,
            "trajectory_window": 3,
            "trajectory_steps": 3,
            "top_k": 2,
            "item_noun": "story",
            "attribute_noun": "genre",
        },
        "9507bd18513c2036721f68bdfffbbd552675794ca0bd5e1c46430ec531c5191b",
    ),
}

DESCRIPTIONS = "15ea64e77467dec7d5efceb8152dc66542a01d36a271289b25b93e70b19b2b07"


@pytest.fixture(scope="module")
def synthetic_log():
    cfg = SyntheticConfig(num_users=150, num_items=80, num_categories=8, mean_events=25, seed=4)
    return read_events(generate_synthetic_log(cfg), EventSchema(category="category", title="title"))


def output_hash(folder) -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_questions_are_byte_identical_for_a_fixed_seed(tmp_path, synthetic_log, case):
    seed, overrides, expected = CASES[case]
    config = QuestionConfig(**overrides)
    questions = build_questions(synthetic_log, seed=seed, config=config)
    assert sum(len(ds) for ds in questions.values()) > 0
    out = save_questions(questions, tmp_path / "q", config=config)
    assert output_hash(out) == expected
    # the typed stats say exactly what the stored JSON says
    stats = QuestionStats.of(questions)
    assert stats is not None and stats.config == config and stats.seed == seed
    assert stats.to_dict() == question_stats(questions)


def test_descriptions_are_byte_identical_for_a_fixed_seed(synthetic_log):
    # build_descriptions shares the builder's events, wording and user split
    dd = build_descriptions(synthetic_log, seed=3, config=QuestionConfig(attribute_noun="genre"))
    digest = hashlib.sha256()
    for split, ds in dd.items():
        digest.update(split.encode() + b"\0" + json.dumps(ds.to_list(), sort_keys=True).encode())
    assert digest.hexdigest() == DESCRIPTIONS
