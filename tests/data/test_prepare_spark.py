"""The Spark engine (issue 34 §1) writes the same users, histories, vocabularies and statistics
as the default DuckDB engine; Spark's local mode, so slow (a JVM starts)."""

from __future__ import annotations

import pandas as pd
import pytest

from userfm.data.prepare import prepare_log
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log

pytest.importorskip("duckdb")
pytest.importorskip("pyspark")

SCHEMA = EventSchema(action="action", category="category", title="title")


def histories(prepared) -> dict[str, dict]:
    return {
        h.user: {f: list(getattr(h, f)) for f in ("items", "timestamps", "actions", "categories")}
        for h in prepared.iter_histories()
    }


@pytest.mark.slow
def test_spark_writes_what_duckdb_writes(tmp_path):
    df = generate_synthetic_log(SyntheticConfig(num_users=80, num_items=40, seed=5))
    df = df.sample(frac=1.0, random_state=1)  # users interleaved, times out of order
    df.loc[df.index[:10], "action"] = None  # null actions count as the token "None"
    tiny = df.iloc[4:6].assign(user="tiny")  # below min_events
    df = pd.concat([df, df.iloc[:4], tiny], ignore_index=True)  # exact duplicates
    opts = {"min_events": 5, "min_item_count": 2, "num_shards": 4}
    duck = prepare_log(df, tmp_path / "duckdb", SCHEMA, **opts)
    spark = prepare_log(df, tmp_path / "spark", SCHEMA, engine="spark", threads=2, **opts)
    assert histories(spark) == histories(duck)
    assert spark.vocabs.to_dict() == duck.vocabs.to_dict()
    assert spark.stats.to_dict() == duck.stats.to_dict()
    assert spark.length_counts() == duck.length_counts()
    assert spark.item_table().equals(duck.item_table())
    assert spark.stats.duplicates_dropped == 4 and spark.stats.short_users_dropped == 1
    assert spark.manifest["engine"] == "spark"


@pytest.mark.slow
def test_spark_refuses_duplicates_as_read_events_does(tmp_path):
    from userfm.errors import DataError

    T0 = 1_600_000_000
    df = pd.DataFrame({"user": ["a", "a", "b", "a"], "item": ["x", "y", "z", "y"],
                       "timestamp": [T0, T0 + 1, T0, T0 + 1]})  # fmt: skip
    with pytest.raises(DataError, match="row 3 repeats row 1"):
        prepare_log(df, tmp_path / "p", engine="spark", duplicates="error", threads=1)
    assert not (tmp_path / "p").exists()
