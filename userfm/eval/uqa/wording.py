"""How UQA questions are worded: phrasings per sub-task, answer instructions, nouns, prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from userfm.errors import ConfigError
from userfm.eval.uqa.config import QuestionConfig
from userfm.eval.uqa.schema import LETTERS

__all__ = [
    "FREE_INSTRUCTIONS",
    "LONG_TERM_SEP",
    "TEMPLATES",
    "TRAJECTORY_SEP",
    "format_multiple_choice",
]

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
#: how long_term answers join their attributes, and trajectory answers their windows
LONG_TERM_SEP = ", "
TRAJECTORY_SEP = " -> "


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def nth_recent_phrase(n: int) -> str:
    return "most recent" if n == 1 else f"{_ordinal(n)} most recent"


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def noun_words(cfg: QuestionConfig) -> dict[str, str]:
    """The nouns placeholders ``{item} {items} {attr} {attrs}`` of the templates stand for."""
    attr = cfg.attribute_noun or cfg.attribute.replace("_", " ")
    return {
        "item": cfg.item_noun,
        "items": _plural(cfg.item_noun),
        "attr": attr,
        "attrs": _plural(attr),
    }


def phrase_question(
    task: str, rng: np.random.Generator, words: Mapping[str, str], **kw: Any
) -> str:
    """One of ``task``'s phrasings, drawn with ``rng``, filled in."""
    templates = TEMPLATES[task]
    return templates[int(rng.integers(len(templates)))].format(**words, **kw)


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
