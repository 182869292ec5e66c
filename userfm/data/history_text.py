"""A user's history written as text: the text-prompt baseline (`userfm.adapters` "text" mode,
the UQA evaluation and the adapter efficiency benchmark).

One line per event, most recent first (so that truncating to a token budget keeps the
recent past): ``- <title> [<category>] (<action>, <date>)``, with the parts the log has.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from userfm.data.log import UserHistory

HEADER = "The user's recent activity, most recent first:"


def history_lines(
    history: UserHistory, attributes: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """One line per event, most recent first.

    Args:
        history: the events (oldest first, as in the log).
        attributes: item id -> {"title": ..., "category": ...} (`EventLog.item_attributes`),
            used where the history itself has no titles / categories; items without a
            title are written by id.
    """
    attributes = attributes or {}
    lines = []
    for i in range(len(history) - 1, -1, -1):
        item = str(history.items[i])
        attrs = attributes.get(item, {})
        title = history.titles[i] if history.titles is not None else None
        text = f"- {title or attrs.get('title') or 'item ' + item}"
        category = attrs.get("category") or (
            history.categories[i] if history.categories is not None else None
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


def history_prompt(tokenizer, lines: list[str], question: str, *, max_tokens: int | None) -> str:
    """The question preceded by as many history lines as fit in ``max_tokens`` tokens of
    history (None: all of them). Lines are kept whole, most recent first."""
    kept: list[str] = []
    used = 0
    for line in lines:
        n = len(tokenizer(line + "\n", add_special_tokens=False)["input_ids"])
        if max_tokens is not None and used + n > max_tokens:
            break
        kept.append(line)
        used += n
    if not kept:
        return question
    return "\n".join([HEADER, *kept, "", question])
