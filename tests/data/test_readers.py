"""read_events: every source format, canonical output, and one test per bad-input case."""

from __future__ import annotations

import json
import logging

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from userfm.data import readers
from userfm.data.log import ROW
from userfm.data.readers import MAX_TIMESTAMP, read_events
from userfm.data.schema import EventSchema
from userfm.errors import (
    ConfigError,
    DataError,
    EmptyLogError,
    FileFormatError,
    SchemaError,
)

T0 = 1_600_000_000  # 2020-09-13, unix seconds


def frame(**extra):
    """Two users, five events, out of order; extra columns appended."""
    df = pd.DataFrame(
        {
            "user": ["a", "b", "a", "b", "a"],
            "item": ["x", "y", "y", "z", "z"],
            "timestamp": [T0 + 30, T0 + 5, T0 + 10, T0 + 1, T0 + 20],
        }
    )
    for k, v in extra.items():
        df[k] = v
    return df


def history(log, user):
    return log.history(user).items.tolist()


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


# ---------------------------------------------------------------------------------------------
# happy paths
# ---------------------------------------------------------------------------------------------
def test_dataframe_gives_canonical_sorted_log_with_input_rows():
    log = read_events(frame())
    table = log.dataset.data.table
    assert table.column_names == ["user", "item", "timestamp", ROW]
    assert table.schema.field("user").type == pa.string()
    assert table.schema.field("timestamp").type == pa.int64()
    assert log.has_time
    assert history(log, "a") == ["y", "z", "x"]
    assert history(log, "b") == ["z", "y"]
    assert table.column(ROW).to_pylist() == [2, 4, 0, 3, 1]
    assert log.history("a").timestamps.tolist() == [T0 + 10, T0 + 20, T0 + 30]
    s = log.stats
    assert (s.rows_read, s.rows_kept, s.users, s.items) == (5, 5, 2, 3)
    assert s.rows_reordered > 0
    assert any("seconds" in n for n in s.notes)


def test_csv_file(tmp_path, cache):
    p = tmp_path / "log.csv"
    frame().to_csv(p, index=False)
    log = read_events(p, cache_dir=cache)
    assert history(log, "a") == ["y", "z", "x"]
    assert log.history("b").timestamps.tolist() == [T0 + 1, T0 + 5]


def test_tsv_file(tmp_path, cache):
    p = tmp_path / "log.tsv"
    frame().to_csv(p, index=False, sep="\t")
    log = read_events(str(p), cache_dir=cache)
    assert history(log, "b") == ["z", "y"]


def test_parquet_file(tmp_path, cache):
    p = tmp_path / "log.parquet"
    frame().to_parquet(p, index=False)
    log = read_events(p, cache_dir=cache)
    assert history(log, "a") == ["y", "z", "x"]
    assert len(log) == 5


def test_jsonl_and_json_files(tmp_path, cache):
    for name in ("log.jsonl", "log.json"):
        p = tmp_path / name
        frame().to_json(p, orient="records", lines=True)
        log = read_events(p, cache_dir=cache)
        assert history(log, "a") == ["y", "z", "x"]


def test_datasets_dataset_including_a_shuffled_one():
    ds = datasets.Dataset.from_pandas(frame(), preserve_index=False)
    assert history(read_events(ds), "a") == ["y", "z", "x"]
    shuffled = ds.select([4, 3, 2, 1, 0])  # an indices mapping: rows are the selected ones
    log = read_events(shuffled)
    assert history(log, "a") == ["y", "z", "x"]
    assert log.dataset.data.table.column(ROW).to_pylist() == [2, 0, 4, 1, 3]


def test_pyarrow_table():
    log = read_events(pa.Table.from_pandas(frame(), preserve_index=False))
    assert history(log, "b") == ["z", "y"]


def test_schema_maps_column_names_and_attributes_become_strings():
    df = pd.DataFrame(
        {
            "uid": [1, 1, 2],
            "sku": [10, 11, 10],
            "when": [T0, T0 + 1, T0 + 2],
            "rating": [4.0, 4.5, 5.0],
            "cats": [["a", "b"], [], None],
            "name": ["N1", None, "N1"],
            "flag": [True, False, True],
        }
    )
    schema = EventSchema(
        user="uid",
        item="sku",
        timestamp="when",
        action="rating",
        category="cats",
        title="name",
        extra=("flag",),
    )
    out = read_events(df, schema).to_pandas()
    assert list(out.columns) == ["user", "item", "timestamp", "action", "category", "title", "flag"]
    assert out["user"].tolist() == ["1", "1", "2"]
    assert out["action"].tolist() == ["4", "4.5", "5"]
    assert out["category"].tolist()[:2] == ["a|b", ""]
    assert pd.isna(out["category"].iloc[2]) and pd.isna(out["title"].iloc[1])
    assert out["flag"].tolist() == ["true", "false", "true"]


def test_format_argument_overrides_extension(tmp_path, cache):
    p = tmp_path / "events.txt"
    frame().to_csv(p, index=False, sep=";")
    log = read_events(p, format="csv", sep=";", cache_dir=cache)
    assert history(log, "a") == ["y", "z", "x"]


def test_multichar_separator(tmp_path, cache):
    p = tmp_path / "ratings.csv"
    p.write_text("user::item::timestamp\n1::10::5\n1::11::6\n")
    log = read_events(p, sep="::", cache_dir=cache)
    assert history(log, "1") == ["10", "11"]


def test_no_timestamp_uses_row_order_and_keeps_repeats():
    df = pd.DataFrame({"user": ["u", "v", "u", "u"], "item": ["a", "b", "a", "c"]})
    log = read_events(df, EventSchema(timestamp=None))
    assert not log.has_time
    assert history(log, "u") == ["a", "a", "c"]  # a repeated consumption, not a duplicate
    assert log.history("u").timestamps is None
    assert log.dataset["timestamp"] == [0, 2, 3, 1]
    assert log.stats.duplicates_dropped == 0
    log2 = read_events(frame(), EventSchema(timestamp_unit="order"))
    assert not log2.has_time and history(log2, "a") == ["x", "y", "z"]


@pytest.mark.parametrize("unit,scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_explicit_timestamp_units(unit, scale):
    df = frame(timestamp=[(T0 + k) * scale + (scale - 1) for k in (30, 5, 10, 1, 20)])
    log = read_events(df, EventSchema(timestamp_unit=unit))
    assert log.history("a").timestamps.tolist() == [T0 + 10, T0 + 20, T0 + 30]  # floored


@pytest.mark.parametrize("unit,scale", [("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_auto_unit_inferred_from_magnitude_and_noted(unit, scale):
    log = read_events(frame(timestamp=[(T0 + k) * scale for k in (30, 5, 10, 1, 20)]))
    assert log.history("b").timestamps.tolist() == [T0 + 1, T0 + 5]
    assert any(f"('{unit}')" in n for n in log.stats.notes)


def test_float_seconds_are_floored():
    log = read_events(frame(timestamp=[T0 + 30.9, T0 + 5.5, T0 + 10.1, T0 + 1.0, T0 + 20.7]))
    assert log.history("a").timestamps.tolist() == [T0 + 10, T0 + 20, T0 + 30]


def test_datetime_columns_naive_and_tz_aware():
    naive = pd.to_datetime([T0 + 30, T0 + 5, T0 + 10, T0 + 1, T0 + 20], unit="s")
    log = read_events(frame(timestamp=naive))
    assert log.history("a").timestamps.tolist() == [T0 + 10, T0 + 20, T0 + 30]
    aware = naive.tz_localize("UTC").tz_convert("Asia/Tokyo")
    log = read_events(frame(timestamp=aware))
    assert log.history("a").timestamps.tolist() == [T0 + 10, T0 + 20, T0 + 30]
    dates = pd.DataFrame(
        {
            "user": ["u", "u"],
            "item": ["a", "b"],
            "timestamp": pd.to_datetime(["2020-01-02", "2020-01-01"]).date,
        }
    )
    log = read_events(dates)
    assert log.history("u").timestamps.tolist() == [1577836800, 1577923200]


def test_iso_and_other_date_strings():
    df = pd.DataFrame(
        {
            "user": ["u"] * 4,
            "item": list("abcd"),
            "timestamp": [
                "2020-01-01",
                "2020-01-01T10:00:00+02:00",
                "2020-01-01 09:00:00Z",
                "02-Jan-2020",
            ],
        }
    )
    log = read_events(df)
    assert history(log, "u") == ["a", "b", "c", "d"]
    assert log.history("u").timestamps.tolist() == [1577836800, 1577865600, 1577869200, 1577923200]
    log = read_events(df.iloc[:2], EventSchema(timestamp_unit="datetime"))
    assert log.history("u").timestamps.tolist() == [1577836800, 1577865600]


def test_numeric_text_timestamps_from_csv_with_ms(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_text(f"user,item,timestamp\nu,a,{(T0 + 2) * 1000}\nu,b, {(T0 + 1) * 1000} \n")
    log = read_events(p, cache_dir=cache)
    assert history(log, "u") == ["b", "a"]
    assert any("('ms')" in n for n in log.stats.notes)


def test_float_ids_become_integer_strings():
    df = frame(user=[1.0, 2.0, 1.0, 2.0, 1.0], item=[10.0, 11.0, 12.0, 13.0, np.float32(14)])
    log = read_events(df)
    assert log.user_ids.tolist() == ["1", "2"]
    assert sorted(log.to_pandas()["item"]) == ["10", "11", "12", "13", "14"]


def test_csv_ids_are_read_verbatim_as_text(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_text("user,item,timestamp\n007,NA,5\n007,1e3,6\n")
    log = read_events(p, cache_dir=cache)
    assert log.user_ids.tolist() == ["007"]
    assert history(log, "007") == ["NA", "1e3"]


def test_csv_and_jsonl_ids_1_and_1_point_0_and_padded_are_one_id(tmp_path, cache):
    csv = tmp_path / "log.csv"
    csv.write_text(f"user,item,timestamp\n1,5,{T0}\n1.0,5.0,{T0 + 1}\n 1 ,007,{T0 + 2}\n2,5,{T0}\n")
    log = read_events(csv, cache_dir=cache)
    assert log.user_ids.tolist() == ["1", "2"]
    assert history(log, "1") == ["5", "5", "007"]  # "007" is text, kept verbatim
    assert log.stats.ids_normalised == 3  # "1.0", " 1 " and "5.0"
    assert any("normalised" in n for n in log.stats.notes)
    jsonl = tmp_path / "log.jsonl"
    rows = [{"user": 1, "item": "a", "timestamp": T0}, {"user": 1.0, "item": "b", "timestamp": T0 + 1},
            {"user": "1", "item": "c", "timestamp": T0 + 2}]  # fmt: skip
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = read_events(jsonl, cache_dir=cache)
    assert log.user_ids.tolist() == ["1"] and history(log, "1") == ["a", "b", "c"]
    clean = read_events(frame())
    assert clean.stats.ids_normalised == 0 and not any("normalised" in n for n in clean.stats.notes)


@pytest.mark.parametrize("kind", ["csv", "tsv", "DataFrame", "table"])
def test_a_repeated_column_name_is_refused_not_half_read(tmp_path, cache, kind):
    rows = [["1", "5", "6", str(T0)], ["2", "5", "7", str(T0 + 1)]]
    names = ["user", "item", "item", "timestamp"]
    if kind in ("csv", "tsv"):
        source = tmp_path / f"log.{kind}"
        sep = "," if kind == "csv" else "\t"
        source.write_text("\n".join(sep.join(r) for r in [names, *rows]) + "\n")
    elif kind == "DataFrame":
        source = pd.DataFrame(rows, columns=names)
    else:
        source = pa.table([pa.array(c) for c in zip(*rows)], names=names)
    with pytest.raises(SchemaError, match=r"several columns named \['item'\]"):
        read_events(source, cache_dir=cache) if kind in ("csv", "tsv") else read_events(source)
    ok = pd.DataFrame(rows, columns=["user", "item", "other", "timestamp"])  # unused: fine
    assert read_events(ok).stats.rows_kept == 2


def test_huge_integer_ids_keep_every_digit_in_csv(tmp_path, cache):
    big = 2**70
    p = tmp_path / "log.csv"
    p.write_text(f"user,item,timestamp\n{big},{big + 1},5\n{big},{big + 3},6\n")
    log = read_events(p, cache_dir=cache)
    assert log.user_ids.tolist() == [str(big)]
    assert history(log, str(big)) == [str(big + 1), str(big + 3)]


def test_uint64_max_ids_in_parquet(tmp_path, cache):
    top = 2**64 - 1
    table = pa.table(
        {
            "user": pa.array([top, top], pa.uint64()),
            "item": pa.array([top - 1, 1], pa.uint64()),
            "timestamp": [1, 2],
        }
    )
    p = tmp_path / "ids.parquet"
    pq.write_table(table, p)
    log = read_events(p, cache_dir=cache)
    assert log.user_ids.tolist() == ["18446744073709551615"]
    assert history(log, "18446744073709551615") == ["18446744073709551614", "1"]


def test_huge_python_ints_in_object_column_keep_every_digit():
    df = pd.DataFrame({"user": [2**70, "abc"], "item": ["x", "y"], "timestamp": [1, 2]})
    log = read_events(df)
    assert sorted(log.user_ids.tolist()) == [str(2**70), "abc"]


def test_encoding_argument_reads_latin1(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_bytes("user,item,timestamp\nJosé,Crème,5\n".encode("latin-1"))
    log = read_events(p, encoding="latin-1", cache_dir=cache)
    assert history(log, "José") == ["Crème"]
    pj = tmp_path / "log.jsonl"
    pj.write_bytes('{"user": "José", "item": "Crème", "timestamp": 5}\n'.encode("latin-1"))
    assert history(read_events(pj, encoding="latin-1", cache_dir=cache), "José") == ["Crème"]


def test_single_event_users_are_kept_and_counted():
    df = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    log = read_events(df)
    assert log.num_users == 2
    assert log.stats.single_event_users == 1


def test_unsorted_input_is_sorted_and_counted():
    log = read_events(frame())
    assert log.stats.rows_reordered == 4  # row 3 stays in place
    assert read_events(frame().sort_values(["user", "timestamp"])).stats.rows_reordered == 0
    assert log.stats.rows_time_reordered == 5  # every event of a and b is out of time order


def test_grouping_users_is_not_reported_as_time_re_sorting():
    """Issue 18: a SASRec-style file in per-user order was reported as '287,098 rows re-sorted
    by time'; its rows only move to group the users (string ids: "10" sorts before "2")."""
    users = ["2"] * 3 + ["10"] * 2 + ["1"] * 2
    log = read_events(
        pd.DataFrame({"user": users, "item": list("abcdefg")}), EventSchema(timestamp=None)
    )
    assert log.stats.rows_reordered > 0 and log.stats.rows_time_reordered == 0
    assert "0 of them re-sorted by time" in log.stats.summary()


def test_errors_in_later_batches_report_the_input_row(monkeypatch):
    monkeypatch.setattr(readers, "_BATCH_SIZE", 3)
    df = pd.DataFrame({"user": ["u"] * 8, "item": list("abcdefgh"), "timestamp": list(range(1, 9))})
    log = read_events(df)
    assert log.dataset[ROW] == list(range(8))
    df.loc[7, "timestamp"] = -1
    with pytest.raises(DataError) as e:
        read_events(df)
    assert e.value.row == 7


# ---------------------------------------------------------------------------------------------
# bad input: files
# ---------------------------------------------------------------------------------------------
def test_missing_file_raises_file_not_found_naming_path(tmp_path):
    p = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_events(p)


def test_unknown_extension_lists_supported_formats(tmp_path):
    p = tmp_path / "log.xlsx"
    p.write_text("user,item,timestamp\n")
    with pytest.raises(FileFormatError, match=r"\.xlsx.*\.parquet.*\.csv.*\.jsonl"):
        read_events(p)


def test_unknown_format_argument(tmp_path):
    p = tmp_path / "log.csv"
    frame().to_csv(p, index=False)
    with pytest.raises(FileFormatError, match="supported"):
        read_events(p, format="excel")


def test_csv_named_parquet_is_detected(tmp_path):
    p = tmp_path / "log.parquet"
    frame().to_csv(p, index=False)
    with pytest.raises(FileFormatError, match=r"log\.parquet.*not a parquet file.*text") as e:
        read_events(p)
    assert "format='csv'" in str(e.value)


def test_binary_file_named_csv_is_detected(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes(b"user,item\n" + bytes(range(256)) * 4)
    with pytest.raises(FileFormatError, match=r"log\.csv.*binary"):
        read_events(p)


def test_parquet_named_jsonl_is_detected(tmp_path):
    p = tmp_path / "log.jsonl"
    frame().to_parquet(p, index=False)
    with pytest.raises(FileFormatError, match=r"log\.jsonl.*looks like parquet") as e:
        read_events(p)
    assert "format='parquet'" in str(e.value)


def test_jsonl_named_csv_is_detected(tmp_path):
    p = tmp_path / "log.csv"
    frame().to_json(p, orient="records", lines=True)
    with pytest.raises(FileFormatError, match=r"log\.csv.*JSON"):
        read_events(p)


def test_gzip_named_csv_is_detected(tmp_path):
    import gzip

    p = tmp_path / "log.csv"
    p.write_bytes(gzip.compress(frame().to_csv(index=False).encode()))
    with pytest.raises(FileFormatError, match="gzip"):
        read_events(p)


def test_non_utf8_csv_suggests_latin1(tmp_path):
    p = tmp_path / "log.csv"
    p.write_bytes("user,item,timestamp\nJosé,a,5\n".encode("latin-1"))
    with pytest.raises(FileFormatError, match=r"log\.csv.*utf-8.*encoding='latin-1'"):
        read_events(p)


def test_non_utf8_later_in_csv_suggests_latin1(tmp_path, cache):
    p = tmp_path / "log.csv"
    lines = "".join(f"u{i},i{i},{i}\n" for i in range(20_000))
    p.write_bytes(("user,item,timestamp\n" + lines + "Zoë,a,5\n").encode("latin-1"))
    with pytest.raises(FileFormatError, match=r"encoding='latin-1'"):
        read_events(p, cache_dir=cache)


def test_truncated_jsonl_names_its_line_and_nothing_else_is_printed(tmp_path, cache, capfd):
    p = tmp_path / "log.jsonl"
    good = json.dumps({"user": "a", "item": "x", "timestamp": T0})
    p.write_text(f"{good}\n{good}\n{good[:30]}\n")
    with pytest.raises(FileFormatError, match=r"line 3 is not valid JSON .*truncated"):
        read_events(p, cache_dir=cache)
    assert "Failed to load JSON" not in capfd.readouterr().err  # no stray copy from datasets


def test_non_utf8_jsonl_suggests_latin1(tmp_path, cache):
    p = tmp_path / "log.jsonl"
    p.write_bytes('{"user": "José", "item": "a", "timestamp": 5}\n'.encode("latin-1"))
    with pytest.raises(FileFormatError, match=r"log\.jsonl.*encoding='latin-1'"):
        read_events(p, cache_dir=cache)


def test_ragged_csv_is_a_file_format_error(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_text("user,item,timestamp\nu,a,1\nu,b,2,extra,fields\n")
    with pytest.raises(FileFormatError, match=r"log\.csv"):
        read_events(p, cache_dir=cache)


def test_invalid_json_is_a_file_format_error(tmp_path, cache):
    p = tmp_path / "log.jsonl"
    p.write_text('{"user": "u", "item": "a", "timestamp": 1}\n{"user": "u", "item": \n')
    with pytest.raises(FileFormatError, match=r"log\.jsonl"):
        read_events(p, cache_dir=cache)


@pytest.mark.parametrize("name", ["log.csv", "log.jsonl", "log.parquet", "log.tsv"])
def test_empty_file_raises_empty_log_error(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(EmptyLogError, match="empty"):
        read_events(p)


def test_whitespace_only_file_is_empty(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text("\n \n")
    with pytest.raises(EmptyLogError):
        read_events(p)


def test_header_only_csv_raises_empty_log_error(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item,timestamp\n")
    with pytest.raises(EmptyLogError, match="no rows"):
        read_events(p)


def test_zero_row_parquet_raises_empty_log_error(tmp_path):
    p = tmp_path / "log.parquet"
    frame().iloc[:0].to_parquet(p, index=False)
    with pytest.raises(EmptyLogError):
        read_events(p)


def test_zero_row_dataframe_raises_empty_log_error():
    with pytest.raises(EmptyLogError):
        read_events(frame().iloc[:0])


# ---------------------------------------------------------------------------------------------
# bad input: columns and values
# ---------------------------------------------------------------------------------------------
def test_missing_column_lists_existing_columns():
    df = frame().rename(columns={"timestamp": "ts"})
    with pytest.raises(SchemaError) as e:
        read_events(df)
    msg = str(e.value)
    assert "'timestamp' (EventSchema.timestamp)" in msg and "['user', 'item', 'ts']" in msg


def test_missing_column_in_file_lists_existing_columns(tmp_path, cache):
    p = tmp_path / "log.csv"
    frame().to_csv(p, index=False)
    with pytest.raises(SchemaError, match=r"'title'.*\['user', 'item', 'timestamp'\]"):
        read_events(p, EventSchema(title="title"), cache_dir=cache)


def test_null_user_id_names_column_and_row():
    df = frame(user=["a", "b", None, "b", "a"])
    with pytest.raises(DataError, match="missing id") as e:
        read_events(df)
    assert (e.value.column, e.value.row) == ("user", 2)


def test_empty_item_id_names_column_and_row():
    df = frame(item=["x", "y", "z", "  ", ""])
    with pytest.raises(DataError, match="empty id") as e:
        read_events(df)
    assert (e.value.column, e.value.row) == ("item", 3)


def test_blank_id_field_in_csv_is_a_null_id(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_text("uid,item,timestamp\nu,a,1\n,b,2\n")
    with pytest.raises(DataError) as e:
        read_events(p, EventSchema(user="uid"), cache_dir=cache)
    assert (e.value.column, e.value.row) == ("uid", 1)


def test_nested_id_column_is_a_type_error():
    df = frame(item=[[1], [2], [3], [4], [5]])
    with pytest.raises(DataError, match=r"type list") as e:
        read_events(df)
    assert e.value.column == "item"


def test_boolean_id_column_is_a_type_error():
    with pytest.raises(DataError, match="type bool") as e:
        read_events(frame(user=[True, False, True, False, True]))
    assert e.value.column == "user"


def test_non_integral_float_id():
    with pytest.raises(DataError, match="non-integral float id 2.5") as e:
        read_events(frame(item=[1.0, 2.0, 2.5, 3.0, 4.0]))
    assert (e.value.column, e.value.row) == ("item", 2)


def test_float_id_beyond_exact_range():
    with pytest.raises(DataError, match="too large to be exact") as e:
        read_events(frame(item=[1.0, 2.0**60, 3.0, 4.0, 5.0]))
    assert e.value.row == 1


def test_mixed_type_object_column_names_row():
    df = frame(item=["x", "y", 2.5, "z", "w"])
    with pytest.raises(DataError, match="float") as e:
        read_events(df)
    assert (e.value.column, e.value.row) == ("item", 2)


def test_unparsable_timestamp_names_column_row_and_value():
    df = frame(timestamp=["2020-01-01", "2020-01-02", "yesterday", "2020-01-03", "2020-01-04"])
    with pytest.raises(DataError, match="unparsable timestamp 'yesterday'") as e:
        read_events(df, EventSchema(timestamp="timestamp"))
    assert (e.value.column, e.value.row) == ("timestamp", 2)


def test_unparsable_numeric_text_timestamp(tmp_path, cache):
    p = tmp_path / "log.csv"
    p.write_text("user,item,time\nu,a,100\nu,b,1O1\n")
    with pytest.raises(DataError, match="unparsable timestamp '1O1'") as e:
        read_events(p, EventSchema(timestamp="time"), cache_dir=cache)
    assert (e.value.column, e.value.row) == ("time", 1)


def test_null_timestamp_names_row():
    df = frame(timestamp=[T0, T0, np.nan, T0, T0])
    with pytest.raises(DataError, match="missing timestamp") as e:
        read_events(df)
    assert (e.value.column, e.value.row) == ("timestamp", 2)


def test_negative_timestamp():
    with pytest.raises(DataError, match="negative timestamp -5") as e:
        read_events(frame(timestamp=[T0, T0, T0, -5, T0]))
    assert e.value.row == 3


def test_date_before_1970_is_rejected():
    df = frame(timestamp=["2020-01-01", "1969-12-31", "2020-01-01", "2020-01-01", "2020-01-01"])
    with pytest.raises(DataError, match="before 1970") as e:
        read_events(df)
    assert e.value.row == 1


def test_timestamp_after_2100_hints_at_the_unit():
    ms = [(T0 + k) * 1000 for k in range(5)]
    with pytest.raises(DataError, match=r"after 2100.*timestamp_unit='ms'") as e:
        read_events(frame(timestamp=ms), EventSchema(timestamp_unit="s"))
    assert (e.value.column, e.value.row) == ("timestamp", 0)
    with pytest.raises(DataError, match="after 2100") as e:  # auto: seconds, but past 2100
        read_events(frame(timestamp=[T0, T0, MAX_TIMESTAMP + 1, T0, T0]))
    assert e.value.row == 2


@pytest.mark.parametrize("as_text", [False, True])
def test_seconds_mixed_with_milliseconds_are_refused_not_put_in_1970(tmp_path, as_text):
    mixed = [(T0 + 30) * 1000, T0 + 5, (T0 + 10) * 1000, T0 + 1, (T0 + 20) * 1000]
    source = frame(timestamp=mixed)
    if as_text:  # a CSV column: read as text, then as numbers
        source.to_csv(tmp_path / "log.csv", index=False)
        source = tmp_path / "log.csv"
    with pytest.raises(
        DataError, match=r"mix units \(milliseconds from row 0, seconds from row 1\)"
    ):
        read_events(source)
    # one unit throughout, small values included (relative times), is read as before
    log = read_events(frame(timestamp=[(T0 + k) * 1000 for k in (30, 5, 10, 1, 20)]))
    assert log.history("b").timestamps.tolist() == [T0 + 1, T0 + 5]


def test_explicit_unit_putting_everything_in_1970_is_noted(caplog):
    with caplog.at_level(logging.WARNING, logger="userfm.data"):
        log = read_events(frame(), EventSchema(timestamp_unit="ms"))
    assert any("1970" in n for n in log.stats.notes)
    assert "1970" in caplog.text


def test_boolean_timestamp_column_is_a_type_error():
    with pytest.raises(DataError, match="type bool") as e:
        read_events(frame(timestamp=[True, False, True, False, True]))
    assert e.value.column == "timestamp"


def test_list_timestamp_column_is_a_type_error():
    with pytest.raises(DataError, match=r"type list") as e:
        read_events(frame(timestamp=[[1], [2], [3], [4], [5]]))
    assert e.value.column == "timestamp"


def test_datetime_unit_on_numeric_column_is_an_error():
    with pytest.raises(DataError, match="numeric"):
        read_events(frame(), EventSchema(timestamp_unit="datetime"))


def test_exact_duplicates_dropped_by_default_counted_and_logged(caplog):
    df = pd.DataFrame(
        {
            "user": ["u", "u", "u", "u", "v"],
            "item": ["a", "a", "a", "b", "a"],
            "timestamp": [1, 1, 2, 1, 1],
        }
    )
    with caplog.at_level(logging.WARNING, logger="userfm.data"):
        log = read_events(df)
    assert log.stats.duplicates_dropped == 1
    assert len(log) == 4
    assert log.dataset[ROW] == [0, 3, 2, 4]  # the first occurrence (row 0) is kept
    assert "duplicate" in caplog.text


def test_duplicates_keep_and_error():
    df = pd.DataFrame({"user": ["u", "u", "u"], "item": ["a", "b", "a"], "timestamp": [1, 2, 1]})
    assert len(read_events(df, duplicates="keep")) == 3
    with pytest.raises(DataError, match="row 2 repeats row 0") as e:
        read_events(df, duplicates="error")
    assert e.value.row == 2


def test_rows_differing_only_in_an_attribute_are_not_duplicates():
    df = pd.DataFrame(
        {"user": ["u", "u"], "item": ["a", "a"], "timestamp": [1, 1], "act": ["view", "buy"]}
    )
    assert len(read_events(df, EventSchema(action="act"))) == 2


def test_min_events_drops_short_users_and_counts_them(caplog):
    df = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b", "b", "c"],
            "item": list("xyzxyz"),
            "timestamp": [1, 2, 3, 1, 2, 1],
        }
    )
    with caplog.at_level(logging.INFO, logger="userfm.data"):
        log = read_events(df, min_events=3)
    assert log.user_ids.tolist() == ["a"]
    assert (log.stats.short_users_dropped, log.stats.short_user_rows_dropped) == (2, 3)
    assert (log.stats.rows_read, log.stats.rows_kept) == (6, 3)
    assert "min_events=3" in caplog.text


def test_min_events_counts_after_dropping_duplicates():
    df = pd.DataFrame(
        {"user": ["a", "a", "b", "b"], "item": ["x", "x", "x", "y"], "timestamp": [1, 1, 1, 2]}
    )
    log = read_events(df, min_events=2)
    assert log.user_ids.tolist() == ["b"]
    assert log.stats.duplicates_dropped == 1 and log.stats.short_users_dropped == 1


def test_min_events_removing_every_user_is_an_empty_log():
    with pytest.raises(EmptyLogError, match="min_events=10"):
        read_events(frame(), min_events=10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_events": 0}, "min_events"),
        ({"duplicates": "ignore"}, "duplicates"),
        ({"schema": EventSchema(extra=("_row",))}, "extra"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        read_events(frame(), **kwargs)


def test_schema_extra_cannot_shadow_a_canonical_column():
    with pytest.raises(ConfigError, match="extra"):
        EventSchema(extra=("user",))


def test_unsupported_source_type():
    with pytest.raises(TypeError, match="source"):
        read_events([{"user": "u"}])


def test_json_records_with_missing_fields_report_null_rows(tmp_path, cache):
    p = tmp_path / "log.jsonl"
    rows = [{"user": "u", "item": "a", "timestamp": 1}, {"user": "u", "timestamp": 2}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError) as e:
        read_events(p, cache_dir=cache)
    assert (e.value.column, e.value.row) == ("item", 1)


def test_json_ids_of_mixed_types_become_strings(tmp_path, cache):
    p = tmp_path / "log.jsonl"
    p.write_text(
        '{"user": 1, "item": "a", "timestamp": 1}\n'
        '{"user": "b\\"q\\u00e9", "item": "a", "timestamp": 2}\n'
    )
    log = read_events(p, cache_dir=cache)
    assert sorted(log.user_ids.tolist()) == ["1", 'b"qé']


def test_json_nested_id_value_is_an_error(tmp_path, cache):
    p = tmp_path / "log.jsonl"
    p.write_text(
        '{"user": 1, "item": "a", "timestamp": 1}\n{"user": [1], "item": "a", "timestamp": 2}\n'
    )
    with pytest.raises(DataError, match="nested") as e:
        read_events(p, cache_dir=cache)
    assert (e.value.column, e.value.row) == ("user", 1)


def test_take_rows_gathers_in_order_across_batches():
    from userfm.data.log import take_rows

    ds = datasets.Dataset.from_dict({"a": list(range(10)), "b": [str(i) for i in range(10)]})
    order = np.array([9, 0, 5, 5, 2, 7, 1])
    out = take_rows(ds, order, batch_size=3)
    assert out["a"] == order.tolist() and out["b"] == [str(i) for i in order]
    assert take_rows(ds.select([3, 1, 2]), np.array([2, 0]), batch_size=1)["a"] == [2, 3]


def test_reading_draws_no_progress_bar_unless_stderr_is_a_terminal(capsys):
    """HF datasets drew its "validating events" bar into nohup logs and captured output; it
    follows the terminal now, as every userfm bar does, and ``progress=True`` forces it."""
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "timestamp": [1, 2, 3]})
    readers.read_events(frame)  # capsys: stderr is not a terminal
    assert "validating events" not in capsys.readouterr().err
    readers.read_events(frame, progress=True)
    assert "userfm: validating events" in capsys.readouterr().err
    from datasets.utils import logging as ds_logging

    assert ds_logging.is_progress_bar_enabled()  # the global setting is left as it was
