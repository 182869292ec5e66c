"""Evaluation splits: per-user leave-one-out and a global time split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from userfm.data.log import EventLog, UserHistory, take_rows
from userfm.data.schema import TIMESTAMP
from userfm.errors import ConfigError, EmptyLogError


@dataclass
class LeaveOneOut:
    """One user's leave-one-out split (SASRec protocol).

    Attributes:
        train: every event but the last two (next-item training targets live inside it).
        valid_input: ``train``; the validation target is ``valid_target`` (2nd most recent).
        valid_target: item id of the second most recent event.
        test_input: every event but the last one.
        test_target: item id of the most recent event.
    """

    train: UserHistory
    valid_target: str
    test_input: UserHistory
    test_target: str

    @property
    def valid_input(self) -> UserHistory:
        return self.train


def leave_one_out(history: UserHistory) -> LeaveOneOut | None:
    """Split one history; ``None`` for users with fewer than 3 events (count them upstream)."""
    if len(history) < 3:
        return None
    return LeaveOneOut(
        train=history[:-2],
        valid_target=str(history.items[-2]),
        test_input=history[:-1],
        test_target=str(history.items[-1]),
    )


def time_split(log: EventLog, cutoff: int) -> tuple[EventLog, EventLog]:
    """Global time split: events before ``cutoff`` (unix s) and events at or after it.

    Raises:
        ConfigError: the log has no timestamps (row order only).
        EmptyLogError: one side would be empty (the message gives the log's time range).
    """
    if not log.has_time:
        raise ConfigError("time_split needs timestamps; this log only has row order")
    ts = log.dataset.data.table.column(TIMESTAMP).to_numpy()
    before = np.flatnonzero(ts < cutoff)
    after = np.flatnonzero(ts >= cutoff)
    if len(before) == 0 or len(after) == 0:
        raise EmptyLogError(
            f"time_split cutoff {cutoff} leaves one side empty; timestamps span {ts.min()}..{ts.max()}"
        )
    return (
        EventLog(take_rows(log.dataset, before), has_time=True, schema=log.schema),
        EventLog(take_rows(log.dataset, after), has_time=True, schema=log.schema),
    )
