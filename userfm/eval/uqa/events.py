"""A log's events as the UQA question builder and the direct-answer baseline read them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from userfm.data.attributes import attribute_value
from userfm.data.log import EventLog
from userfm.data.schema import ITEM, TITLE
from userfm.errors import ConfigError, DataError
from userfm.eval.uqa.config import QuestionConfig

__all__ = ["UserEvents", "VisibleEvent"]


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


class UserEvents:
    """Per-event item ids, titles and attributes of a log, aligned with its sorted rows.

    The question builder, the direct-answer baseline, the description builder and the
    encoder's own answers all read a user's history through this class, so that they agree on
    what the attribute of an event is (`userfm.data.attributes.attribute_value` under the
    config's ``attribute`` and ``multi_value``).

    Args:
        log: the event log.
        cfg: the `QuestionConfig` whose ``attribute`` / ``multi_value`` define the attribute.

    Attributes:
        items: (N,) object array of item ids, in the log's row order (users contiguous).
        attrs: (N,) object array of attribute values, None where missing.
        titles: (N,) object array of titles (None where missing); the item ids when the log
            has no titles.
        has_titles: whether the log has a title column.
        offsets: (U + 1,) user ``u``'s events are rows ``offsets[u]:offsets[u + 1]``.
        user_ids: user ids, in the log's order.
        index: user id -> its position in ``user_ids``.
        values: the log's distinct attribute values, sorted.

    Raises:
        ConfigError: the log has no ``cfg.attribute`` column.
    """

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
        """The rows ``[start, end)`` of the ``u``-th user."""
        return int(self.offsets[u]), int(self.offsets[u + 1])

    def visible(self, u: int, context_end: int) -> list[VisibleEvent]:
        """The first ``context_end`` events of the ``u``-th user, oldest first.

        Raises:
            DataError: ``context_end`` is negative or beyond the user's events.
        """
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


def ranked_values(values: Iterable[str | None]) -> list[str]:
    """Distinct non-missing values by descending count; ties: the latest occurrence first."""
    count: Counter[str] = Counter()
    last: dict[str, int] = {}
    for i, v in enumerate(values):
        if v is not None:
            count[v] += 1
            last[v] = i
    return sorted(count, key=lambda v: (-count[v], -last[v]))


def dominant_trajectory(ctx: Sequence[str | None], window: int, steps: int) -> list[str] | None:
    """Dominant value of each of the last ``steps`` windows (oldest first); None if one is empty."""
    tail = list(ctx[len(ctx) - window * steps :])
    out = []
    for s in range(steps):
        ranked = ranked_values(tail[s * window : (s + 1) * window])
        if not ranked:
            return None
        out.append(ranked[0])
    return out
