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
5. counts what `ReadStats` reports, and the item / action / category frequencies.

Two engines given the same staged events write the same users with the same histories and
report the same `GroupResult` (only which shard a user lands in may differ).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from userfm.data.prepared import ShardInfo

__all__ = ["GroupSpec", "GroupResult"]


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
        items: item id -> kept events.
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
    items: Counter = field(default_factory=Counter)
    actions: Counter | None = None
    categories: Counter | None = None
