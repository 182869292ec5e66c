"""`prepare_log` (issue 34 §1): the prepared shards hold what `read_events` reads, user by user,
with the same vocabularies and statistics; the readers' bad input is refused the same way;
a log of several files reads as their concatenation; a failed or killed run leaves nothing
under the final name."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_bad_input import CASES, Case

from userfm.data.prepare import prepare_log
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.data.vocab import build_vocabs
from userfm.errors import ConfigError, DataError, FileFormatError

pytest.importorskip("duckdb")

SCHEMA = EventSchema(action="action", category="category", title="title")
T0 = 1_600_000_000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A synthetic log with rows shuffled (users interleaved, times out of order) and a few
    exact duplicates."""
    df = generate_synthetic_log(SyntheticConfig(num_users=120, num_items=60, seed=3))
    df = df.sample(frac=1.0, random_state=0)
    return pd.concat([df, df.iloc[:5]], ignore_index=True)


def histories(log) -> dict[str, dict]:
    """user -> {field: list} of an EventLog or a PreparedLog."""
    out = {}
    for h in log.iter_histories():
        out[h.user] = {
            f: None if getattr(h, f) is None else list(getattr(h, f))
            for f in ("items", "timestamps", "actions", "categories", "titles")
        }
    return out


def assert_same_log(prepared, log, *, file_notes: tuple[str, ...] = ()) -> None:
    """Same users and histories, vocabularies and statistics (the global row order aside;
    ``file_notes``: the notes only a log of several files has)."""
    assert histories(prepared) == histories(log)
    a, b = log.stats.to_dict(), prepared.stats.to_dict()
    assert b.pop("rows_reordered") is None
    a.pop("rows_reordered")
    b["notes"] = [n for n in b["notes"] if n not in file_notes]
    assert a == b


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"min_events": 10, "duplicates": "keep"},
        {"min_item_count": 3, "max_items": 40},
    ],
    ids=["defaults", "min_events-keep", "vocab-options"],
)
def test_prepared_shards_hold_what_read_events_reads(frame, tmp_path, options):
    read_opts = {k: v for k, v in options.items() if k in ("min_events", "duplicates")}
    log = read_events(frame, SCHEMA, **read_opts)
    prepared = prepare_log(frame, tmp_path / "p", SCHEMA, num_shards=4, **options)
    assert_same_log(prepared, log)
    vocabs = build_vocabs(
        log, min_count=options.get("min_item_count", 1), max_size=options.get("max_items")
    )
    assert prepared.vocabs.to_dict() == vocabs.to_dict()
    assert prepared.schema == log.schema and prepared.has_time
    assert len(prepared.shards) == 4 and all(s.users > 0 for s in prepared.shards)
    # the manifest's per-shard counts are what the shards hold
    users_per_shard = [len(list(prepared.iter_histories([i]))) for i in range(4)]
    assert users_per_shard == [s.users for s in prepared.shards]
    lengths = np.bincount(log.lengths)
    assert prepared.length_counts() == {n: int(c) for n, c in enumerate(lengths) if c}
    # the item table: attributes of the last event, events outside each user's last two
    assert prepared.item_attributes() == log.item_attributes()
    vocab = prepared.vocabs.items
    expected = np.zeros(len(vocab), dtype=np.int64)
    for h in log.iter_histories():
        np.add.at(expected, vocab.encode(h.items[:-2])[0], 1)
    expected[:3] = 0
    np.testing.assert_array_equal(prepared.train_item_counts(vocab), expected)


def test_a_folder_of_files_reads_as_their_concatenation(frame, tmp_path):
    parts = tmp_path / "log"
    (parts / "day=2").mkdir(parents=True)
    cut = [0, 700, 701, len(frame)]
    names = ["day=1.parquet", "day=2/a.parquet", "day=2/b.parquet"]  # sorted by path
    (parts / "day=1.parquet").parent.mkdir(exist_ok=True)
    for lo, hi, name in zip(cut, cut[1:], names):
        frame.iloc[lo:hi].to_parquet(parts / name, index=False)
    frame.iloc[:0].to_parquet(parts / "day=2" / "c.parquet", index=False)  # no rows: skipped
    (parts / "_SUCCESS").write_text("")
    log = read_events(frame, SCHEMA)
    prepared = prepare_log(parts, tmp_path / "p", SCHEMA, num_shards=2)
    assert_same_log(prepared, log, file_notes=("1 files without rows skipped",))
    by_glob = prepare_log(str(parts / "day=2" / "*.parquet"), tmp_path / "g", SCHEMA)
    assert by_glob.stats.rows_read == len(frame) - 700


def test_an_error_in_a_later_file_names_the_input_row_and_the_file(tmp_path):
    good = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": [T0, T0]})
    bad = pd.DataFrame({"user": ["c", None], "item": ["x", "y"], "timestamp": [T0, T0]})
    good.to_parquet(tmp_path / "1.parquet")
    bad.to_parquet(tmp_path / "2.parquet")
    with pytest.raises(DataError, match=r"missing id.*row 3\).*row 1 of .*2\.parquet") as info:
        prepare_log(tmp_path, tmp_path / "p")
    assert (info.value.column, info.value.row) == ("user", 3)
    assert not (tmp_path / "p").exists()


def test_files_must_share_format_and_column_types(tmp_path):
    a = pd.DataFrame({"user": [1, 2], "item": ["x", "y"], "timestamp": [T0, T0]})
    a.to_parquet(tmp_path / "1.parquet")
    a.assign(user=["1", "2"]).to_parquet(tmp_path / "2.parquet")
    with pytest.raises(
        DataError, match="type int64 in .*1.parquet but (large_)?string in .*2.parquet"
    ):
        prepare_log(tmp_path, tmp_path / "p")
    a.to_csv(tmp_path / "3.csv", index=False)
    with pytest.raises(FileFormatError, match="several formats"):
        prepare_log(tmp_path, tmp_path / "q")
    with pytest.raises(FileNotFoundError, match="no event files"):
        prepare_log(str(tmp_path / "*.jsonl"), tmp_path / "r")


# ---- the readers' bad input, through prepare ----------------------------------------------
def _outcome(fn):
    """(error type, message, column, row) or the statistics of a successful read."""
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - compared between the two readers
        return type(e), str(e), getattr(e, "column", None), getattr(e, "row", None)
    stats = result.stats.to_dict()
    stats.pop("rows_reordered")
    return stats


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_as_read_events_refuses_it(case: Case, tmp_path):
    source = case.source(tmp_path)
    expected = _outcome(lambda: read_events(source, **case.kwargs))
    got = _outcome(lambda: prepare_log(source, tmp_path / "p", **case.kwargs))
    if isinstance(expected, tuple) and expected[0] is TypeError:  # not a log source
        assert got[0] is TypeError
        return
    assert got == expected
    if isinstance(got, tuple):
        assert not (tmp_path / "p").exists()


# ---- arguments, outputs, kills ------------------------------------------------------------
def test_bad_arguments_are_refused_before_any_work(frame, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds files"):
        prepare_log(frame, tmp_path / "p", SCHEMA)
    assert (tmp_path / "p" / "keep.txt").read_text() == "mine"
    for kwargs, match in [
        ({"num_shards": 0}, "num_shards"),
        ({"engine": "hadoop"}, "engine"),
        ({"memory_limit": "lots"}, "memory_limit"),
        ({"min_item_count": 0}, "min_item_count"),
    ]:
        with pytest.raises(ConfigError, match=match):
            prepare_log(frame, tmp_path / "q", SCHEMA, **kwargs)
    assert not (tmp_path / "q").exists()


def test_a_killed_prepare_leaves_nothing_under_the_final_name_and_a_rerun_works(tmp_path):
    log = tmp_path / "log.parquet"
    df = generate_synthetic_log(SyntheticConfig(num_users=30, num_items=20))
    df.to_parquet(log)
    # killed (SIGKILL) between normalising and grouping: no cleanup code runs
    script = textwrap.dedent(f"""
        import os, signal
        import userfm.data.prepare_duckdb as engine
        from userfm.data.prepare import prepare_log
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        engine.group_with_duckdb = killed
        prepare_log({str(log)!r}, {str(tmp_path / "p")!r})
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    assert not (tmp_path / "p").exists()
    prepared = prepare_log(log, tmp_path / "p")
    assert prepared.num_users == 30


def test_overwrite_replaces_a_prepared_folder(frame, tmp_path):
    prepare_log(frame.iloc[:300], tmp_path / "p", SCHEMA, num_shards=2)
    again = prepare_log(frame, tmp_path / "p", SCHEMA, num_shards=2, overwrite=True)
    assert again.stats.rows_read == len(frame)


def test_cli_prepare(tmp_path, capsys):
    from userfm.cli import main

    path = tmp_path / "log.csv"
    pd.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"], "t": [T0, T0 + 1, T0]}).to_csv(
        path, index=False
    )
    argv = ["prepare", str(path), "--out", str(tmp_path / "p"), "--num_shards", "2",
            "--schema.user", "u", "--schema.item", "i", "--schema.timestamp", "t",
            "--no_progress"]  # fmt: skip
    assert main(argv) == 0
    assert "prepared 2 users (3 events) in 2 shards" in capsys.readouterr().out
    assert main(argv) == 2  # the folder is taken now
    err = capsys.readouterr().err
    assert err.count("userfm prepare: error:") == 1 and "--overwrite" in err


def test_shard_rows_are_plain_parquet_lists(frame, tmp_path):
    prepared = prepare_log(frame, tmp_path / "p", SCHEMA, num_shards=1)
    table = pq.read_table(prepared.shard_path(0))
    assert table.schema.field("item").type == pa.list_(pa.string())
    assert table.schema.field("timestamp").type == pa.list_(pa.int64())
    users = table.column("user").to_pylist()
    assert users == sorted(users)
