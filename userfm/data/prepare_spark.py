"""The Spark preparation engine (``userfm prepare --engine spark``; `userfm.data.grouping`).

The same grouping as `userfm.data.prepare_duckdb`, written as a PySpark job, for logs whose
grouping outgrows one machine: duplicates are dropped by a ``groupBy`` of every canonical
column, each user's events are collected as structs whose first fields are the timestamp
and the input row and sorted (``array_sort``: time order, ties in input order), and the
users are written partitioned by ``pmod(hash(user), num_shards)``, one file per shard. The
counts `ReadStats` reports come from the same grouped table.

The session is the active one (`SparkSession.getActiveSession`, e.g. inside
``spark-submit`` on a cluster), or a local one (``local[threads]``, ``memory_limit`` as the
driver memory) started for the run. The validation pass before it (`userfm.data.prepare`:
the readers' normalisation, batch by batch) runs in the calling process.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from userfm.data.grouping import GroupResult, GroupSpec
from userfm.data.log import ROW
from userfm.data.prepared import SHARD_ROW_GROUP, ShardInfo, shard_name, shard_schema
from userfm.data.schema import ACTION, CATEGORY, CATEGORY_SEP, ITEM, TIMESTAMP, USER
from userfm.errors import ConfigError

__all__ = ["check_spark_settings", "group_with_spark", "missing_spark"]

INSTALL_HINT = "pip install 'userfm[spark]' (or pip install pyspark; Spark needs Java 17+)"


def missing_spark() -> bool:
    """Whether PySpark is not installed (the optional ``spark`` extra)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return True
    return False


def check_spark_settings(memory_limit: str | None, threads: int | None) -> None:
    """Refuse a missing PySpark or a memory limit Spark cannot read, before any work.

    Raises:
        ConfigError: names the install command or the bad setting.
    """
    if missing_spark():
        raise ConfigError(f"preparing a log with engine 'spark' needs PySpark: {INSTALL_HINT}")
    if memory_limit is not None and not _spark_memory(memory_limit):
        raise ConfigError(f"`memory_limit` {memory_limit!r}: Spark reads sizes such as 4g or 4GB")


def _spark_memory(text: str) -> str | None:
    """``"4GB"`` / ``"4g"`` / ``"512MB"`` as Spark's ``4g`` / ``512m``; None if unreadable."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    if len(t) >= 2 and t[:-1].isdigit() and t[-1] in "kmgt":
        return t
    return None


def group_with_spark(
    events: Path,
    out: Path,
    spec: GroupSpec,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_dir: Path | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> GroupResult:
    """Group the staged events under ``events`` into shards under ``out`` with Spark (the
    arguments of `userfm.data.prepare_duckdb.group_with_duckdb`)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    spark = active or _local_session(
        memory_limit, threads, temp_dir or events.parent / "spark", spec.num_shards
    )
    try:
        return _group(spark, events, out, spec, on_shard)
    finally:
        if active is None:
            spark.stop()


def _local_session(memory_limit: str | None, threads: int | None, temp_dir: Path, num_shards: int):
    """A local session for this run: its threads, memory, scratch folder; no console bars."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(f"local[{threads or '*'}]")
        .appName("userfm prepare")
        .config("spark.local.dir", str(temp_dir))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(num_shards))
        .config("spark.sql.session.timeZone", "UTC")
    )
    if memory_limit is not None:
        builder = builder.config("spark.driver.memory", _spark_memory(memory_limit))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _group(spark, events: Path, out: Path, spec: GroupSpec, on_shard) -> GroupResult:
    from pyspark.sql import functions as F

    staged = spark.read.parquet(str(events))
    cols = list(spec.columns)
    if spec.dedupe:
        rows = staged.groupBy(*cols).agg(F.min(ROW).alias(ROW), F.count("*").alias("_n"))
    else:
        rows = staged.withColumn("_n", F.lit(1))
    fields = {c: f"c{i}" for i, c in enumerate(cols)}
    fields[TIMESTAMP] = "t"
    packed = F.struct(
        F.col(TIMESTAMP).alias("t"),
        F.col(ROW).alias("r"),
        *[F.col(c).alias(fields[c]) for c in cols if c not in (USER, TIMESTAMP)],
    )
    g = (
        rows.groupBy(USER)
        .agg(F.array_sort(F.collect_list(packed)).alias("ev"), F.sum(F.col("_n") - 1).alias("dups"))
        .withColumn("n", F.size("ev"))
        .withColumn("shard", F.expr(f"pmod(hash(`{USER}`), {spec.num_shards})"))
        .cache()
    )
    m = spec.min_events
    totals = g.agg(
        F.coalesce(F.sum("dups"), F.lit(0)),
        F.count(F.when(F.col("n") < m, 1)),
        F.coalesce(F.sum(F.when(F.col("n") < m, F.col("n"))), F.lit(0)),
        F.count(F.when((F.col("n") >= m) & (F.col("n") == 1), 1)),
    ).first()
    result = GroupResult(
        shards=[],
        duplicates_dropped=int(totals[0]),
        short_users_dropped=int(totals[1]),
        short_user_rows_dropped=int(totals[2]),
        single_event_users=int(totals[3]),
    )
    if result.duplicates_dropped:
        result.first_duplicate = _first_duplicate(staged, cols)
    kept = g.filter(F.col("n") >= m)
    result.rows_time_reordered = _time_reordered(kept)
    _counts(kept, spec, fields, result)
    lengths: dict[int, dict[int, int]] = {}
    for row in kept.groupBy("shard", "n").count().collect():
        lengths.setdefault(int(row["shard"]), {})[int(row["n"])] = int(row["count"])
    written = events.parent / "spark_shards"
    (
        kept.select(
            F.col(USER),
            *[F.col(f"ev.{fields[c]}").alias(c) for c in cols if c != USER],
            F.col("shard"),
        )
        .repartition(spec.num_shards, "shard")
        .sortWithinPartitions(USER)
        .write.partitionBy("shard")
        .parquet(str(written))
    )
    g.unpersist()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for k in range(spec.num_shards):
        result.shards.append(_move_shard(written / f"shard={k}", out, spec, k, lengths.get(k, {})))
        if on_shard is not None:
            on_shard(k)
    shutil.rmtree(written, ignore_errors=True)
    return result


def _move_shard(folder: Path, out: Path, spec: GroupSpec, k: int, lengths: dict) -> ShardInfo:
    """Spark's file of shard ``k`` under its final name, cast to the shard schema (an empty
    shard written when no user hashed there)."""
    name = shard_name(k, spec.num_shards)
    path = out / name
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    schema = shard_schema(list(spec.columns))
    if not parts:
        pq.write_table(schema.empty_table(), path)
    else:
        assert len(parts) == 1, "repartition by shard writes one file per shard"
        table = pq.read_table(parts[0]).select(schema.names).cast(schema)
        pq.write_table(table, path, row_group_size=SHARD_ROW_GROUP)
    return ShardInfo.written(out, name, lengths)


def _first_duplicate(staged, cols: list[str]) -> tuple[int, int]:
    from pyspark.sql import functions as F

    row = (
        staged.groupBy(*cols)
        .agg(
            F.try_element_at(F.array_sort(F.collect_list(ROW)), F.lit(2)).alias("first"),
            F.min(ROW).alias("original"),
            F.count("*").alias("n"),
        )
        .filter(F.col("n") > 1)
        .orderBy("first")
        .first()
    )
    return int(row["first"]), int(row["original"])


def _time_reordered(kept) -> int:
    from pyspark.sql import functions as F

    rs = F.transform("ev", lambda x: x["r"])
    moved = F.aggregate(
        F.zip_with(rs, F.array_sort(rs), lambda a, b: F.when(a != b, 1).otherwise(0)),
        F.lit(0),
        lambda acc, x: acc + x,
    )
    total = kept.select(F.sum(moved)).first()[0]
    return int(total or 0)


def _counts(kept, spec: GroupSpec, fields: dict[str, str], result: GroupResult) -> None:
    from pyspark.sql import functions as F

    positions = kept.select(USER, "n", F.posexplode("ev").alias("pos", "x"))  # pos from 0
    last = F.struct(
        F.col(USER).alias("u"), F.col("x.t").alias("t"), F.col("x.r").alias("r"),
        *[F.col(f"x.{fields[c]}").alias(f"a{i}") for i, c in enumerate(spec.attributes)],
    )  # fmt: skip
    items = (
        positions.groupBy(F.col(f"x.{fields[ITEM]}").alias(ITEM))
        .agg(
            F.count("*").alias("events"),
            F.sum(F.when(F.col("pos") < F.col("n") - 2, 1).otherwise(0)).alias("train_events"),
            F.max(last).alias("last"),
        )
        .select(
            ITEM,
            "events",
            "train_events",
            *[F.col(f"last.a{i}").alias(c) for i, c in enumerate(spec.attributes)],
        )  # fmt: skip
        .orderBy(ITEM)
    )
    rows = items.collect()
    if rows:
        names = [ITEM, "events", "train_events", *spec.attributes]
        types = [pa.string(), pa.int64(), pa.int64(), *[pa.string()] * len(spec.attributes)]
        result.items = pa.table(
            {n: pa.array([r[n] for r in rows], t) for n, t in zip(names, types, strict=True)}
        )
    events = kept.select(F.explode("ev").alias("x"))

    def counter(column, *, drop_empty: bool = False) -> Counter:
        df = events.select(column.alias("token"))
        if drop_empty:
            df = df.filter(F.col("token") != "")
        return Counter(
            {str(r["token"]): int(r["count"]) for r in df.groupBy("token").count().collect()}
        )

    if spec.count_actions:  # a null action is the token "None", as `build_vocabs` counts it
        result.actions = counter(F.coalesce(F.col(f"x.{fields[ACTION]}"), F.lit("None")))
    if spec.count_categories:
        split = F.explode(F.split(F.col(f"x.{fields[CATEGORY]}"), "\\" + CATEGORY_SEP))
        result.categories = counter(split, drop_empty=True)
