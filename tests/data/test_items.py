"""Item side tables: ids read as the event log reads them, text values, errors naming rows."""

from __future__ import annotations

import datasets
import pandas as pd
import pyarrow as pa
import pytest

from userfm.data.formats import load_movielens_100k, movielens_100k_items
from userfm.data.items import ItemTable, UnknownItemError, item_text, items_from_log, read_items
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError, DataError, EmptyLogError, FileFormatError, SchemaError

T0 = 1_600_000_000


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


def movies() -> pd.DataFrame:
    """Three items: a number column (year), a missing title, a blank genre."""
    return pd.DataFrame(
        {
            "item": [1, 2, 3],
            "title": ["Toy Story (1995)", " Heat ", None],
            "year": [1995, 1995, 1996],
            "genres": ["Animation|Comedy", "  ", "Drama"],
        }
    )


EXPECTED = ItemTable(
    ids=["1", "2", "3"],
    columns={
        "title": ["Toy Story (1995)", "Heat", None],
        "year": ["1995", "1995", "1996"],
        "genres": ["Animation|Comedy", None, "Drama"],
    },
)


# ---- ids: exactly the event readers' -----------------------------------------------------
def test_ids_7_7point0_and_spaced_7_are_the_log_item(tmp_path, cache):
    events = pd.DataFrame({"user": ["a", "a"], "item": [7, 8], "timestamp": [T0, T0 + 1]})
    log_items = set(read_events(events).to_pandas()["item"])
    assert log_items == {"7", "8"}

    (tmp_path / "spaced.csv").write_text("item,title\n 7 ,Seven\n8,Eight\n")
    (tmp_path / "float.jsonl").write_text('{"item": 7.0, "title": "Seven"}\n{"item": 8}\n')
    tables = [
        read_items(tmp_path / "spaced.csv", cache_dir=cache),
        read_items(tmp_path / "float.jsonl", cache_dir=cache),
        read_items(pd.DataFrame({"item": [7.0, 8.0]})),
        read_items(pa.table({"item": ["7.0", "8"]})),
    ]
    for table in tables:
        assert table.ids == ["7", "8"]
        assert set(table.ids) <= log_items


@pytest.mark.parametrize("ids", [[7, " 7 "], [7.0, 7], ["7", "7.0"]])
def test_ids_that_normalise_alike_are_one_duplicate_item(ids):
    frame = pd.DataFrame({"item": [*ids[:1], 8, *ids[1:]], "title": ["a", "b", "c"]})
    with pytest.raises(DataError, match=r"duplicate item id '7' \(rows 0 and 2\)") as e:
        read_items(frame)
    assert (e.value.column, e.value.row) == ("item", 2)


def test_duplicate_id_in_a_file_names_the_id_column_and_both_rows(tmp_path, cache):
    path = tmp_path / "items.tsv"
    path.write_text("movie\ttitle\n5\ta\n6\tb\n5\tc\n")
    with pytest.raises(DataError, match=r"'5' \(rows 0 and 2\).*column 'movie', row 2"):
        read_items(path, id_column="movie", cache_dir=cache)


@pytest.mark.parametrize(
    ("text", "row", "match"),
    [
        ("item,title\n1,a\n,b\n", 1, "missing id"),
        ("item,title\n1,a\n2,b\n   ,c\n", 2, "empty id"),
    ],
)
def test_null_or_blank_id_names_its_row(tmp_path, cache, text, row, match):
    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        read_items(path, cache_dir=cache)
    assert (e.value.column, e.value.row) == ("item", row)


def test_non_integral_float_id_names_its_row():
    with pytest.raises(DataError, match="non-integral float id 2.5") as e:
        read_items(pd.DataFrame({"item": [1.0, 2.5]}))
    assert (e.value.column, e.value.row) == ("item", 1)


# ---- columns and sources -----------------------------------------------------------------
def test_missing_id_column_is_named_with_the_columns_present(tmp_path, cache):
    path = tmp_path / "items.csv"
    path.write_text("asin,title\nB1,a\n")
    with pytest.raises(SchemaError, match=r"'item'.*\['asin', 'title'\].*id_column"):
        read_items(path, cache_dir=cache)
    assert read_items(path, id_column="asin", cache_dir=cache).ids == ["B1"]


def test_missing_text_column_is_named():
    with pytest.raises(SchemaError, match=r"text column 'brand' not found.*'genres'"):
        read_items(movies(), text_columns=["title", "brand"])


def test_an_id_in_the_dataframe_index_gets_a_hint():
    with pytest.raises(SchemaError, match=r"reset_index"):
        read_items(movies().set_index("item"))


def test_csv_parquet_jsonl_and_dataframe_give_the_same_table(tmp_path, cache):
    df = movies()
    df.to_csv(tmp_path / "m.csv", index=False)
    df.to_parquet(tmp_path / "m.parquet", index=False)
    df.to_json(tmp_path / "m.jsonl", orient="records", lines=True)
    sources = [
        tmp_path / "m.csv",
        tmp_path / "m.parquet",
        tmp_path / "m.jsonl",
        df,
        pa.Table.from_pandas(df, preserve_index=False),
        datasets.Dataset.from_pandas(df, preserve_index=False),
    ]
    for source in sources:
        assert read_items(source, cache_dir=cache) == EXPECTED, source


def test_text_columns_pick_and_order_the_columns():
    table = read_items(movies(), text_columns=["genres", "title"])
    assert list(table.columns) == ["genres", "title"]
    assert table.texts()[0] == "genres: Animation, Comedy. title: Toy Story (1995)"


def test_list_values_are_joined_and_all_null_columns_kept():
    frame = pd.DataFrame(
        {"item": ["a", "b", "c"], "tags": [["x", "y"], ["z", None], None], "brand": None}
    )
    table = read_items(frame)
    assert table.columns == {"tags": ["x|y", "z", None], "brand": [None, None, None]}


def test_a_shuffled_dataset_is_read_in_its_row_order():
    ds = datasets.Dataset.from_pandas(movies(), preserve_index=False).select([2, 0])
    assert read_items(ds).ids == ["3", "1"]


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("empty.csv", "", EmptyLogError),
        ("header.csv", "item,title\n", EmptyLogError),
        ("items.txt", "item\n1\n", FileFormatError),
    ],
)
def test_file_level_checks_are_the_event_readers(tmp_path, cache, name, text, error):
    (tmp_path / name).write_text(text)
    with pytest.raises(error):
        read_items(tmp_path / name, cache_dir=cache)
    with pytest.raises(FileNotFoundError):
        read_items(tmp_path / "absent.csv", cache_dir=cache)


def test_an_empty_frame_is_refused():
    with pytest.raises(EmptyLogError, match="no items"):
        read_items(pd.DataFrame({"item": [], "title": []}))


def test_text_columns_naming_the_id_column_is_refused():
    with pytest.raises(ConfigError, match="id column 'item'"):
        read_items(movies(), text_columns=["item", "title"])


# ---- ItemTable and item_text -------------------------------------------------------------
def test_item_text_format():
    values = {"title": " Toy Story (1995) ", "genres": "Animation|Children's| Comedy", "x": ""}
    assert (
        item_text(values, ["title", "genres", "x"])
        == "title: Toy Story (1995). genres: Animation, Children's, Comedy"
    )
    assert item_text(values, ["genres", "title"]).startswith("genres: Animation")
    assert item_text({"title": None, "genres": "  "}, ["title", "genres"]) is None
    with pytest.raises(SchemaError, match="'brand'"):
        item_text(values, ["brand"])


def test_texts_subset_and_to_pandas():
    assert EXPECTED.texts() == [
        "title: Toy Story (1995). year: 1995. genres: Animation, Comedy",
        "title: Heat. year: 1995",
        "year: 1996. genres: Drama",
    ]
    assert EXPECTED.texts(["title"]) == ["title: Toy Story (1995)", "title: Heat", None]
    with pytest.raises(SchemaError, match="'brand'"):
        EXPECTED.texts(["brand"])

    sub = EXPECTED.subset([3, " 1 "])  # normalised like the table's ids
    assert sub.ids == ["3", "1"]
    assert sub.columns["title"] == [None, "Toy Story (1995)"]
    with pytest.raises(UnknownItemError, match="'9'"):
        EXPECTED.subset(["1", "9"])

    df = EXPECTED.to_pandas()
    assert list(df.columns) == ["item", "title", "year", "genres"]
    assert df["item"].tolist() == ["1", "2", "3"]
    assert df["title"].tolist()[2] is None


# ---- from an event log -------------------------------------------------------------------
def test_items_from_the_synthetic_log_once_each_with_title_and_category():
    events = generate_synthetic_log(SyntheticConfig(num_users=30, num_items=40, seed=3))
    log = read_events(events, EventSchema(action="action", category="category", title="title"))
    table = items_from_log(log)

    assert list(table.columns) == ["title", "category"]
    assert sorted(table.ids) == sorted(set(log.to_pandas()["item"]))
    truth = events.drop_duplicates("item").set_index("item")
    for item, title, category in zip(
        table.ids, table.columns["title"], table.columns["category"], strict=True
    ):
        assert (title, category) == (truth.loc[item, "title"], truth.loc[item, "category"])
    assert items_from_log(log, ["category"]).columns.keys() == {"category"}
    with pytest.raises(SchemaError, match="'action'"):
        items_from_log(log, ["action"])


def test_items_from_log_last_value_wins():
    events = pd.DataFrame(
        {
            "user": ["a", "a", "b"],
            "item": ["x", "y", "x"],
            "timestamp": [T0, T0 + 1, T0 + 2],
            "title": ["old", "Y", "new"],
            "brand": ["B", None, "B"],
        }
    )
    log = read_events(events, EventSchema(title="title", extra=("brand",)))
    table = items_from_log(log)
    assert table.ids == ["x", "y"]
    assert table.columns == {"title": ["new", "Y"], "brand": ["B", None]}


# ---- MovieLens-100K ----------------------------------------------------------------------
def test_movielens_100k_items(ml100k_dir):
    items = movielens_100k_items(ml100k_dir)
    assert len(items) == 1682
    toy = items.subset(["1"]).columns
    assert toy == {
        "title": ["Toy Story (1995)"],
        "year": ["1995"],
        "genres": ["Animation|Children's|Comedy"],
    }
    log = load_movielens_100k(ml100k_dir)
    assert set(items.ids) == set(log.to_pandas()["item"])
    assert movielens_100k_items(ml100k_dir / "u.item").ids == items.ids
