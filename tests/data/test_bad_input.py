"""The bad-input suite: every case is a typed error naming what is wrong (column and row
where there is one), or handling counted in `EventLog.stats`, never a silent change; and no
row is lost unaccounted: rows_read == rows_kept + duplicates_dropped + short_user_rows_dropped.

Each case is one row of `CASES`; README ("Bad input") states their number. File cases also
go through `userfm embed`: an error is exit status 2 and one line, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.errors import (
    ConfigError,
    DataError,
    EmptyLogError,
    FileFormatError,
    SchemaError,
)

T0 = 1_600_000_000  # 2020-09-13, unix seconds
HEADER = "user,item,timestamp\n"


@dataclass
class Case:
    """One bad (or odd) input and what reading it must do.

    ``error``: the exception type (with ``match``, and ``column`` / ``row`` when the error
    names them); otherwise ``stats``: `ReadStats` fields and their values, and ``note``: a
    text one of ``stats.notes`` must contain.
    """

    name: str
    source: Callable[[Path], Any]
    kwargs: dict = field(default_factory=dict)
    error: type | None = None
    match: str = ""
    column: str | None = None
    row: int | None = None
    stats: dict = field(default_factory=dict)
    note: str = ""


def csv(text: str, name: str = "log.csv", encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(text.encode(encoding))
        return tmp / name

    return make


def jsonl(*rows: Any, raw: str = "") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + raw)
        return tmp / "log.jsonl"

    return make


def frame(**columns: list) -> Callable[[Path], pd.DataFrame]:
    base = {"user": ["a", "a", "b"], "item": ["x", "y", "z"], "timestamp": [T0, T0 + 1, T0]}
    return lambda tmp: pd.DataFrame({**base, **columns})


def event(user: Any = "a", item: Any = "x", ts: Any = T0) -> dict:
    return {"user": user, "item": item, "timestamp": ts}


CASES = [
    # ---- the columns -------------------------------------------------------------------
    Case("missing user column", lambda t: pd.DataFrame({"item": ["x"], "timestamp": [T0]}), error=SchemaError, match="'user'"),
    Case("missing item column", lambda t: pd.DataFrame({"user": ["a"], "timestamp": [T0]}), error=SchemaError, match="'item'"),
    Case("missing timestamp column", lambda t: pd.DataFrame({"user": ["a"], "item": ["x"]}), error=SchemaError, match="'timestamp'"),
    Case("mapped optional column missing", frame(), {"schema": EventSchema(action="rating")}, error=SchemaError, match="'rating'"),
    Case("repeated column in a csv header", csv("user,item,item,timestamp\na,x,y,1\n"), error=SchemaError, match="several columns named"),
    Case("repeated column in a DataFrame", lambda t: pd.DataFrame([["a", "x", "y", T0]], columns=["user", "item", "item", "timestamp"]), error=SchemaError, match="several columns named"),
    Case("repeated column in an Arrow table", lambda t: pa.table([pa.array(["a"]), pa.array(["x"]), pa.array(["x"]), pa.array([T0])], names=["user", "item", "item", "timestamp"]), error=SchemaError, match="several columns named"),
    Case("extra unmapped columns are ignored", frame(rating=[1, 2, 3]), stats={"rows_kept": 3}),
    # ---- ids -----------------------------------------------------------------------------
    Case("null user id", frame(user=["a", None, "b"]), error=DataError, match="null", column="user", row=1),
    Case("null item id", frame(item=["x", "y", None]), error=DataError, match="null", column="item", row=2),
    Case("empty user id in csv", csv(HEADER + f"a,x,{T0}\n,y,{T0}\n"), error=DataError, match="missing id", column="user", row=1),
    Case("blank item id", frame(item=["x", "   ", "z"]), error=DataError, match="empty id", column="item", row=1),
    Case("id column of nulls only", frame(user=[None, None, None]), error=DataError, match="only nulls", column="user"),
    Case("non-integral float id", frame(user=[1.0, 1.5, 2.0]), error=DataError, match="non-integral float id 1.5", column="user", row=1),
    Case("float id beyond 2**53", frame(item=[1.0, 2.0**60, 3.0]), error=DataError, match="too large to be exact", column="item", row=1),
    Case("bool id column", frame(user=[True, False, True]), error=DataError, match="type bool", column="user"),
    Case("nested id in jsonl", jsonl(event(user={"a": 1})), error=DataError, match="struct", column="user"),
    Case("float mixed into str ids", frame(user=["a", 1.5, "b"]), error=DataError, match="float value 1.5", column="user", row=1),
    Case("int mixed into str ids", frame(user=["a", 1, "b"]), stats={"users": 3}),
    Case("float ids become integer strings", frame(user=[1.0, 1.0, 2.0]), stats={"users": 2}),
    Case("'1' and '1.0' in csv are one id", csv(HEADER + f"1,x,{T0}\n1.0,y,{T0 + 1}\n"), stats={"users": 1, "ids_normalised": 1}),
    Case("padded ids in csv are one id", csv(HEADER + f"a,x,{T0}\n a ,y,{T0 + 1}\n"), stats={"users": 1, "ids_normalised": 1}),
    Case("1 and 1.0 in jsonl are one id", jsonl(event(user=1), event(user=1.0, ts=T0 + 1)), stats={"users": 1}),
    Case("leading zeros are kept", csv(HEADER + f"007,x,{T0}\n7,y,{T0}\n"), stats={"users": 2, "ids_normalised": 0}),
    # ---- timestamps ----------------------------------------------------------------------
    Case("null timestamp", frame(timestamp=[T0, None, T0]), error=DataError, match="missing timestamp", column="timestamp", row=1),
    Case("NaN timestamp", frame(timestamp=[float(T0), float("nan"), float(T0)]), error=DataError, match="missing timestamp", column="timestamp", row=1),
    Case("infinite timestamp", frame(timestamp=[float(T0), float("inf"), float(T0)]), error=DataError, match="inf", column="timestamp", row=1),
    Case("empty timestamp field in csv", csv(HEADER + f"a,x,{T0}\na,y,\n"), error=DataError, match="missing timestamp", column="timestamp", row=1),
    Case("unparsable timestamp", frame(timestamp=["2020-01-01", "yesterday", "2020-01-02"]), error=DataError, match="unparsable timestamp 'yesterday'", column="timestamp", row=1),
    Case("negative timestamp", frame(timestamp=[T0, -5, T0]), error=DataError, match="negative timestamp", column="timestamp", row=1),
    Case("timestamp after 2100", frame(timestamp=[T0, T0, 5_000_000_000]), error=DataError, match="after 2100", column="timestamp", row=2),
    Case("milliseconds read as seconds", frame(timestamp=[T0 * 1000] * 3), {"schema": EventSchema(timestamp_unit="s")}, error=DataError, match="timestamp_unit='ms'", column="timestamp", row=0),
    Case("seconds mixed with milliseconds", frame(timestamp=[T0 * 1000, T0, T0 * 1000]), error=DataError, match="mix units", column="timestamp", row=1),
    Case("seconds mixed with milliseconds in csv", csv(HEADER + f"a,x,{T0 * 1000}\na,y,{T0}\n"), error=DataError, match="mix units", column="timestamp", row=1),
    Case("bool timestamps", frame(timestamp=[True, False, True]), error=DataError, match="type bool", column="timestamp"),
    Case("list timestamps", frame(timestamp=[[1], [2], [3]]), error=DataError, match="type list", column="timestamp"),
    Case("timestamp column of nulls only", frame(timestamp=[None, None, None]), error=DataError, match="only nulls", column="timestamp"),
    Case("datetime unit on numbers", frame(), {"schema": EventSchema(timestamp_unit="datetime")}, error=DataError, match="numeric", column="timestamp"),
    Case("explicit ms putting everything in 1970", frame(), {"schema": EventSchema(timestamp_unit="ms")}, stats={"rows_kept": 3}, note="1970"),
    Case("auto unit: milliseconds", frame(timestamp=[T0 * 1000, (T0 + 1) * 1000, T0 * 1000]), stats={"rows_kept": 3}, note="('ms')"),
    Case("float seconds are floored", frame(timestamp=[T0 + 0.7, T0 + 1.2, T0 + 0.1]), stats={"rows_kept": 3}, note="('s')"),
    Case("ISO dates and datetimes", frame(timestamp=["2020-01-01", "2020-01-02T10:00:00", "2020-01-01"]), stats={"rows_kept": 3}),
    Case("tz-aware datetimes", frame(timestamp=list(pd.to_datetime([T0, T0 + 1, T0], unit="s", utc=True))), stats={"rows_kept": 3}),
    Case("no timestamp column: row order", lambda t: pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"]}), {"schema": EventSchema(timestamp=None)}, stats={"rows_kept": 2}, note="row order"),
    # ---- rows: duplicates, order, short users --------------------------------------------
    Case("exact duplicates dropped and counted", frame(item=["x", "x", "z"], timestamp=[T0, T0, T0]), stats={"duplicates_dropped": 1, "rows_kept": 2}),
    Case("exact duplicates refused", frame(item=["x", "x", "z"], timestamp=[T0, T0, T0]), {"duplicates": "error"}, error=DataError, match="row 1 repeats row 0", row=1),
    Case("exact duplicates kept", frame(item=["x", "x", "z"], timestamp=[T0, T0, T0]), {"duplicates": "keep"}, stats={"duplicates_dropped": 0, "rows_kept": 3}),
    Case("same item at another time is not a duplicate", frame(item=["x", "x", "z"]), stats={"duplicates_dropped": 0, "rows_kept": 3}),
    Case("rows out of time order are sorted and counted", frame(timestamp=[T0 + 5, T0, T0]), stats={"rows_time_reordered": 2}),
    Case("grouping users is not time re-sorting", lambda t: pd.DataFrame({"user": ["2", "10", "2"], "item": ["x", "y", "z"], "timestamp": [T0, T0, T0 + 1]}), stats={"rows_time_reordered": 0}),
    Case("short users dropped and counted", frame(), {"min_events": 2}, stats={"short_users_dropped": 1, "short_user_rows_dropped": 1, "rows_kept": 2}),
    Case("every user too short", frame(), {"min_events": 5}, error=EmptyLogError, match="min_events=5"),
    Case("single-event users kept and counted", frame(), stats={"single_event_users": 1, "rows_kept": 3}),
    # ---- files and sources ---------------------------------------------------------------
    Case("empty file", csv(""), error=EmptyLogError, match="is empty"),
    Case("csv header without rows", csv(HEADER), error=EmptyLogError, match="no rows"),
    Case("empty DataFrame", lambda t: pd.DataFrame({"user": [], "item": [], "timestamp": []}), error=EmptyLogError, match="no rows"),
    Case("csv line with an extra field", csv(HEADER + f"a,x,{T0}\na,y,{T0},extra\n"), error=FileFormatError, match="Expected 3 fields in line 3"),
    Case("truncated jsonl", jsonl(event(), raw='{"user": "a", "item": "y", "times'), error=FileFormatError, match="line 2 is not valid JSON"),
    Case("jsonl line that is not an object", jsonl(event(), raw="[1, 2]\n"), error=FileFormatError, match="line 2 is a JSON list"),
    Case("latin-1 csv read as utf-8", csv(HEADER + f"b\xe9,x,{T0}\n", encoding="latin-1"), error=FileFormatError, match="encoding='latin-1'"),
    Case("latin-1 csv with its encoding", csv(HEADER + f"b\xe9,x,{T0}\n", encoding="latin-1"), {"encoding": "latin-1"}, stats={"users": 1}),
    Case("unknown extension", csv(HEADER, name="log.txt"), error=FileFormatError, match="extension '.txt'"),
    Case("no such file", lambda t: t / "nowhere.csv", error=FileNotFoundError, match="not found"),
    Case("parquet named .csv is detected", lambda t: (frame()(t).to_parquet(t / "log.csv"), t / "log.csv")[1], error=FileFormatError, match="looks like parquet"),
    Case("not a log source", lambda t: 42, error=TypeError, match="must be a path"),
    # ---- options -------------------------------------------------------------------------
    Case("bad duplicates option", frame(), {"duplicates": "maybe"}, error=ConfigError, match="duplicates must be"),
    Case("bad min_events", frame(), {"min_events": 0}, error=ConfigError, match="min_events"),
    Case("attributes: nulls kept, lists joined", frame(category=[["a", "b"], None, ["c"]]), {"schema": EventSchema(category="category")}, stats={"rows_kept": 3}),
    Case("attribute mixing lists and text", frame(category=[["a", "b"], None, "c"]), {"schema": EventSchema(category="category")}, error=DataError, match="mixed or unsupported value types", column="category"),
]  # fmt: skip


def _stats(log) -> dict:
    return log.stats.to_dict()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path):
    source = case.source(tmp_path)
    if case.error is not None:
        with pytest.raises(case.error, match=case.match) as info:
            read_events(source, **case.kwargs)
        if case.column is not None:
            assert info.value.column == case.column
        if case.row is not None:
            assert info.value.row == case.row
        return
    log = read_events(source, **case.kwargs)
    stats = _stats(log)
    for key, value in case.stats.items():
        assert stats[key] == value, (key, stats)
    if case.note:
        assert any(case.note in n for n in log.stats.notes), log.stats.notes
    dropped = stats["duplicates_dropped"] + stats["short_user_rows_dropped"]
    assert stats["rows_read"] == stats["rows_kept"] + dropped  # nothing lost unaccounted


def test_the_suite_is_as_large_as_readme_says():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{len(CASES)} cases" in readme and len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from userfm import UserEncoder
    from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log

    log = read_events(generate_synthetic_log(SyntheticConfig(num_users=5, num_items=30)))
    out = tmp_path_factory.mktemp("model")
    UserEncoder.from_log(log, hidden_size=8, num_heads=1).save_pretrained(out)
    return out


FILE_ERRORS = [c for c in CASES if c.error is not None and c.error is not TypeError]


@pytest.mark.parametrize("case", FILE_ERRORS, ids=[c.name for c in FILE_ERRORS])
def test_through_the_cli_an_error_is_one_line(case: Case, tmp_path, model_dir, capsys):
    from userfm.cli import main

    if case.kwargs:
        pytest.skip("reader options are not CLI flags")
    source = case.source(tmp_path)
    if not isinstance(source, Path):  # a DataFrame / table: the same rows as a parquet file
        if isinstance(source, pa.Table) or len(set(source.columns)) < len(source.columns):
            pytest.skip("parquet cannot hold repeated column names")
        path = tmp_path / "log.parquet"
        try:
            source.to_parquet(path)
        except (pa.ArrowException, ValueError, TypeError):
            pytest.skip("not representable as parquet")
        source = path
    argv = ["embed", "--model", str(model_dir), "--input", str(source), "--output",
            str(tmp_path / "out.parquet"), "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("userfm embed: error:")]
    assert "Traceback" not in err and len(errors) == 1, err  # progress bars aside, one line
    assert not (tmp_path / "out.parquet").exists()
