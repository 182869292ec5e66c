"""`prepare_log` (``userfm prepare LOG --out DIR``): a raw log grouped per user, out of core.

Three steps, none of which holds the log in memory:

1. **plan**: `make_plan` decides how each column is read, as `read_events` does; its
   whole-column checks (the timestamp unit, the ids it normalises) read the column from the
   files batch by batch (`userfm.data.raw_batches`);
2. **normalise**: every batch goes through `normalise_batch`, the readers' own conversion,
   so every value `read_events` refuses is refused with the same typed error (naming the
   column, the input row, and for a log of several files the file); the canonical events
   are staged as parquet;
3. **group**: an engine (DuckDB, `userfm.data.prepare_duckdb`; Spark for logs beyond one
   machine, `userfm.data.prepare_spark`) drops duplicates and short users, hash-partitions
   users into shards and writes each as one time-ordered row per user, counting what
   `ReadStats` reports and the item frequencies the vocabularies are built from.

The result is the folder `userfm.data.prepared` describes. It is built beside the target and
moved in only once complete (`staged_output_dir`): a killed run leaves no partial folder under
the final name, and a rerun starts clean.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from userfm.data.drop_rows import (
    duplicate_error,
    log_duplicates_dropped,
    log_short_users_dropped,
    no_events_left,
)
from userfm.data.grouping import GroupResult, GroupSpec
from userfm.data.log import ReadStats
from userfm.data.normalise import normalise_batch
from userfm.data.prepared import ITEMS, VOCAB, PreparedLog, write_manifest
from userfm.data.raw_batches import RawBatches, open_raw_batches
from userfm.data.read_plan import ReadPlan, make_plan
from userfm.data.readers import check_read_arguments
from userfm.data.schema import ACTION, CATEGORY, ITEM, EventSchema
from userfm.data.vocab import Vocab, VocabSet
from userfm.errors import ConfigError, check_int
from userfm.outputs import check_output_dir, staged_output_dir
from userfm.progress import resolve_progress
from userfm.quiet import datasets_progress

logger = logging.getLogger("userfm.data")

__all__ = ["ENGINES", "prepare_log"]

ENGINES = ("duckdb", "spark")
#: staged rows per parquet file (the engine reads the files in parallel)
_STAGED_FILE_ROWS = 4_000_000
_STAGED = "_staged"


def prepare_log(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    out: str | os.PathLike,
    schema: EventSchema | None = None,
    *,
    format: str | None = None,
    min_events: int = 1,
    duplicates: Literal["drop", "keep", "error"] = "drop",
    encoding: str = "utf-8",
    sep: str | None = None,
    min_item_count: int = 1,
    max_items: int | None = None,
    num_shards: int = 64,
    engine: str = "duckdb",
    memory_limit: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    cache_dir: str | None = None,
    progress: bool | None = None,
) -> PreparedLog:
    """Prepare a log once into shards of one row per user (see the module docstring).

    Args:
        source: a file, a glob (``"logs/*.parquet"``), a folder of files of one format, or
            an in-memory DataFrame / Arrow table / `datasets.Dataset`.
        out: the prepared folder to write (refused if it holds files, unless ``overwrite``).
        schema, format, min_events, duplicates, encoding, sep, cache_dir: as in
            `read_events`, with the same checks and errors.
        min_item_count: items seen fewer times are left out of the item vocabulary (they
            map to OOV when encoded).
        max_items: keep at most this many items in the vocabulary (the most frequent).
        num_shards: shards to write; a multiple of the number of training processes gives
            each process whole shards (default 64: 1, 2, 4, 8, 16, 32 or 64 processes).
        engine: ``duckdb`` (one machine, out of core) or ``spark`` (PySpark; a cluster).
        memory_limit: the engine's memory limit, e.g. ``"4GB"`` (DuckDB's default: 80% of
            the machine's memory).
        threads: the engine's threads (default: one per core).
        overwrite: replace the files of an existing prepared folder.
        progress: progress bars; None: only when stderr is a terminal.

    Returns:
        The `PreparedLog`, opened and checked.

    Raises:
        FileNotFoundError, FileFormatError, SchemaError, DataError, EmptyLogError: as
            `read_events` raises them.
        ConfigError: an invalid argument, the output folder taken, or the engine missing.
    """
    schema = schema if schema is not None else EventSchema()
    check_read_arguments(schema, min_events, duplicates)
    check_int("min_item_count", min_item_count, minimum=1)
    if max_items is not None:
        check_int("max_items", max_items, minimum=1)
    check_int("num_shards", num_shards, minimum=1)
    if threads is not None:
        check_int("threads", threads, minimum=1)
    if engine not in ENGINES:
        raise ConfigError(f"`engine` must be one of {ENGINES}, got {engine!r}")
    group = _engine(engine, memory_limit, threads)
    target = check_output_dir(out, overwrite=overwrite)
    show = resolve_progress(progress)
    with datasets_progress(progress=show), staged_output_dir(target) as tmp:
        raw = open_raw_batches(
            source, schema, format=format, encoding=encoding, sep=sep, cache_dir=cache_dir
        )
        stats = ReadStats(rows_read=raw.num_rows)
        if raw.empty_files:
            stats.notes.append(f"{len(raw.empty_files)} files without rows skipped")
        mapping = schema.input_columns()
        with raw.locating_errors():
            plan = make_plan(raw.columns, schema, mapping, stats, dedupe=duplicates != "keep")
            staged = _normalise(raw, plan, tmp / _STAGED / "events", show)
        spec = GroupSpec(
            columns=plan.out,
            dedupe=plan.dedupe_hash,
            min_events=min_events,
            num_shards=num_shards,
            count_categories=CATEGORY in plan.out,
            count_actions=ACTION in plan.out,
        )
        with tqdm(total=num_shards, desc="userfm: grouping users", unit="shard",
                  disable=not show) as bar:  # fmt: skip
            result = group(
                staged, tmp, spec, memory_limit=memory_limit, threads=threads,
                temp_dir=tmp / _STAGED / "spill", on_shard=lambda _: bar.update(),
            )  # fmt: skip
        with raw.locating_errors():
            _account(result, stats, duplicates, min_events, mapping)
        vocabs = _vocabs(result, min_item_count, max_items)
        vocabs.save(tmp / VOCAB)
        pq.write_table(result.items, tmp / ITEMS)
        shutil.rmtree(tmp / _STAGED)
        write_manifest(
            tmp,
            schema=replace(schema, timestamp_unit=plan.resolved_unit),
            has_time=plan.has_time,
            columns=list(plan.out),
            stats=stats,
            vocab_options={"min_item_count": min_item_count, "max_items": max_items},
            shards=result.shards,
            engine=engine,
        )
        logger.info("prepared log: %s", stats.summary())
    return PreparedLog.open(target)


def _engine(
    engine: str, memory_limit: str | None, threads: int | None
) -> Callable[..., GroupResult]:
    """The grouping function of ``engine``, its package and settings checked now, before any
    work."""
    if engine == "spark":
        from userfm.data.prepare_spark import check_spark_settings, group_with_spark

        check_spark_settings(memory_limit, threads)
        return group_with_spark
    from userfm.data.prepare_duckdb import check_duckdb_settings, group_with_duckdb

    check_duckdb_settings(memory_limit, threads)
    return group_with_duckdb


def _normalise(raw: RawBatches, plan: ReadPlan, folder: Path, progress: bool) -> Path:
    """Every raw batch through `normalise_batch` into staged parquet files under ``folder``
    (the engine finds duplicates, so no per-row hash is computed)."""
    plan = replace(plan, dedupe_hash=False)
    folder.mkdir(parents=True)
    writer: pq.ParquetWriter | None = None
    rows_in_file, files = 0, 0
    with tqdm(total=raw.num_rows, desc="userfm: validating events", unit="event",
              unit_scale=True, disable=not progress) as bar:  # fmt: skip
        for offset, batch in raw.batches():
            if batch.num_rows == 0:
                continue
            canon = normalise_batch(batch, [offset], plan)
            if writer is None or rows_in_file >= _STAGED_FILE_ROWS:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(folder / f"part-{files:05d}.parquet", canon.schema)
                rows_in_file, files = 0, files + 1
            writer.write_table(canon)
            rows_in_file += canon.num_rows
            bar.update(batch.num_rows)
    if writer is not None:
        writer.close()
    return folder


def _account(
    result: GroupResult,
    stats: ReadStats,
    duplicates: str,
    min_events: int,
    mapping: dict[str, str],
) -> None:
    """Fill ``stats`` from the engine's counts; warn, log or refuse as `read_events` does."""
    if result.first_duplicate is not None:
        first, original = result.first_duplicate
        if duplicates == "error":
            raise duplicate_error(first, original, mapping)
        stats.duplicates_dropped = result.duplicates_dropped
        log_duplicates_dropped(result.duplicates_dropped, first)
    stats.short_users_dropped = result.short_users_dropped
    stats.short_user_rows_dropped = result.short_user_rows_dropped
    if result.short_users_dropped:
        log_short_users_dropped(stats, min_events)
    stats.users = sum(s.users for s in result.shards)
    if stats.users == 0 or result.items is None:
        raise no_events_left(min_events)
    stats.rows_kept = sum(s.events for s in result.shards)
    stats.items = result.items.num_rows
    stats.single_event_users = result.single_event_users
    stats.rows_reordered = None  # users are grouped per shard: no global order to compare
    stats.rows_time_reordered = result.rows_time_reordered


def _vocabs(result: GroupResult, min_item_count: int, max_items: int | None) -> VocabSet:
    """The vocabularies, as `build_vocabs` makes them from the same counts."""
    counts = Counter(
        dict(zip(result.items.column(ITEM).to_pylist(), result.items.column("events").to_pylist()))
    )
    items = Vocab.build(counts, min_count=min_item_count, max_size=max_items)
    actions = Vocab.build(result.actions) if result.actions is not None else None
    categories = Vocab.build(result.categories) if result.categories is not None else None
    return VocabSet(items, actions, categories)
