"""The seven UQA sub-task generators: one user's visible context -> questions with gold answers.

Each generator reads a `GenContext` and returns the user's `Generated` questions for its
sub-task, or the `SkipReason` why the user has none (counted in the stats, never dropped
silently). The answer definitions are those of `userfm.eval.uqa.tasks`'s module docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from userfm.eval.uqa.config import QuestionConfig
from userfm.eval.uqa.events import VisibleEvent, dominant_trajectory, ranked_values
from userfm.eval.uqa.wording import (
    LONG_TERM_SEP,
    TRAJECTORY_SEP,
    nth_recent_phrase,
    phrase_question,
)

__all__ = [
    "GENERATORS",
    "MISSING",
    "NO_DISTRACTORS",
    "TOO_FEW_DISTINCT",
    "TOO_SHORT",
    "GenContext",
    "GenOutput",
    "Generated",
    "SkipReason",
]

# Skip reasons, counted per sub-task and split (the keys of the stats' ``users_skipped``).
SkipReason = Literal[
    "history_too_short", "missing_value", "too_few_distinct_values", "no_distractors"
]
TOO_SHORT: SkipReason = "history_too_short"
MISSING: SkipReason = "missing_value"
TOO_FEW_DISTINCT: SkipReason = "too_few_distinct_values"
NO_DISTRACTORS: SkipReason = "no_distractors"


@dataclass(frozen=True)
class GenContext:
    """What a generator knows about one user.

    Attributes:
        attrs: the attribute of each visible context event, oldest first (None = missing).
        next_event: the held-out event right after the context (action prediction's answer).
        rng: the generator's own stream, seeded by (seed, sub-task, user): which n / value is
            asked and which phrasing is used.
        config: the question config (window sizes, ``top_k``, ``questions_per_user``...).
        words: the nouns of the templates (`userfm.eval.uqa.wording.noun_words`).
        values: every attribute value of the log, sorted (match_feature's absent values).
    """

    attrs: Sequence[str | None]
    next_event: VisibleEvent
    rng: np.random.Generator
    config: QuestionConfig
    words: Mapping[str, str]
    values: Sequence[str]


@dataclass(frozen=True)
class Generated:
    """One question a generator asks a user.

    Attributes:
        question: the phrased question (no answer instruction, no options).
        answer: the gold answer as text.
        params: what the question depends on (``{"n": 3}``, ``{"window": 20}``...); stored as
            JSON in the record's ``params``.
    """

    question: str
    answer: str
    params: dict[str, Any]


#: what a generator returns: its questions, or why the user has none
GenOutput = list[Generated] | SkipReason


def _direct_feature(g: GenContext) -> GenOutput:
    ctx, cfg = g.attrs, g.config
    if len(ctx) < cfg.n_recent:
        return TOO_SHORT
    ns = [n for n in range(1, cfg.n_recent + 1) if ctx[-n] is not None]
    if not ns:
        return MISSING
    chosen = g.rng.choice(ns, size=min(cfg.questions_per_user, len(ns)), replace=False)
    return [
        Generated(
            phrase_question("direct_feature", g.rng, g.words, nth=nth_recent_phrase(int(n))),
            ctx[-n],
            {"n": int(n)},
        )
        for n in chosen
    ]


def _match_feature(g: GenContext) -> GenOutput:
    cfg = g.config
    if len(g.attrs) < cfg.window:
        return TOO_SHORT
    win = g.attrs[-cfg.window :]
    present = sorted({v for v in win if v is not None})
    absent = [v for v in g.values if v not in set(present)]
    # one slot stands for "some absent value" so that 0 is a possible answer
    slots = present + ([None] if absent else [])
    if not slots:
        return MISSING
    out = []
    for s in g.rng.choice(len(slots), size=min(cfg.questions_per_user, len(slots)), replace=False):
        value = slots[s] if slots[s] is not None else absent[int(g.rng.integers(len(absent)))]
        count = sum(v == value for v in win)
        q = phrase_question("match_feature", g.rng, g.words, k=cfg.window, value=value)
        out.append(Generated(q, str(count), {"value": value, "window": cfg.window}))
    return out


def _next_item(g: GenContext) -> GenOutput:
    if len(g.attrs) < g.config.min_context:
        return TOO_SHORT
    title = g.next_event.title
    if title is None:
        return MISSING
    return [Generated(phrase_question("next_item", g.rng, g.words), str(title), {})]


def _next_attribute(g: GenContext) -> GenOutput:
    if len(g.attrs) < g.config.min_context:
        return TOO_SHORT
    if g.next_event.attribute is None:
        return MISSING
    return [
        Generated(phrase_question("next_attribute", g.rng, g.words), g.next_event.attribute, {})
    ]


def _long_term(g: GenContext) -> GenOutput:
    k = g.config.top_k
    if len(g.attrs) < g.config.min_context:
        return TOO_SHORT
    ranked = ranked_values(g.attrs)
    if len(ranked) < k:
        return TOO_FEW_DISTINCT
    answer = LONG_TERM_SEP.join(ranked[:k])
    return [Generated(phrase_question("long_term", g.rng, g.words, k=k), answer, {"top_k": k})]


def _short_term(g: GenContext) -> GenOutput:
    w = g.config.short_window
    if len(g.attrs) < w:
        return TOO_SHORT
    ranked = ranked_values(g.attrs[-w:])
    if not ranked:
        return MISSING
    return [Generated(phrase_question("short_term", g.rng, g.words, w=w), ranked[0], {"window": w})]


def _trajectory_of(g: GenContext) -> GenOutput:
    w, s = g.config.trajectory_window, g.config.trajectory_steps
    if len(g.attrs) < w * s:
        return TOO_SHORT
    path = dominant_trajectory(g.attrs, w, s)
    if path is None:
        return MISSING
    q = phrase_question("trajectory", g.rng, g.words, w=w, s=s, n=w * s)
    return [Generated(q, TRAJECTORY_SEP.join(path), {"window": w, "steps": s})]


#: sub-task -> its generator
GENERATORS: dict[str, Callable[[GenContext], GenOutput]] = {
    "direct_feature": _direct_feature,
    "match_feature": _match_feature,
    "next_item": _next_item,
    "next_attribute": _next_attribute,
    "long_term": _long_term,
    "short_term": _short_term,
    "trajectory": _trajectory_of,
}
