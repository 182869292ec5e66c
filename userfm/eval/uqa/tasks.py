"""UQABench-style personalised questions built from any event log with item attributes.

Seven sub-tasks in three dimensions (UQABench, Liu et al. 2025), each answered from one user's
history. ``attr`` is the configured item attribute (default: the first category of an item).

======================  ==============  =========================================================
dimension               sub-task        question -> gold answer
======================  ==============  =========================================================
sequence_understanding  direct_feature  attr of the n-th most recent item (n in 1..n_recent)
                        match_feature   how many of the last ``window`` items had attr = v
                                        (a number; v is a value present in that window, or,
                                        in one case out of (values present + 1), an absent one)
action_prediction       next_item       title of the held-out next item
                        next_attribute  attr of the held-out next item
interest_perception     long_term       the ``top_k`` most frequent attrs of the whole context,
                                        most frequent first: ``"Drama, Comedy, Action"``
                        short_term      the most frequent attr of the last ``short_window`` items
                        trajectory      the most frequent attr of each of the last
                                        ``trajectory_steps`` windows of ``trajectory_window``
                                        items, oldest first: ``"Drama -> Comedy -> Thriller"``
======================  ==============  =========================================================

**Context.** A user with L events is asked about the event right after ``context_end = L - 1``
(the most recent event is held out): the model may see events ``[0, context_end)`` only. Every
sub-task of a user shares that context, so one user representation answers all of them; the
understanding and interest answers are computed from the context alone.

**Attribute.** ``QuestionConfig.attribute`` names a log column (default ``category``;
MovieLens also has ``year``). An item has several categories (``"Comedy|Drama"``); its
attribute is the first of them by default (``multi_value="first"``; ``"last"`` or
``"joined"`` for the whole string). We take one value so that every question has exactly one
gold answer. Note that MovieLens lists genres in a fixed alphabetical order, so "first" is the
alphabetically first genre of the movie (``Action|Adventure|Drama`` -> ``Action``).
Missing / empty values are missing attributes, never counted as a value. The value is
`userfm.data.attributes.attribute_value`, the definition the history text
(`userfm.data.history_text`) writes in brackets too, so that the answers of the sub-tasks in
`READABLE_TASKS` can be read from the text the model sees.

**Ties** (most frequent attr): the value whose latest occurrence is more recent wins, which is
deterministic (each position holds one value) and reads as "the more current interest".

**Priors must not answer the questions.** On MovieLens, "favourite genre" is Drama for most
users, so a model that always says Drama scored far above chance. Two defences, per sub-task
and split:

1. *Balance*: users are subsampled (seeded) so that no gold answer is more than
   ``max_answer_share`` of the sub-task's questions (default ``1 / num_options``; raised to
   ``1 / distinct answers`` when there are fewer distinct answers than that allows). The cap
   is the largest M with ``M <= share * sum_v min(n_v, M)``; values with more than M
   questions keep a random M. Dropped questions are counted in the stats.
2. *Distractors* are other users' real gold answers of the same sub-task and split (after
   balancing; the whole sub-task's pool when the split has fewer than ``num_options``
   distinct ones), distinct, never equal to the gold (after `normalise`). Each value's
   chance of being an option is proportional to how often it is a gold answer: option sets
   follow a sampling design with inclusion probabilities ``num_options * share_v``,
   conditioned on containing the gold (`_Pool.distractors`). Then, given the options, each
   one is equally likely to be right, so no answer prior beats ``1 / num_options`` in
   expectation; this is exact when every share is <= ``1 / num_options``, which is why that
   is the default cap. `prior_only_accuracy` measures it and the tests bound it.

**Splits.** Users (not events) are split by seed into train / valid / test
(``split_fractions``), so test users are unseen when an adapter is trained.

Users whose history is too short for a sub-task (or whose needed attribute is missing) are
skipped for that sub-task and counted by reason in the stats (`question_stats`), never dropped
silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np

from userfm.data.attributes import DEFAULT_MULTI_VALUE, MULTI_VALUES, attribute_value
from userfm.data.jsonl import read_jsonl
from userfm.data.log import EventLog
from userfm.data.schema import CATEGORY, ITEM, TITLE
from userfm.errors import ConfigError, DataError, check_int, field_error, is_number
from userfm.eval.uqa.schema import (
    LETTERS,
    RECORD_FEATURES,
    RECORD_FIELDS,
    SPLITS,
    TASK_DIMENSION,
    TASKS,
)
from userfm.eval.uqa.scoring import normalise

__all__ = [
    "READABLE_TASKS",
    "QuestionConfig",
    "VisibleEvent",
    "balance_cap",
    "build_questions",
    "format_multiple_choice",
    "load_questions",
    "question_stats",
    "save_questions",
    "split_users",
]

logger = logging.getLogger("userfm.eval")

# Sub-tasks whose gold answer is computed from the visible context alone, so it can be read
# from the history text (`userfm.data.history_text`); tests/eval/uqa/test_readable.py checks
# it. next_item / next_attribute ask about the held-out next event, which no text shows.
READABLE_TASKS = ("direct_feature", "match_feature", "long_term", "short_term", "trajectory")

# Skip reasons, counted per sub-task and split.
TOO_SHORT = "history_too_short"
MISSING = "missing_value"
TOO_FEW_DISTINCT = "too_few_distinct_values"
NO_DISTRACTORS = "no_distractors"

# Phrasings: one is drawn per question. Placeholders: {item} {items} {attr} {attrs} {nth} {k}
# {value} {w} {s}.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "direct_feature": (
        "What {attr} was the {nth} {item} of this user?",
        "Which {attr} did the user's {nth} {item} have?",
        "Looking at the user's history, what is the {attr} of their {nth} {item}?",
    ),
    "match_feature": (
        "How many of the last {k} {items} of this user had {attr} {value}?",
        "Among the user's {k} most recent {items}, how many had {attr} {value}?",
        "Count the {items} with {attr} {value} among this user's last {k} {items}.",
    ),
    "next_item": (
        "Which {item} will this user interact with next?",
        "What is the title of the next {item} the user will choose?",
        "Predict the next {item} this user will engage with.",
    ),
    "next_attribute": (
        "What {attr} will the user's next {item} have?",
        "Which {attr} does the next {item} this user interacts with belong to?",
        "Predict the {attr} of this user's next {item}.",
    ),
    "long_term": (
        "What are this user's top {k} {attrs} over their whole history, most frequent first?",
        "List the user's {k} favourite {attrs} overall, from most to least frequent.",
        "Over the entire history, which {k} {attrs} does this user engage with most, in order?",
    ),
    "short_term": (
        "Which {attr} dominates the user's last {w} {items}?",
        "What {attr} has this user been most interested in over their {w} most recent {items}?",
        "Recently (last {w} {items}), which {attr} does the user engage with most?",
    ),
    "trajectory": (
        "Split the user's last {n} {items} into {s} windows of {w}: what is the most frequent "
        "{attr} of each window, oldest first?",
        "How did the user's dominant {attr} change across their last {s} windows of {w} {items}, "
        "from oldest to newest?",
        "Describe the user's interest trajectory: the top {attr} in each of their last {s} "
        "blocks of {w} {items}, oldest first.",
    ),
}
# Free-form answer instructions (appended to the question in ``prompt``).
FREE_INSTRUCTIONS: dict[str, str] = {
    "direct_feature": "Answer with the {attr} only.",
    "match_feature": "Answer with a number only.",
    "next_item": "Answer with the title of the {item} only.",
    "next_attribute": "Answer with the {attr} only.",
    "long_term": "Answer with {k} {attrs} separated by commas, most frequent first.",
    "short_term": "Answer with the {attr} only.",
    "trajectory": "Answer with one {attr} per window, oldest first, joined by ' -> '.",
}
LONG_TERM_SEP = ", "
TRAJECTORY_SEP = " -> "


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
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
            uninformative (see the module docstring). 1.0 turns balancing off.
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
        if isinstance(self.tasks, str) or not isinstance(self.tasks, Sequence):
            raise field_error(
                "QuestionConfig.tasks", self.tasks, f"a list of sub-tasks among {list(TASKS)}"
            )
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or unknown or len(set(self.tasks)) != len(self.tasks):
            raise field_error(
                "QuestionConfig.tasks",
                self.tasks,
                f"a non-empty list of distinct sub-tasks among {list(TASKS)}",
            )
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
        for name in (
            "questions_per_user",
            "n_recent",
            "window",
            "short_window",
            "trajectory_window",
            "top_k",
            "min_context",
        ):
            check_int(f"QuestionConfig.{name}", getattr(self, name), minimum=1)
        check_int("QuestionConfig.trajectory_steps", self.trajectory_steps, minimum=2)
        fr = self.split_fractions
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
        object.__setattr__(self, "split_fractions", tuple(float(x) for x in fr))
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
        return ("mc", "free") if self.format == "both" else (self.format,)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"], d["split_fractions"] = list(self.tasks), list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuestionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown QuestionConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**d)


def _resolve_config(config: QuestionConfig | None, overrides: Mapping[str, Any]) -> QuestionConfig:
    if config is None:
        return QuestionConfig.from_dict(dict(overrides))
    if not isinstance(config, QuestionConfig):
        raise ConfigError(f"config must be a QuestionConfig, got {type(config).__name__}")
    if overrides:
        known = {f.name for f in fields(QuestionConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown QuestionConfig fields: {unknown}; known: {sorted(known)}")
        config = replace(config, **overrides)
    return config


# ---------------------------------------------------------------------------------------------
# Wording helpers
# ---------------------------------------------------------------------------------------------
def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _nth_recent(n: int) -> str:
    return "most recent" if n == 1 else f"{_ordinal(n)} most recent"


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def _words(cfg: QuestionConfig) -> dict[str, str]:
    attr = cfg.attribute_noun or cfg.attribute.replace("_", " ")
    return {
        "item": cfg.item_noun,
        "items": _plural(cfg.item_noun),
        "attr": attr,
        "attrs": _plural(attr),
    }


def format_multiple_choice(question: str, options: Sequence[str]) -> str:
    """Render a multiple-choice prompt: the question, lettered options, an instruction.

    Example:
        >>> print(format_multiple_choice("Which genre?", ["Drama", "Comedy"]))
        Which genre?
        A. Drama
        B. Comedy
        Answer with the letter of the correct option (A or B).

    Raises:
        ConfigError: fewer than 2 or more than 26 options.
    """
    if not 2 <= len(options) <= len(LETTERS):
        raise ConfigError(f"a multiple-choice question needs 2..26 options, got {len(options)}")
    letters = LETTERS[: len(options)]
    lines = [question, *(f"{letter}. {opt}" for letter, opt in zip(letters, options))]
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    lines.append(f"Answer with the letter of the correct option ({listed}).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Events as the question builder sees them
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisibleEvent:
    """One event of a user's visible context, as the direct-answer baseline reads it.

    Attributes:
        item: item id.
        title: item title (the item id when the log has no titles; None when missing).
        attribute: the configured attribute value (None when missing).
    """

    item: str
    title: str | None
    attribute: str | None


class _Events:
    """Per-event item ids, titles and attributes of a log, aligned with its sorted rows."""

    def __init__(self, log: EventLog, cfg: QuestionConfig):
        if not log.has(cfg.attribute):
            raise ConfigError(
                f"QuestionConfig.attribute is {cfg.attribute!r}, but the log has no such column; "
                f"its columns are {log.columns}"
            )
        table = log.dataset.data.table
        self.items = table.column(ITEM).to_numpy(zero_copy_only=False).astype(object)
        self.attrs = _attribute_values(table.column(cfg.attribute).to_pylist(), cfg.multi_value)
        self.has_titles = log.has(TITLE)
        if self.has_titles:
            self.titles = _attribute_values(table.column(TITLE).to_pylist(), "joined")
        else:  # documented: the item id stands in for the title
            self.titles = self.items
        self.offsets = log.offsets
        self.user_ids = [str(u) for u in log.user_ids]
        self.index = {u: i for i, u in enumerate(self.user_ids)}
        self.values = sorted({v for v in self.attrs if v is not None})  # the log's values

    def span(self, u: int) -> tuple[int, int]:
        return int(self.offsets[u]), int(self.offsets[u + 1])

    def visible(self, u: int, context_end: int) -> list[VisibleEvent]:
        a, b = self.span(u)
        if not 0 <= context_end <= b - a:
            raise DataError(
                f"context_end {context_end} is outside user {self.user_ids[u]!r}'s {b - a} events",
                column="context_end",
            )
        return [
            VisibleEvent(str(self.items[i]), self.titles[i], self.attrs[i])
            for i in range(a, a + context_end)
        ]


def _attribute_values(raw: Sequence[object], multi_value: str) -> np.ndarray:
    """(N,) object array: the configured single attribute value per event, None if missing
    (`attribute_value`, shared with the history text)."""
    out = np.empty(len(raw), dtype=object)
    for i, v in enumerate(raw):
        out[i] = attribute_value(v, multi_value)
    return out


def _ranked(values: Iterable[str | None]) -> list[str]:
    """Distinct non-missing values by descending count; ties: the latest occurrence first."""
    count: Counter[str] = Counter()
    last: dict[str, int] = {}
    for i, v in enumerate(values):
        if v is not None:
            count[v] += 1
            last[v] = i
    return sorted(count, key=lambda v: (-count[v], -last[v]))


# ---------------------------------------------------------------------------------------------
# Sub-task generators: (context attrs, next event, rng) -> [(question, answer, params)] | reason
# ---------------------------------------------------------------------------------------------
_Item = tuple[str, str, dict[str, Any]]


def _phrase(task: str, rng: np.random.Generator, words: Mapping[str, str], **kw: Any) -> str:
    templates = TEMPLATES[task]
    return templates[int(rng.integers(len(templates)))].format(**words, **kw)


def _gen_direct_feature(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.n_recent:
        return TOO_SHORT
    ns = [n for n in range(1, cfg.n_recent + 1) if ctx[-n] is not None]
    if not ns:
        return MISSING
    chosen = rng.choice(ns, size=min(cfg.questions_per_user, len(ns)), replace=False)
    return [
        (_phrase("direct_feature", rng, words, nth=_nth_recent(int(n))), ctx[-n], {"n": int(n)})
        for n in chosen
    ]


def _gen_match_feature(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.window:
        return TOO_SHORT
    win = ctx[-cfg.window :]
    present = sorted({v for v in win if v is not None})
    absent = [v for v in values if v not in set(present)]
    # one slot stands for "some absent value" so that 0 is a possible answer
    slots = present + ([None] if absent else [])
    if not slots:
        return MISSING
    out = []
    for s in rng.choice(len(slots), size=min(cfg.questions_per_user, len(slots)), replace=False):
        value = slots[s] if slots[s] is not None else absent[int(rng.integers(len(absent)))]
        count = sum(v == value for v in win)
        q = _phrase("match_feature", rng, words, k=cfg.window, value=value)
        out.append((q, str(count), {"value": value, "window": cfg.window}))
    return out


def _gen_next_item(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.min_context:
        return TOO_SHORT
    title = nxt.title
    if title is None:
        return MISSING
    return [(_phrase("next_item", rng, words), str(title), {})]


def _gen_next_attribute(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.min_context:
        return TOO_SHORT
    if nxt.attribute is None:
        return MISSING
    return [(_phrase("next_attribute", rng, words), nxt.attribute, {})]


def _gen_long_term(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.min_context:
        return TOO_SHORT
    ranked = _ranked(ctx)
    if len(ranked) < cfg.top_k:
        return TOO_FEW_DISTINCT
    answer = LONG_TERM_SEP.join(ranked[: cfg.top_k])
    return [(_phrase("long_term", rng, words, k=cfg.top_k), answer, {"top_k": cfg.top_k})]


def _gen_short_term(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    if len(ctx) < cfg.short_window:
        return TOO_SHORT
    ranked = _ranked(ctx[-cfg.short_window :])
    if not ranked:
        return MISSING
    q = _phrase("short_term", rng, words, w=cfg.short_window)
    return [(q, ranked[0], {"window": cfg.short_window})]


def _trajectory(ctx: Sequence[str | None], window: int, steps: int) -> list[str] | None:
    """Dominant value of each of the last ``steps`` windows (oldest first); None if one is empty."""
    tail = list(ctx[len(ctx) - window * steps :])
    out = []
    for s in range(steps):
        ranked = _ranked(tail[s * window : (s + 1) * window])
        if not ranked:
            return None
        out.append(ranked[0])
    return out


def _gen_trajectory(ctx, nxt, rng, cfg, words, values) -> list[_Item] | str:
    w, s = cfg.trajectory_window, cfg.trajectory_steps
    if len(ctx) < w * s:
        return TOO_SHORT
    path = _trajectory(ctx, w, s)
    if path is None:
        return MISSING
    q = _phrase("trajectory", rng, words, w=w, s=s, n=w * s)
    return [(q, TRAJECTORY_SEP.join(path), {"window": w, "steps": s})]


_GENERATORS: dict[str, Callable[..., list[_Item] | str]] = {
    "direct_feature": _gen_direct_feature,
    "match_feature": _gen_match_feature,
    "next_item": _gen_next_item,
    "next_attribute": _gen_next_attribute,
    "long_term": _gen_long_term,
    "short_term": _gen_short_term,
    "trajectory": _gen_trajectory,
}


# ---------------------------------------------------------------------------------------------
# Splits, balance, distractors
# ---------------------------------------------------------------------------------------------
def split_users(
    user_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> dict[str, list[str]]:
    """Split users at random (by seed) into train / valid / test.

    Args:
        user_ids: distinct user ids.
        fractions: (train, valid, test) shares, >= 0, summing to 1; split sizes are the
            rounded cumulative shares, so they add up to the number of users.
        seed: random seed.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``, each in the input order.
    """
    QuestionConfig(split_fractions=tuple(fractions))  # validates, naming the field
    users = [str(u) for u in user_ids]
    n = len(users)
    perm = np.random.default_rng([seed, 0x5A17]).permutation(n)
    bounds = np.rint(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    split_of = np.empty(n, dtype=object)
    for name, lo, hi in zip(SPLITS, np.r_[0, bounds[:-1]], bounds):
        split_of[perm[lo:hi]] = name
    return {name: [u for u, s in zip(users, split_of) if s == name] for name in SPLITS}


def balance_cap(counts: Sequence[int], share: float) -> int:
    """The largest M with ``M <= share' * sum_v min(n_v, M)``, ``share' = max(share, 1/len)``.

    Keeping at most M questions per gold value then leaves no value above ``share'`` of the
    kept questions.
    """
    c = np.asarray(counts, dtype=np.int64)
    if len(c) == 0:
        return 0
    share = max(share, 1.0 / len(c))
    lo, hi = 0, int(c.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid <= share * np.minimum(c, mid).sum() + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _balance(keys: Sequence[str], share: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool mask of the questions kept so that no key exceeds its share."""
    keep = np.ones(len(keys), dtype=bool)
    if not len(keys) or share >= 1:
        return keep
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    cap = balance_cap([len(g) for g in groups.values()], share)
    for k in sorted(groups):
        g = groups[k]
        if len(g) > cap:
            keep[g] = False
            keep[np.sort(rng.choice(g, size=cap, replace=False))] = True
    return keep


class _Pool:
    """Gold answers of one sub-task (keyed by `normalise`) with their counts."""

    def __init__(self, answers: Iterable[str]):
        self.text: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for a in answers:
            k = normalise(a)
            self.text.setdefault(k, a)
            counts[k] += 1
        self.keys = sorted(counts)
        self.pos = {k: i for i, k in enumerate(self.keys)}
        self.counts = np.asarray([counts[k] for k in self.keys], dtype=np.float64)
        self._pi: dict[int, np.ndarray] = {}

    def distractors(self, gold: str, m: int, rng: np.random.Generator) -> list[str] | None:
        """``m`` distinct other answers such that the option set says nothing about the gold.

        Option sets follow a fixed-size sampling design whose inclusion probabilities are
        ``pi_v = n q_v`` (n = m + 1 options, q = this pool's answer shares), conditioned on
        containing the gold g: P(S | g) = P(S) / pi_g. Then P(S, gold = v) = q_v P(S) / (n q_v)
        = P(S) / n for every v in S: given the options, each is equally likely to be right, so
        no answer prior beats 1/n. That needs q_v <= 1/n, which balancing guarantees by
        default; above it pi is clipped to 1 (the value is then always an option). The design
        is systematic pi-ps sampling (Madow 1949) over a random order of the values.
        """
        n = m + 1
        g = self.pos.get(normalise(gold))
        if g is None or len(self.keys) < n:
            return None
        pi = self._inclusion(n)
        for _ in range(8):  # a retry only guards against float ties at interval ends
            order = rng.permutation(len(self.keys))
            cum = np.cumsum(pi[order])
            cum[-1] = n
            k = int(np.flatnonzero(order == g)[0])
            lo = cum[k - 1] if k else 0.0
            t = rng.uniform(lo, cum[k])  # the point that selects g
            points = (t - np.floor(t)) + np.arange(n)
            idx = np.minimum(np.searchsorted(cum, points, side="right"), len(order) - 1)
            idx[int(np.floor(t))] = k
            chosen = order[idx]
            if len(set(chosen.tolist())) == n:
                return [self.text[self.keys[i]] for i in chosen if i != g]
        return None

    def _inclusion(self, n: int) -> np.ndarray:
        """Inclusion probabilities ``min(1, c * count)`` summing to ``n`` (clipped iteratively)."""
        if n not in self._pi:
            fixed = np.zeros(len(self.counts), dtype=bool)
            while True:
                w = np.where(fixed, 0.0, self.counts)
                pi = np.where(fixed, 1.0, (n - fixed.sum()) * w / w.sum())
                over = (pi > 1 + 1e-12) & ~fixed
                if not over.any():
                    break
                fixed |= over
            self._pi[n] = np.minimum(pi, 1.0)
        return self._pi[n]


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    user_index: int
    user: str
    split: str
    j: int
    question: str
    answer: str
    params: dict[str, Any]
    context_end: int


def build_questions(
    log: EventLog,
    *,
    seed: int = 0,
    config: QuestionConfig | None = None,
    **overrides: Any,
) -> datasets.DatasetDict:
    """Build UQABench-style questions for every user of ``log``, split by user.

    Args:
        log: an event log with the configured attribute column (and ``title`` for next_item;
            without titles, item ids are the answers).
        seed: everything random (splits, which n / value is asked, phrasings, balancing,
            distractors, option order) is derived from it; equal inputs give equal outputs.
        config: a `QuestionConfig` (default: ``QuestionConfig()``).
        **overrides: `QuestionConfig` fields that replace the config's (``num_options=5``).

    Returns:
        ``DatasetDict`` with ``train``, ``valid`` and ``test`` splits of question records
        (fields: `userfm.eval.uqa.schema`), ordered by user, then sub-task. What was skipped,
        dropped or kept is in `question_stats` of the result (stored in every split's
        ``info.description``).

    Raises:
        ConfigError: a bad config field (named), or an attribute column the log lacks.
    """
    cfg = _resolve_config(config, overrides)
    check_int("seed", seed, minimum=0)
    ev = _Events(log, cfg)
    words = _words(cfg)
    splits = split_users(ev.user_ids, cfg.split_fractions, seed=seed)
    split_of = {u: s for s, us in splits.items() for u in us}
    lengths = np.diff(ev.offsets)
    stats: dict[str, Any] = {
        "seed": seed,
        "config": cfg.to_dict(),
        "users": {s: len(splits[s]) for s in SPLITS},
        "questions": {s: 0 for s in SPLITS},
        "records": {s: 0 for s in SPLITS},
        "tasks": {},
    }
    records: dict[str, list[tuple[tuple[int, int, int, int], dict[str, Any]]]] = {
        s: [] for s in SPLITS
    }
    tstats = {
        task: {s: {"users_skipped": {}, "candidates": 0, "dropped_for_balance": 0} for s in SPLITS}
        for task in cfg.tasks
    }
    cands: dict[str, dict[str, list[_Candidate]]] = {
        task: {s: [] for s in SPLITS} for task in cfg.tasks
    }
    for u, user in enumerate(ev.user_ids):
        split = split_of[user]
        context_end = int(lengths[u]) - 1
        events = ev.visible(u, context_end + 1) if context_end >= 1 else []
        ctx = [e.attribute for e in events[:-1]]
        for ti, task in enumerate(cfg.tasks):
            if context_end < 1:
                out: list[_Item] | str = TOO_SHORT
            else:
                rng = np.random.default_rng([seed, ti, u])
                out = _GENERATORS[task](ctx, events[-1], rng, cfg, words, ev.values)
            if isinstance(out, str):
                skipped = tstats[task][split]["users_skipped"]
                skipped[out] = skipped.get(out, 0) + 1
                continue
            for j, (q, a, p) in enumerate(out):
                cands[task][split].append(_Candidate(u, user, split, j, q, a, p, context_end))
    for ti, task in enumerate(cfg.tasks):
        # balance each split on its own, so that each split's gold distribution is capped
        kept: dict[str, list[_Candidate]] = {}
        for si, split in enumerate(SPLITS):
            cs = cands[task][split]
            keys = [normalise(c.answer) for c in cs]
            mask = _balance(keys, cfg.answer_share, np.random.default_rng([seed, ti, si, 1]))
            kept[split] = [c for c, k in zip(cs, mask) if k]
            tstats[task][split]["candidates"] = len(cs)
            tstats[task][split]["dropped_for_balance"] = int((~mask).sum())
        whole = _Pool(c.answer for s in SPLITS for c in kept[s])
        for si, split in enumerate(SPLITS):
            pool = _Pool(c.answer for c in kept[split])
            rng = np.random.default_rng([seed, ti, si, 2])
            n_questions, no_distractors = 0, 0
            for c in kept[split]:
                formats = cfg.formats
                options: list[str] | None = None
                if "mc" in formats:
                    m = cfg.num_options - 1
                    picked = pool.distractors(c.answer, m, rng)
                    if picked is None:  # too few distinct answers in this split: whole pool
                        picked = whole.distractors(c.answer, m, rng)
                    if picked is None:  # counted; with format="both" the free copy stays
                        no_distractors += 1
                        formats = tuple(f for f in formats if f != "mc")
                    else:
                        options = [c.answer, *picked]
                        options = [options[i] for i in rng.permutation(len(options))]
                if not formats:
                    continue
                n_questions += 1
                for fmt in formats:
                    fi = cfg.formats.index(fmt)
                    rec = _record(task, c, fmt, options if fmt == "mc" else None, cfg, words)
                    records[split].append(((c.user_index, ti, c.j, fi), rec))
            answers = Counter(normalise(c.answer) for c in kept[split])
            tstats[task][split].update(
                dropped_no_distractors=no_distractors,
                questions=n_questions,
                distinct_answers=len(answers),
                top_answer_share=(
                    round(max(answers.values()) / sum(answers.values()), 4) if answers else 0.0
                ),
            )
        stats["tasks"][task] = tstats[task]
    rows_of = {}
    for split in SPLITS:
        rows = [r for _, r in sorted(records[split], key=lambda x: x[0])]
        stats["records"][split] = len(rows)
        stats["questions"][split] = len({r["question_id"] for r in rows})
        rows_of[split] = rows
    description = json.dumps(stats, sort_keys=True)
    dd = datasets.DatasetDict({s: _dataset(rows_of[s], description) for s in SPLITS})
    logger.info("uqa questions: %s", _summary(stats))
    return dd


def _record(
    task: str,
    c: _Candidate,
    fmt: str,
    options: list[str] | None,
    cfg: QuestionConfig,
    words: Mapping[str, str],
) -> dict[str, Any]:
    if fmt == "mc":
        assert options is not None
        prompt = format_multiple_choice(c.question, options)
        letter: str | None = LETTERS[options.index(c.answer)]
    else:
        prompt = f"{c.question}\n" + FREE_INSTRUCTIONS[task].format(**words, k=cfg.top_k)
        letter, options = None, []
    return {
        "question_id": f"{task}/{c.user}/{c.j}",
        "user_id": c.user,
        "task": task,
        "dimension": TASK_DIMENSION[task],
        "format": fmt,
        "question": c.question,
        "prompt": prompt,
        "answer": c.answer,
        "options": options,
        "answer_letter": letter,
        "context_end": c.context_end,
        "params": json.dumps(c.params, sort_keys=True),
    }


def _dataset(rows: list[dict[str, Any]], description: str = "") -> datasets.Dataset:
    # from_dict (not from_list) so that an empty split still gets its columns
    columns = {k: [r[k] for r in rows] for k in RECORD_FIELDS}
    info = datasets.DatasetInfo(description=description, features=RECORD_FEATURES)
    return datasets.Dataset.from_dict(columns, features=RECORD_FEATURES, info=info)


def _summary(stats: Mapping[str, Any]) -> str:
    parts = [
        f"{s}: {stats['questions'][s]:,} questions of {stats['users'][s]:,} users" for s in SPLITS
    ]
    skipped = Counter()
    for tstats in stats["tasks"].values():
        for s in SPLITS:
            skipped.update(tstats[s]["users_skipped"])
            skipped["dropped_for_balance"] += tstats[s]["dropped_for_balance"]
            skipped["dropped_no_distractors"] += tstats[s].get("dropped_no_distractors", 0)
    return "; ".join(parts) + f"; skipped/dropped: {dict(skipped)}"


def question_stats(questions: datasets.DatasetDict | datasets.Dataset) -> dict[str, Any]:
    """The stats `build_questions` stored: config, users, questions, per sub-task and split
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


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------
def save_questions(
    questions: datasets.DatasetDict,
    out_dir: str | os.PathLike,
    config: QuestionConfig | None = None,
) -> Path:
    """Write ``{split}.jsonl`` per split, the dataset (``dataset/``, `save_to_disk`),
    ``stats.json`` and ``manifest.json`` (splits, and the builder's config when given).

    Args:
        questions: what `build_questions` returned (any splits).
        out_dir: folder to write into (created).
        config: the `QuestionConfig` they were built with (read back by
            `load_question_config`, e.g. for the direct-computation baseline).

    Returns:
        The folder (written beside it and moved in when complete: `staged_output_dir`).
    """
    from userfm.outputs import staged_output_dir

    with staged_output_dir(out_dir) as out:
        for split, ds in questions.items():
            with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for row in ds:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        # datasets cannot load an empty saved split back, so those are listed in manifest.json
        nonempty = {s: ds for s, ds in questions.items() if len(ds)}
        if nonempty:
            datasets.DatasetDict(nonempty).save_to_disk(str(out / "dataset"))
        manifest = {"splits": list(questions), "empty": [s for s in questions if s not in nonempty]}
        if config is not None:
            manifest["question_config"] = config.to_dict()
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (out / "stats.json").write_text(json.dumps(question_stats(questions), indent=2) + "\n")
    return Path(out_dir)


def load_questions(
    path: str | os.PathLike | Sequence[str | os.PathLike],
) -> datasets.DatasetDict:
    """Read questions written by `save_questions` (or any such jsonl).

    Args:
        path: a folder written by `save_questions` (its saved dataset is read; without one,
            its ``*.jsonl``), a folder saved with ``DatasetDict.save_to_disk``, one ``.jsonl``
            file, or a list of them (split name = file stem).

    Returns:
        ``DatasetDict`` of question records.

    Raises:
        FileNotFoundError: nothing readable at ``path``.
        FileFormatError: a jsonl line is not a JSON object (names ``file:line``).
        DataError: a record lacks a question field (names the field and ``file:line``).
    """
    if not isinstance(path, (str, os.PathLike)):
        files = [Path(p) for p in path]
        return datasets.DatasetDict({p.stem: _read_jsonl(p) for p in files})
    p = Path(path).expanduser()
    if p.is_file():
        return datasets.DatasetDict({p.stem: _read_jsonl(p)})
    if not p.is_dir():
        raise FileNotFoundError(2, f"no questions at {p}", str(p))
    manifest = _read_manifest(p)
    for folder in (p, p / "dataset"):
        if (folder / "dataset_dict.json").is_file():
            dd = datasets.load_from_disk(str(folder))
            description = next(iter(dd.values())).info.description if len(dd) else ""
            order = manifest.get("splits", list(dd))
            return datasets.DatasetDict(
                {s: dd[s] if s in dd else _dataset([], description) for s in order}
            )
    files = sorted(p.glob("*.jsonl"), key=lambda f: (_split_rank(f.stem), f.stem))
    if not files:
        raise FileNotFoundError(
            2, f"{p} holds neither a saved dataset (dataset_dict.json) nor *.jsonl files", str(p)
        )
    dd = datasets.DatasetDict({f.stem: _read_jsonl(f) for f in files})
    stats_file = p / "stats.json"
    if stats_file.is_file():
        description = stats_file.read_text()
        dd = datasets.DatasetDict({s: _dataset(list(ds), description) for s, ds in dd.items()})
    return dd


def load_question_config(folder: str | os.PathLike) -> QuestionConfig:
    """The `QuestionConfig` recorded by `save_questions` in ``folder`` (the default config
    when none was recorded)."""
    recorded = _read_manifest(Path(folder).expanduser()).get("question_config")
    return QuestionConfig.from_dict(recorded) if recorded else QuestionConfig()


def _read_manifest(folder: Path) -> dict[str, Any]:
    f = folder / "manifest.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _split_rank(name: str) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)


def _read_jsonl(path: Path) -> datasets.Dataset:
    rows = []
    for rec in read_jsonl(path):
        missing = [k for k in RECORD_FIELDS if k not in rec.value]
        if missing:
            raise DataError(f"{rec.where} lacks the question field(s) {missing}", column=missing[0])
        rows.append({k: rec.value[k] for k in RECORD_FIELDS})
    return _dataset(rows)
