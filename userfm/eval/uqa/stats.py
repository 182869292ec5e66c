"""What the UQA question builder skipped, dropped and kept: `QuestionStats`.

The stats travel with the questions as JSON in every split's ``DatasetInfo.description``
(`QuestionStats.to_json`, sorted keys) and in ``stats.json`` beside saved questions; the
format of both is the dict of `QuestionStats.to_dict`, unchanged since the stats were plain
dicts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets

from userfm.eval.uqa.config import QuestionConfig
from userfm.eval.uqa.schema import SPLITS

__all__ = ["QuestionStats", "TaskSplitStats", "question_stats"]


@dataclass
class TaskSplitStats:
    """One sub-task in one split.

    Attributes:
        users_skipped: skip reason (`userfm.eval.uqa.generators.SkipReason`) -> users.
        candidates: questions generated before balancing.
        dropped_for_balance: candidates dropped so that no answer exceeds its share.
        dropped_no_distractors: multiple-choice questions dropped for want of distinct
            distractors (with ``format="both"`` their free-form copy stays).
        questions: questions kept (a question written in both formats counts once).
        distinct_answers: distinct gold answers (after `normalise`) of the kept candidates.
        top_answer_share: the most frequent gold answer's share of the kept candidates,
            rounded to 4 places (0.0 when none was kept).
    """

    users_skipped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    dropped_for_balance: int = 0
    dropped_no_distractors: int = 0
    questions: int = 0
    distinct_answers: int = 0
    top_answer_share: float = 0.0

    def skip(self, reason: str) -> None:
        """Count one user skipped for ``reason``."""
        self.users_skipped[reason] = self.users_skipped.get(reason, 0) + 1


@dataclass
class QuestionStats:
    """What `build_questions` skipped, dropped and kept, per sub-task and split.

    Attributes:
        seed: the builder's seed.
        config: the `QuestionConfig` the questions were built with.
        users: split -> users in it.
        questions: split -> distinct questions (``question_id``).
        records: split -> records (a question in both formats is two records).
        tasks: sub-task -> split -> `TaskSplitStats`.
    """

    seed: int
    config: QuestionConfig
    users: dict[str, int]
    questions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    tasks: dict[str, dict[str, TaskSplitStats]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the questions (`question_stats` returns it)."""
        return {
            "seed": self.seed,
            "config": self.config.to_dict(),
            "users": dict(self.users),
            "questions": dict(self.questions),
            "records": dict(self.records),
            "tasks": {
                task: {split: asdict(s) for split, s in by_split.items()}
                for task, by_split in self.tasks.items()
            },
        }

    def to_json(self) -> str:
        """`to_dict` as JSON with sorted keys: what every split's ``info.description`` holds."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuestionStats:
        """The stats of `to_dict`'s output (counts missing from older files read as 0)."""
        return cls(
            seed=int(d["seed"]),
            config=QuestionConfig.from_dict(d["config"]),
            users=dict(d["users"]),
            questions=dict(d["questions"]),
            records=dict(d["records"]),
            tasks={
                task: {split: TaskSplitStats(**s) for split, s in by_split.items()}
                for task, by_split in d["tasks"].items()
            },
        )

    @classmethod
    def of(cls, questions: datasets.DatasetDict | datasets.Dataset) -> QuestionStats | None:
        """The stats stored with ``questions``; None when they carry none."""
        d = question_stats(questions)
        return cls.from_dict(d) if d else None

    def summary(self) -> str:
        """One line: questions and users per split, then skips and drops by reason."""
        parts = [f"{s}: {self.questions[s]:,} questions of {self.users[s]:,} users" for s in SPLITS]
        skipped: Counter[str] = Counter()
        for by_split in self.tasks.values():
            for s in SPLITS:
                skipped.update(by_split[s].users_skipped)
                skipped["dropped_for_balance"] += by_split[s].dropped_for_balance
                skipped["dropped_no_distractors"] += by_split[s].dropped_no_distractors
        return "; ".join(parts) + f"; skipped/dropped: {dict(skipped)}"


def question_stats(questions: datasets.DatasetDict | datasets.Dataset) -> dict[str, Any]:
    """The stats `build_questions` stored, as a dict (`QuestionStats.to_dict`; typed:
    `QuestionStats.of`): seed, config, users, questions, records, and per sub-task and split
    ``users_skipped`` (by reason), ``candidates``, ``dropped_for_balance``,
    ``dropped_no_distractors``, ``questions``, ``distinct_answers``, ``top_answer_share``.

    Returns an empty dict for datasets that carry none (e.g. read from jsonl alone).
    """
    ds = next(iter(questions.values()), None) if isinstance(questions, dict) else questions
    text = ds.info.description if ds is not None else ""
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
