"""`QuestionConfig`: what the UQA question builder asks and how, validated on creation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from userfm.data.attributes import DEFAULT_MULTI_VALUE, MULTI_VALUES
from userfm.data.schema import CATEGORY
from userfm.errors import ConfigError, check_fields, check_int, field_error, is_number
from userfm.eval.uqa.schema import LETTERS, TASKS

__all__ = ["QuestionConfig", "resolve_config"]

# fields that must be integers >= 1 (trajectory_steps needs >= 2, num_options 2..26)
_POSITIVE_INTS = (
    "questions_per_user",
    "n_recent",
    "window",
    "short_window",
    "trajectory_window",
    "top_k",
    "min_context",
)


@dataclass(frozen=True)
class QuestionConfig:
    """What `build_questions` asks and how (validated on creation; round-trips through JSON).

    Args:
        tasks: sub-tasks to build (subset of `TASKS`, no repeats).
        format: ``"mc"`` (multiple choice), ``"free"`` or ``"both"`` (each question twice).
        num_options: options per multiple-choice question (2..26).
        max_answer_share: most any one gold answer may be of a sub-task's questions in a split,
            in (0, 1]; None = ``1 / num_options``: the largest share at which always giving
            one answer stays at chance, and at which the distractor design is exactly
            uninformative (see `userfm.eval.uqa.tasks`). 1.0 turns balancing off.
        questions_per_user: questions per user for the sub-tasks that can ask several
            different ones (direct_feature: distinct n; match_feature: distinct values); the
            others have one answer per user given the shared context, so they ask one.
        split_fractions: (train, valid, test) fractions of users, >= 0, summing to 1.
        attribute: the log column that holds the item attribute (``category``, ``year``...).
        multi_value: how a ``|``-joined value becomes one attribute: its ``"first"`` part,
            its ``"last"`` part, or the ``"joined"`` string as is.
        item_noun: what an item is called in questions (``"movie"``).
        attribute_noun: what the attribute is called (``"genre"``); None = the column name.
        n_recent: direct_feature asks about the n-th most recent item, n in 1..n_recent.
        window: match_feature counts over the last ``window`` items.
        short_window: short_term looks at the last ``short_window`` items.
        trajectory_window: items per trajectory window.
        trajectory_steps: trajectory windows (>= 2).
        top_k: attributes in a long_term answer.
        min_context: context events needed for next_item, next_attribute and long_term.
    """

    tasks: tuple[str, ...] = TASKS
    format: Literal["mc", "free", "both"] = "mc"
    num_options: int = 4
    max_answer_share: float | None = None
    questions_per_user: int = 2
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    attribute: str = CATEGORY
    multi_value: Literal["first", "last", "joined"] = DEFAULT_MULTI_VALUE
    item_noun: str = "item"
    attribute_noun: str | None = None
    n_recent: int = 10
    window: int = 20
    short_window: int = 15
    trajectory_window: int = 10
    trajectory_steps: int = 3
    top_k: int = 3
    min_context: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", _checked_tasks(self.tasks))
        if self.format not in ("mc", "free", "both"):
            raise field_error("QuestionConfig.format", self.format, "'mc', 'free' or 'both'")
        check_int("QuestionConfig.num_options", self.num_options, minimum=2, maximum=len(LETTERS))
        if self.max_answer_share is not None and (
            not is_number(self.max_answer_share) or not 0 < self.max_answer_share <= 1
        ):
            raise field_error(
                "QuestionConfig.max_answer_share",
                self.max_answer_share,
                "a number in (0, 1] or None",
            )
        for name in _POSITIVE_INTS:
            check_int(f"QuestionConfig.{name}", getattr(self, name), minimum=1)
        check_int("QuestionConfig.trajectory_steps", self.trajectory_steps, minimum=2)
        fractions = _checked_split_fractions(self.split_fractions)
        object.__setattr__(self, "split_fractions", fractions)
        self._check_attribute_and_nouns()

    def _check_attribute_and_nouns(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise field_error("QuestionConfig.attribute", self.attribute, "a non-empty column name")
        if self.multi_value not in MULTI_VALUES:
            raise field_error(
                "QuestionConfig.multi_value", self.multi_value, f"one of {list(MULTI_VALUES)}"
            )
        if not isinstance(self.item_noun, str) or not self.item_noun.strip():
            raise field_error("QuestionConfig.item_noun", self.item_noun, "a non-empty string")
        if self.attribute_noun is not None and (
            not isinstance(self.attribute_noun, str) or not self.attribute_noun.strip()
        ):
            raise field_error(
                "QuestionConfig.attribute_noun", self.attribute_noun, "a non-empty string or None"
            )

    @property
    def answer_share(self) -> float:
        """The effective `max_answer_share`."""
        return self.max_answer_share if self.max_answer_share is not None else 1 / self.num_options

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats each question is written in: ``("mc",)``, ``("free",)`` or both."""
        return ("mc", "free") if self.format == "both" else (self.format,)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists), in field order."""
        d = asdict(self)
        d["tasks"], d["split_fractions"] = list(self.tasks), list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuestionConfig:
        """The config of `to_dict`'s output (ConfigError naming unknown fields)."""
        _check_known(d)
        return cls(**d)


def resolve_config(config: QuestionConfig | None, overrides: Mapping[str, Any]) -> QuestionConfig:
    """``config`` (default ``QuestionConfig()``) with the fields in ``overrides`` replaced.

    Raises:
        ConfigError: ``config`` is not a `QuestionConfig`, an override names no field, or a
            replaced field is invalid (named).
    """
    if config is None:
        return QuestionConfig.from_dict(dict(overrides))
    if not isinstance(config, QuestionConfig):
        raise ConfigError(f"config must be a QuestionConfig, got {type(config).__name__}")
    if overrides:
        _check_known(overrides)
        config = replace(config, **overrides)
    return config


def _check_known(d: Mapping[str, Any]) -> None:
    check_fields("questions", d, (f.name for f in fields(QuestionConfig)), "QuestionConfig")


def _checked_tasks(tasks: object) -> tuple[str, ...]:
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise field_error("QuestionConfig.tasks", tasks, f"a list of sub-tasks among {list(TASKS)}")
    out = tuple(tasks)
    unknown = [t for t in out if t not in TASKS]
    if not out or unknown or len(set(out)) != len(out):
        raise field_error(
            "QuestionConfig.tasks",
            out,
            f"a non-empty list of distinct sub-tasks among {list(TASKS)}",
        )
    return out


def _checked_split_fractions(fr: object) -> tuple[float, float, float]:
    if (
        isinstance(fr, str)
        or not isinstance(fr, Sequence)
        or len(fr) != 3
        or not all(is_number(x) and x >= 0 for x in fr)
        or abs(sum(fr) - 1) > 1e-6
    ):
        raise field_error(
            "QuestionConfig.split_fractions",
            fr,
            "three numbers >= 0 (train, valid, test) summing to 1",
        )
    train, valid, test = (float(x) for x in fr)
    return train, valid, test
