"""A user's history written as text: the text-prompt baseline (`userfm.adapters` "text" mode,
the UQA evaluation and the adapter efficiency benchmark).

One line per event, most recent first (so that truncating to a token budget keeps the
recent past): ``- <title> [<attribute>] (<action>, <date>)``, with the parts the log has.

The bracketed part is the item's attribute as `userfm.data.attributes.attribute_value`
defines it (by default the first of its ``|``-joined categories: MovieLens'
``Action|Adventure|Drama`` is written ``[Action]``), the very definition the UQA question
builder (`userfm.eval.uqa.tasks`) uses. Questions and text share it so that every question
about the history is answerable from the text the model reads; showing the joined string
would let a question ask about a value that the text does not show distinctly.
"""

from __future__ import annotations

import datetime as _dt
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from userfm.data.attributes import DEFAULT_MULTI_VALUE, attribute_value
from userfm.data.log import UserHistory
from userfm.errors import ConfigError

__all__ = ["HEADER", "history_lines", "history_prompt", "lines_within"]

HEADER = "The user's recent activity, most recent first:"

#: a Hugging Face-style tokenizer: ``tokenizer(text, add_special_tokens=False)["input_ids"]``
Tokenizer = Callable[..., Mapping[str, Any]]


def history_lines(
    history: UserHistory,
    attributes: Mapping[str, Mapping[str, str]] | None = None,
    *,
    multi_value: str = DEFAULT_MULTI_VALUE,
) -> list[str]:
    """One line per event, most recent first.

    Args:
        history: the events (oldest first, as in the log).
        attributes: item id -> {"title": ..., "category": ...} (`EventLog.item_attributes`),
            used where the history itself has no titles / categories; items without a
            title are written by id.
        multi_value: which value of a ``|``-joined category is written (`attribute_value`):
            ``"first"`` (default, as the UQA questions), ``"last"`` or ``"joined"``.

    Returns:
        The lines, e.g. ``"- Heat (1995) [Action] (4, 1997-12-04)"``.

    Raises:
        ConfigError: ``multi_value`` is not one of `userfm.data.attributes.MULTI_VALUES`.
    """
    attribute_value(None, multi_value)  # fails on a bad setting even without categories
    attributes = attributes or {}
    lines = []
    for i in range(len(history) - 1, -1, -1):
        item = str(history.items[i])
        attrs = attributes.get(item, {})
        title = history.titles[i] if history.titles is not None else None
        text = f"- {title or attrs.get('title') or 'item ' + item}"
        category = attribute_value(
            attrs.get("category")
            or (history.categories[i] if history.categories is not None else None),
            multi_value,
        )
        if category:
            text += f" [{category}]"
        details = []
        if history.actions is not None:
            details.append(str(history.actions[i]))
        if history.timestamps is not None:
            when = _dt.datetime.fromtimestamp(int(history.timestamps[i]), tz=_dt.timezone.utc)
            details.append(when.strftime("%Y-%m-%d"))
        if details:
            text += f" ({', '.join(details)})"
        lines.append(text)
    return lines


def lines_within(tokenizer: Tokenizer | None, lines: Sequence[str], max_tokens: int | None) -> int:
    """How many whole lines, taken from the first (most recent) on, fit in ``max_tokens``.

    Each line counts with its newline, as `history_prompt` writes it; a line that does not fit
    ends the count (lines are never cut, nor skipped to fit a later shorter one, so the text
    is always the most recent events without gaps). Reports use it to state how many events
    a text budget shows.

    Args:
        tokenizer: counts tokens (``tokenizer(text, add_special_tokens=False)["input_ids"]``);
            unused (may be None) when ``max_tokens`` is None.
        lines: `history_lines` output, most recent first.
        max_tokens: token budget of the history text, >= 0; None = no limit (all lines).

    Returns:
        The number of leading lines kept, 0..len(lines).

    Raises:
        ConfigError: ``max_tokens`` is not None nor an integer >= 0.
    """
    if max_tokens is None:
        return len(lines)
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, numbers.Integral)
        or max_tokens < 0
    ):
        raise ConfigError(f"max_tokens must be an integer >= 0 or None, got {max_tokens!r}")
    if tokenizer is None:
        raise ConfigError("lines_within needs a tokenizer when max_tokens is set")
    used = 0
    for n_kept, line in enumerate(lines):
        used += len(tokenizer(line + "\n", add_special_tokens=False)["input_ids"])
        if used > max_tokens:
            return n_kept
    return len(lines)


def history_prompt(
    tokenizer: Tokenizer | None, lines: Sequence[str], question: str, *, max_tokens: int | None
) -> str:
    """The question preceded by as many history lines as fit in ``max_tokens`` tokens of
    history (None: all of them). Lines are kept whole, most recent first (`lines_within`)."""
    kept = list(lines[: lines_within(tokenizer, lines, max_tokens)])
    if not kept:
        return question
    return "\n".join([HEADER, *kept, "", question])
