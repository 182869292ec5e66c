"""What a preparation engine is asked to do and what it reports (`userfm.data.prepare`).

`userfm.data.prepare` normalises a raw log batch by batch into staged parquet files of
canonical events (the columns of `userfm.data.schema` plus ``_row``, the input row). An engine
(`userfm.data.prepare_duckdb` on one machine, `userfm.data.prepare_spark` on a cluster) then
does, out of core, what `userfm.data.drop_rows` and `EventLog` do in memory:

1. drops exact duplicates (equal in every canonical column; the first input row is kept);
2. drops users with fewer than ``min_events`` events;
3. assigns each user to one of ``num_shards`` shards by a hash of the user id;
4. writes each shard as one row per user, time-ordered lists, ties in input order
   (`userfm.data.prepared.shard_schema`), users sorted by id;
5. counts what `ReadStats` reports, the action / category frequencies, and per item
   (`ITEM_TABLE_COLUMNS`): its events, its events outside each user's last two (the
   leave-one-out training part: what the DRO prior and the logQ correction count), and the
   attributes of its last event in (user, time, input row) order, the value
   `EventLog.item_attributes` keeps.

Two engines given the same staged events write the same users with the same histories and
report the same `GroupResult` (only which shard a user lands in may differ).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from userfm.data.prepared import ShardInfo
from userfm.data.schema import ITEM, TIMESTAMP, USER

__all__ = ["GroupSpec", "GroupResult", "ITEM_TABLE_COLUMNS"]

#: the first columns of the item table; the item attribute columns follow
ITEM_TABLE_COLUMNS = (ITEM, "events", "train_events")


@dataclass(frozen=True)
class GroupSpec:
    """What to group.

    Attributes:
        columns: the canonical event columns, in order (``user``, ``item``, ``timestamp``,
            then attributes); the staged files have these plus ``_row``.
        dedupe: look for exact duplicates (False with ``duplicates="keep"`` or without time).
        min_events: users with fewer events (after dropping duplicates) are dropped.
        num_shards: shards to write.
        count_categories: count the ``|``-separated categories (the log has ``category``).
        count_actions: count the actions (the log has ``action``).
    """

    columns: tuple[str, ...]
    dedupe: bool
    min_events: int
    num_shards: int
    count_categories: bool = False
    count_actions: bool = False

    @property
    def attributes(self) -> list[str]:
        """The columns after user, item and timestamp (action, category, title, extras)."""
        return [c for c in self.columns if c not in (USER, ITEM, TIMESTAMP)]


@dataclass
class GroupResult:
    """What grouping did, summed over shards.

    Attributes:
        shards: one `ShardInfo` per shard, in order (files already written).
        duplicates_dropped: exact duplicate rows dropped.
        first_duplicate: ``(row, original)``: the smallest input row that repeats an earlier
            one, and that earlier row; None without duplicates.
        short_users_dropped: users below ``min_events``.
        short_user_rows_dropped: their events.
        single_event_users: kept users with one event.
        rows_time_reordered: kept rows whose place among their user's events changed when
            sorted by time (out of time order in the input).
        items: one row per kept item, sorted by id: `ITEM_TABLE_COLUMNS` (string, int64,
            int64), then ``GroupSpec.attributes`` (strings, null where the last event had
            none).
        actions: action -> kept events (``count_actions``).
        categories: category -> kept events naming it (``count_categories``; ``""`` not
            counted).
    """

    shards: list[ShardInfo]
    duplicates_dropped: int = 0
    first_duplicate: tuple[int, int] | None = None
    short_users_dropped: int = 0
    short_user_rows_dropped: int = 0
    single_event_users: int = 0
    rows_time_reordered: int = 0
    items: pa.Table | None = None
    actions: Counter | None = None
    categories: Counter | None = None
