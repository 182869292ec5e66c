"""Loaders of public log formats: the real MovieLens-100K (when present) and tiny fake files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from userfm.data.formats import (
    load_amazon_reviews,
    load_movielens_1m,
    load_movielens_100k,
    load_sasrec_txt,
)
from userfm.data.log import ROW
from userfm.errors import DataError


def test_movielens_100k_real_files(ml100k_dir):
    log = load_movielens_100k(ml100k_dir)
    assert len(log) == 100_000
    assert log.num_users == 943
    assert log.stats.items == 1682
    assert log.has_time
    attrs = log.item_attributes(("category", "title", "year"))
    assert attrs["1"] == {
        "category": "Animation|Children's|Comedy",
        "title": "Toy Story (1995)",
        "year": "1995",
    }
    assert attrs["2"]["category"] == "Action|Adventure|Thriller"
    df = log.to_pandas()
    assert set(df["action"]) == {"1", "2", "3", "4", "5"}
    first = df[(df.user == "196") & (df.item == "242")].iloc[0]  # line 1 of u.data
    assert (first.timestamp, first.action) == (881250949, "3")
    assert log.dataset.data.table.column(ROW).to_numpy().max() == 99_999


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


def _fake_ml100k(folder, extra_line=""):
    folder.mkdir()
    (folder / "u.data").write_text(
        f"1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250000\n{extra_line}"
    )
    flags = ["0"] * 19
    toy, gold = list(flags), list(flags)
    toy[3] = toy[4] = toy[5] = "1"
    gold[1] = "1"
    lines = [
        "|".join(["1", "Toy Story (1995)", "01-Jan-1995", "", "http://x", *toy]),
        "|".join(["2", "Amélie (2001)", "01-Jan-2001", "", "http://y", *gold]),
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def test_loaders_draw_no_progress_bar_unless_stderr_is_a_terminal(cache, tmp_path, capsys):
    """A nohup log of a benchmark held "Generating train split", "Map" and "userfm:
    ordering events" bars from reading MovieLens: the loaders follow the terminal now."""
    folder = _fake_ml100k(tmp_path / "ml-100k")
    (folder / "u.data").write_text("2\t1\t4\t881250000\n1\t2\t3\t881250950\n1\t1\t5\t881250949\n")
    log = load_movielens_100k(folder, cache_dir=cache)  # capsys: stderr is not a terminal
    assert log.stats.rows_reordered > 0  # the ordering pass ran
    err = capsys.readouterr().err
    assert not any(bar in err for bar in ("Generating", "Map", "ordering events")), err


def test_movielens_100k_fake_folder_with_user_attributes(cache, tmp_path):
    folder = _fake_ml100k(tmp_path / "ml-100k")
    log = load_movielens_100k(folder / "u.data", user_attributes=True, cache_dir=cache)
    df = log.to_pandas()
    assert list(df.columns) == [
        "user", "item", "timestamp", "action", "category", "title", "year", "gender", "age", "occupation",
    ]  # fmt: skip
    row = df[(df.user == "1") & (df.item == "2")].iloc[0]
    assert (row.title, row.category, row.year, row.action) == (
        "Amélie (2001)",
        "Action",
        "2001",
        "3",
    )
    assert (row.gender, row.age, row.occupation) == ("M", "24", "technician")
    assert df[df.item == "1"].category.iloc[0] == "Animation|Children's|Comedy"


def test_movielens_100k_validation_applies_with_u_data_rows(cache, tmp_path):
    folder = _fake_ml100k(tmp_path / "ml-100k", extra_line="3\t1\t4\t-7\n")
    with pytest.raises(DataError) as e:
        load_movielens_100k(folder, cache_dir=cache)
    assert (e.value.column, e.value.row) == ("timestamp", 3)


def test_movielens_100k_missing_item_file_says_what_is_needed(tmp_path):
    folder = _fake_ml100k(tmp_path / "ml-100k")
    (folder / "u.item").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.item not found.*u\.data.*genre"):
        load_movielens_100k(folder)


def _fake_ml1m(folder):
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Les Misérables: Part 2 (1998)::Drama|War\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_movielens_1m_fake_folder(cache, tmp_path):
    folder = _fake_ml1m(tmp_path / "ml-1m")
    log = load_movielens_1m(folder, user_attributes=True, cache_dir=cache)
    assert (len(log), log.num_users) == (3, 2)
    assert log.history("1").items.tolist() == ["1193", "661"]
    df = log.to_pandas()
    peach = df[df.item == "661"].iloc[0]
    assert (peach.category, peach.title, peach.year, peach.action) == (
        "Animation|Children's|Musical",
        "James and the Giant Peach (1996)",
        "1996",
        "3",
    )
    assert df[df.user == "2"].iloc[0][["gender", "age", "occupation"]].tolist() == ["M", "56", "16"]


def test_movielens_1m_latin1_titles(cache, tmp_path):
    folder = _fake_ml1m(tmp_path / "ml-1m")
    (folder / "ratings.dat").write_text("5::3::2::978300000\n5::1193::2::978300001\n")
    log = load_movielens_1m(folder, cache_dir=cache)
    attrs = log.item_attributes()
    assert attrs["3"]["title"] == "Les Misérables: Part 2 (1998)"


def test_movielens_1m_missing_ratings(tmp_path):
    folder = _fake_ml1m(tmp_path / "ml-1m")
    (folder / "ratings.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat not found.*movies\.dat"):
        load_movielens_1m(folder)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


REVIEWS = [
    {
        "reviewerID": "A1",
        "asin": "B2",
        "unixReviewTime": 1400000100,
        "overall": 4.0,
        "reviewText": "ok",
    },
    {
        "reviewerID": "A1",
        "asin": "B1",
        "unixReviewTime": 1400000000,
        "overall": 5.0,
        "reviewText": "great",
    },
    {
        "reviewerID": "A2",
        "asin": "B3",
        "unixReviewTime": 1300000000,
        "overall": 1.0,
        "reviewText": "bad",
    },
]


def test_amazon_reviews_without_metadata(cache, tmp_path):
    log = load_amazon_reviews(_write_jsonl(tmp_path / "reviews.json", REVIEWS), cache_dir=cache)
    assert log.history("A1").items.tolist() == ["B1", "B2"]
    assert log.history("A1").actions.tolist() == ["5", "4"]
    assert log.columns == ["user", "item", "timestamp", "action"]


@pytest.mark.parametrize(
    "b1,b2",
    [
        ({"categories": [["Beauty", "Makeup"], ["Beauty", "Eyes"]]}, {"categories": [["Tools"]]}),
        ({"category": ["Beauty", "Makeup", "Eyes"]}, {"category": ["Tools"]}),
    ],
)
def test_amazon_reviews_with_metadata(cache, tmp_path, b1, b2):
    reviews = _write_jsonl(tmp_path / "reviews.json", REVIEWS)
    meta = _write_jsonl(
        tmp_path / "meta.json",
        [
            {"asin": "B1", "title": "Lipstick", **b1},
            {"asin": "B2", "title": "Hammer", **b2},
            {"asin": "B1", "title": "duplicate record", **b2},
        ],
    )
    log = load_amazon_reviews(reviews, meta, cache_dir=cache)
    attrs = log.item_attributes()
    assert attrs["B1"] == {"category": "Beauty|Makeup|Eyes", "title": "Lipstick"}
    assert attrs["B2"] == {"category": "Tools", "title": "Hammer"}
    assert all(pd.isna(v) for v in attrs["B3"].values())  # no metadata: null, not dropped
    assert len(log) == 3


def test_amazon_missing_metadata_file(tmp_path):
    reviews = _write_jsonl(tmp_path / "reviews.json", REVIEWS)
    with pytest.raises(FileNotFoundError, match=r"meta\.json not found.*asin"):
        load_amazon_reviews(reviews, tmp_path / "meta.json")


def test_sasrec_txt_uses_line_order(cache, tmp_path):
    p = tmp_path / "ml-1m.txt"
    p.write_text("1 10\n2 7\n1 3\n1 10\n2  8\n")
    log = load_sasrec_txt(p, cache_dir=cache)
    assert not log.has_time
    assert log.history("1").items.tolist() == ["10", "3", "10"]  # repeats are kept
    assert log.history("2").items.tolist() == ["7", "8"]
    assert log.history("1").timestamps is None


def test_sasrec_txt_min_events_and_missing_file(cache, tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("1 10\n2 7\n1 3\n")
    log = load_sasrec_txt(p, min_events=2, cache_dir=cache)
    assert log.user_ids.tolist() == ["1"] and log.stats.short_users_dropped == 1
    with pytest.raises(FileNotFoundError, match="user item"):
        load_sasrec_txt(tmp_path / "absent.txt")
