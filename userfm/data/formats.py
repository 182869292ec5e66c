"""Loaders for public interaction-log formats, from files the user already has.

Nothing is downloaded: pass the folder (or file) you have. Every loader goes through
`userfm.data.readers` (file checks, then `read_events` on the joined table), so all the
validation and bookkeeping documented there applies, and ``_row`` / error rows refer to the
lines of the ratings / reviews file (0-based).

==========================  ==================================================================
loader                      files
==========================  ==================================================================
`load_movielens_100k`       ``u.data`` (tab: user item rating timestamp), ``u.item`` (``|``,
                            latin-1: id, title, release date, video date, url, 19 genre flags),
                            optional ``u.genre``, ``u.user``
`load_movielens_1m`         ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``),
                            ``movies.dat`` (``MovieID::Title::Genre|Genre``, latin-1),
                            optional ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``)
`load_amazon_reviews`       reviews JSON lines (``reviewerID``, ``asin``, ``unixReviewTime``,
                            ``overall``), optional metadata JSON lines (``asin``, ``title``,
                            ``categories`` as a list of lists or ``category`` as a list)
`load_sasrec_txt`           ``user item`` per line, already in time order per user, no times
==========================  ==================================================================

Canonical columns produced: MovieLens -> ``action`` = rating (``"4"``), ``category`` = genres
joined by ``|`` (``"Animation|Children's|Comedy"``), ``title``, extra ``year`` (release year);
with ``user_attributes=True`` also ``gender``, ``age``, ``occupation`` (the user's, repeated on
each event). Amazon -> ``action`` = the star rating, ``title`` and ``category`` from metadata
(null for items without metadata). SASRec -> user and item only, ``has_time`` False.

`movielens_100k_items` reads the MovieLens-100K movies (``u.item``, parsed by the code
`load_movielens_100k` uses) as an item side table (`userfm.data.items.ItemTable`): text
columns ``title``, ``year`` and ``genres`` keyed by the log's item ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.items import ItemTable, read_items
from userfm.data.log import EventLog
from userfm.data.readers import read_events, read_table
from userfm.data.schema import CATEGORY_SEP, EventSchema
from userfm.errors import FileFormatError
from userfm.quiet import datasets_bars_follow_terminal

__all__ = [
    "load_movielens_100k",
    "load_movielens_1m",
    "load_amazon_reviews",
    "load_sasrec_txt",
    "movielens_100k_items",
    "ML100K_GENRES",
]

#: the 19 genre flags of u.item, in file order (u.genre, when present, overrides)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_YEAR_RE = r"\((\d{4})\)\s*$"
_ML100K_HELP = (
    "the MovieLens-100K folder should contain u.data (tab-separated user, item, rating, "
    "timestamp) and u.item ('|'-separated movie id, title, release date, ..., 19 genre flags); "
    "u.genre and u.user are optional. Get ml-100k.zip from grouplens.org and unzip it."
)
_ML1M_HELP = (
    "the MovieLens-1M folder should contain ratings.dat (UserID::MovieID::Rating::Timestamp) and "
    "movies.dat (MovieID::Title::Genres); users.dat is optional. Get ml-1m.zip from "
    "grouplens.org and unzip it."
)


def _require(path: Path, help_text: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(2, f"{path} not found: {help_text}", str(path))
    return path


def _folder(path: str | os.PathLike, *markers: str) -> Path:
    """The dataset folder: ``path``, or its parent when ``path`` is one of the ``markers`` files."""
    p = Path(path).expanduser()
    return p.parent if p.is_file() and p.name in markers else p


def _attach(ds: datasets.Dataset, key: str, lookup: pa.Table) -> datasets.Dataset:
    """Add ``lookup``'s other columns to ``ds`` by matching ``ds[key]`` to ``lookup[key]``.

    Batched and vectorised (pyarrow ``index_in`` + ``take``); unmatched keys give nulls.
    """
    keys = lookup.column(key).combine_chunks()
    extra = [c for c in lookup.column_names if c != key]
    values = {c: lookup.column(c).combine_chunks() for c in extra}

    def add(batch: pa.Table) -> pa.Table:
        idx = pc.index_in(batch.column(key), value_set=keys)
        for c in extra:
            batch = batch.append_column(c, values[c].take(idx))
        return batch

    features = ds.features.copy()
    for c in extra:
        features[c] = datasets.Value("string")
    out = ds.with_format("arrow").map(add, batched=True, batch_size=65_536, features=features)
    return out.with_format(None)


def _string_table(columns: dict[str, object]) -> pa.Table:
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


# ---------------------------------------------------------------------------------------------
# MovieLens
# ---------------------------------------------------------------------------------------------
@datasets_bars_follow_terminal
def load_movielens_100k(
    path: str | os.PathLike,
    *,
    user_attributes: bool = False,
    min_events: int = 1,
    cache_dir: str | None = None,
) -> EventLog:
    """Load MovieLens-100K from its unzipped folder (``ml-100k``).

    Args:
        path: the folder holding ``u.data`` and ``u.item`` (or the ``u.data`` file itself).
        user_attributes: also add ``gender``, ``age`` and ``occupation`` from ``u.user``.
        min_events: passed to `read_events`.
        cache_dir: HF `datasets` cache folder.

    Returns:
        100,000 events of 943 users on 1,682 movies for the original files, with ``action``
        (rating), ``category`` (genres joined by ``|``), ``title`` and ``year``.

    Raises:
        FileNotFoundError: a required file is missing (the message says what the folder needs).
    """
    folder = _folder(path, "u.data")
    ratings = _require(folder / "u.data", _ML100K_HELP)
    items_file = _require(folder / "u.item", _ML100K_HELP)
    ds = read_table(
        ratings,
        format="tsv",
        names=["user", "item", "rating", "timestamp"],
        cache_dir=cache_dir,
    )
    meta = _ml100k_item_table(folder, items_file)
    ds = _attach(ds, "item", meta)
    user_table = None
    if user_attributes:
        users_file = _require(folder / "u.user", _ML100K_HELP)
        users = pd.read_csv(
            users_file, sep="|", header=None, dtype=str, encoding="latin-1", keep_default_na=False
        )
        user_table = {"user": users[0], "age": users[1], "gender": users[2], "occupation": users[3]}
    return _movielens_log(ds, user_table, min_events)


def movielens_100k_items(path: str | os.PathLike) -> ItemTable:
    """The MovieLens-100K movies as an item side table, read from ``u.item`` (and ``u.genre``
    when present) exactly as `load_movielens_100k` reads them for the log.

    Args:
        path: the ``ml-100k`` folder (or its ``u.item`` or ``u.data`` file).

    Returns:
        One row per movie (1,682 for the original file), in file order, with text columns
        ``title`` (``"Toy Story (1995)"``), ``year`` (release year, ``"1995"``) and ``genres``
        (``|``-joined, ``"Animation|Children's|Comedy"``, as the log's ``category``); ids are
        the log's item ids.

    Raises:
        FileNotFoundError: ``u.item`` is missing (the message says what the folder needs).
        FileFormatError: ``u.item`` is not a MovieLens-100K item file.
    """
    folder = _folder(path, "u.data", "u.item")
    meta = _ml100k_item_table(folder, _require(folder / "u.item", _ML100K_HELP))
    return read_items(meta, id_column="item", text_columns=["title", "year", "genres"])


def _ml100k_item_table(folder: Path, items_file: Path) -> pa.Table:
    """``u.item`` as string columns item, title, genres (``|``-joined names of the set flags,
    null when none is set; names from ``u.genre`` when it lists 19) and year (null when the
    release date has none)."""
    genres = list(ML100K_GENRES)
    if (folder / "u.genre").is_file():
        g = pd.read_csv(
            folder / "u.genre", sep="|", header=None, names=["name", "id"], encoding="latin-1"
        )
        g = g.dropna()
        if len(g) == len(ML100K_GENRES):
            genres = g.sort_values("id")["name"].astype(str).tolist()
    try:
        items = pd.read_csv(
            items_file, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False
        )
    except (pd.errors.ParserError, ValueError) as e:
        raise FileFormatError(f"cannot parse {items_file}: {e}") from e
    if items.shape[1] != 5 + len(genres):
        raise FileFormatError(
            f"{items_file} has {items.shape[1]} '|'-separated fields per line; MovieLens-100K "
            f"u.item has {5 + len(genres)} (id, title, release date, video date, url, 19 genre flags)"
        )
    flags = items.iloc[:, 5:].to_numpy() == "1"
    year = items[2].str[-4:].where(items[2].str.len() >= 4)
    return _string_table(
        {
            "item": items[0],
            "title": items[1].str.strip(),
            "genres": _join_flags(flags, genres),
            "year": year.where(year.str.fullmatch(r"\d{4}", na=False)),
        }
    )


def _movielens_log(
    ds: datasets.Dataset, users: dict[str, pd.Series] | None, min_events: int
) -> EventLog:
    """Attach the user attributes (when given) and read with the MovieLens schema."""
    extra = ["year"]
    if users is not None:
        ds = _attach(ds, "user", _string_table(users))
        extra += ["gender", "age", "occupation"]
    schema = EventSchema(
        action="rating", category="genres", title="title", extra=tuple(extra), timestamp_unit="s"
    )
    return read_events(ds, schema, min_events=min_events)


def _join_flags(flags: np.ndarray, names: list[str]) -> list[str | None]:
    """Genre flag matrix (n, G) -> ``|``-joined names per row (None when no flag is set)."""
    return [CATEGORY_SEP.join(np.asarray(names)[row]) or None for row in flags]


@datasets_bars_follow_terminal
def load_movielens_1m(
    path: str | os.PathLike,
    *,
    user_attributes: bool = False,
    min_events: int = 1,
    cache_dir: str | None = None,
) -> EventLog:
    """Load MovieLens-1M from its unzipped folder (``ml-1m``).

    Args:
        path: the folder holding ``ratings.dat`` and ``movies.dat`` (or ``ratings.dat`` itself).
        user_attributes: also add ``gender``, ``age`` and ``occupation`` from ``users.dat``.
        min_events: passed to `read_events`.
        cache_dir: HF `datasets` cache folder.

    Returns:
        The ratings (1,000,209 for the original files) with ``action`` (rating), ``category``
        (genres joined by ``|``), ``title`` and ``year``.

    Raises:
        FileNotFoundError: a required file is missing (the message says what the folder needs).
    """
    folder = _folder(path, "ratings.dat")
    ratings = _require(folder / "ratings.dat", _ML1M_HELP)
    movies_file = _require(folder / "movies.dat", _ML1M_HELP)
    # '::' needs pandas' slow python engine; ratings hold no ':' so split on ':' (C engine) and
    # skip the empty fields between the two colons.
    ds = read_table(
        ratings,
        format="csv",
        sep=":",
        names=["user", "_a", "item", "_b", "rating", "_c", "timestamp"],
        columns=["user", "item", "rating", "timestamp"],
        encoding="latin-1",
        cache_dir=cache_dir,
    )
    movies = _read_dat(movies_file, 3)
    title = movies[1].str.strip()
    meta = _string_table(
        {
            "item": movies[0],
            "title": title,
            "genres": movies[2].where(movies[2].str.len() > 0),
            "year": title.str.extract(_YEAR_RE, expand=False),
        }
    )
    ds = _attach(ds, "item", meta)
    user_table = None
    if user_attributes:
        users = _read_dat(_require(folder / "users.dat", _ML1M_HELP), 5)
        user_table = {"user": users[0], "gender": users[1], "age": users[2], "occupation": users[3]}
    return _movielens_log(ds, user_table, min_events)


def _read_dat(path: Path, fields: int) -> pd.DataFrame:
    """A small ``::``-separated latin-1 file (movies.dat, users.dat) as string columns."""
    rows = []
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("::")
            if len(parts) != fields:
                if fields == 3 and len(parts) > 3:  # a '::' inside a title
                    parts = [parts[0], "::".join(parts[1:-1]), parts[-1]]
                else:
                    raise FileFormatError(
                        f"{path} line {n + 1} has {len(parts)} '::'-separated fields, expected {fields}"
                    )
            rows.append(parts)
    return pd.DataFrame(rows, columns=range(fields), dtype=object)


# ---------------------------------------------------------------------------------------------
# Amazon reviews
# ---------------------------------------------------------------------------------------------
@datasets_bars_follow_terminal
def load_amazon_reviews(
    path: str | os.PathLike,
    meta_path: str | os.PathLike | None = None,
    *,
    min_events: int = 1,
    encoding: str = "utf-8",
    cache_dir: str | None = None,
) -> EventLog:
    """Load an Amazon reviews file (the 5-core JSON lines of the 2014/2018 releases).

    Args:
        path: reviews JSON lines with ``reviewerID``, ``asin``, ``unixReviewTime``, ``overall``.
        meta_path: optional metadata JSON lines with ``asin`` and ``title`` and/or ``categories``
            (list of category paths) or ``category`` (one list); gives ``title`` and
            ``category`` (distinct names joined by ``|``, in order of appearance).
        min_events: passed to `read_events`.
        encoding: text encoding of the files.
        cache_dir: HF `datasets` cache folder.

    Returns:
        The reviews as events: ``action`` is the star rating (``"5"``).

    Raises:
        FileNotFoundError: a file is missing.
    """
    need = "the reviews file should be JSON lines with reviewerID, asin, unixReviewTime, overall"
    reviews = _require(Path(path).expanduser(), need)
    cols = ["reviewerID", "asin", "unixReviewTime", "overall"]
    ds = read_table(reviews, format="jsonl", columns=cols, encoding=encoding, cache_dir=cache_dir)
    title = category = None
    if meta_path is not None:
        need_meta = "the metadata file should be JSON lines with asin, title, categories"
        meta_file = _require(Path(meta_path).expanduser(), need_meta)
        meta = read_table(
            meta_file, format="jsonl", columns=None, encoding=encoding, cache_dir=cache_dir
        )
        lookup = _amazon_meta(meta, meta_file)
        ds = _attach(ds, "asin", lookup)
        title = "title" if "title" in lookup.column_names else None
        category = "category" if "category" in lookup.column_names else None
    schema = EventSchema(
        user="reviewerID",
        item="asin",
        timestamp="unixReviewTime",
        action="overall",
        title=title,
        category=category,
        timestamp_unit="s",
    )
    return read_events(ds, schema, min_events=min_events)


def _amazon_meta(meta: datasets.Dataset, path: Path) -> pa.Table:
    """asin -> title, category (first record per asin wins)."""
    if "asin" not in meta.column_names:
        raise FileFormatError(f"{path} has no 'asin' field; its fields are {meta.column_names}")
    table = meta.data.table
    asin = table.column("asin").cast(pa.string())
    first = pc.is_in(pa.array(np.arange(len(asin))), value_set=_first_positions(asin))
    out: dict[str, pa.Array] = {"asin": asin.filter(first)}
    if "title" in table.column_names:
        out["title"] = table.column("title").filter(first).cast(pa.string())
    cat_col = "categories" if "categories" in table.column_names else "category"
    if cat_col in table.column_names:
        values = table.column(cat_col).filter(first).to_pylist()  # per item, not per event
        out["category"] = pa.array([_join_categories(v) for v in values], type=pa.string())
    return pa.table(out)


def _first_positions(keys: pa.ChunkedArray) -> pa.Array:
    t = pa.table({"k": keys, "i": pa.array(np.arange(len(keys)))})
    return t.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min")


def _join_categories(value: object) -> str | None:
    """``[["A", "B"], ["A", "C"]]`` or ``["A", "B"]`` or ``"A"`` -> ``"A|B|C"``."""
    if value is None:
        return None
    flat: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif v is not None and str(v).strip():
            flat.append(str(v).strip())
    return CATEGORY_SEP.join(dict.fromkeys(flat)) or None


# ---------------------------------------------------------------------------------------------
# SASRec
# ---------------------------------------------------------------------------------------------
@datasets_bars_follow_terminal
def load_sasrec_txt(
    path: str | os.PathLike, *, min_events: int = 1, cache_dir: str | None = None
) -> EventLog:
    """Load a SASRec-style text file: one ``user item`` pair per line, in time order per user.

    Args:
        path: the file (whitespace-separated, no header; e.g. ``ml-1m.txt`` of the SASRec repo).
        min_events: passed to `read_events`.
        cache_dir: HF `datasets` cache folder.

    Returns:
        An `EventLog` whose timestamps are line numbers (``has_time`` False).

    Raises:
        FileNotFoundError: the file is missing.
    """
    p = _require(Path(path).expanduser(), "a SASRec file has one 'user item' pair per line")
    ds = read_table(p, format="csv", sep=r"\s+", names=["user", "item"], cache_dir=cache_dir)
    return read_events(ds, EventSchema(timestamp=None), min_events=min_events)
