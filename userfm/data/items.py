"""Item side tables: each item id with its text (title, genres, brand, description, ...).

Issue 33 §1 ("items described by text"): a model that reads items as text needs one row of
text per item, keyed by the ids the event log uses. `read_items` reads such a table from a
file (parquet / csv / tsv / jsonl, with the file-level checks of `userfm.data.raw_input`) or
from a pandas DataFrame, pyarrow Table or `datasets.Dataset`; `items_from_log` takes it from
the item attributes an `EventLog` already carries.

Ids are normalised by the event readers' own code (`userfm.data.normalise.normalise_ids`), so
``7``, ``7.0`` and ``" 7 "`` are the one item ``"7"`` the log has. Bad input raises the
readers' typed errors: a missing column -> `SchemaError` listing the columns present; a null,
empty or non-integral float id -> `DataError` naming the column and the 0-based input row; a
repeated id -> `DataError` naming the id and both rows; no rows -> `EmptyLogError`. Text
values are stripped; numbers become their text (``1995``); lists are joined with ``|``
(null elements left out); a missing or blank value is None. No row is dropped.

`item_text` renders one item as ``"title: Toy Story (1995). genres: Animation, Children's,
Comedy"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.log import EventLog
from userfm.data.normalise import normalise_attribute, normalise_ids
from userfm.data.prepared import PreparedLog
from userfm.data.raw_input import _dataset_from_pandas, read_table
from userfm.data.read_plan import text_ids
from userfm.data.schema import ACTION, CATEGORY, CATEGORY_SEP, ITEM, TIMESTAMP, TITLE, USER
from userfm.errors import ConfigError, DataError, EmptyLogError, SchemaError, UserfmError
from userfm.quiet import datasets_bars_follow_terminal

__all__ = ["ItemTable", "UnknownItemError", "item_text", "items_from_log", "read_items"]

#: what a rendered item joins its ``column: value`` parts with, and a value's ``|`` parts with
_PART_SEP = ". "
_VALUE_SEP = ", "


class UnknownItemError(UserfmError, KeyError):
    """An item id that is not in the item table at hand."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, repr=False)
class ItemTable:
    """Items and their text, one row per item.

    Attributes:
        ids: (n,) item ids as the event log keeps them (normalised, unique), in input order.
        columns: text column name -> (n,) values, one per id; None where the value is missing
            or blank.

    Raises:
        ConfigError: ids that are not unique strings, a column whose length is not ``n`` or
            whose values are not strings / None, or a column named ``item`` (the id column of
            `to_pandas`).
    """

    ids: list[str]
    columns: dict[str, list[str | None]]

    def __post_init__(self) -> None:
        if not all(isinstance(i, str) for i in self.ids):
            raise ConfigError("ItemTable.ids must be strings (use read_items to normalise ids)")
        if len(set(self.ids)) != len(self.ids):
            raise ConfigError("ItemTable.ids must be unique (read_items names a repeated id)")
        for name, values in self.columns.items():
            if name == ITEM:
                raise ConfigError(
                    f"an item table cannot have a text column named {ITEM!r} (the id column of "
                    "ItemTable.to_pandas); rename it or leave it out of text_columns"
                )
            if len(values) != len(self.ids):
                raise ConfigError(
                    f"text column {name!r} has {len(values)} values for {len(self.ids)} ids"
                )
            if not all(v is None or isinstance(v, str) for v in values):
                raise ConfigError(f"text column {name!r} must hold strings or None")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"ItemTable({len(self):,} items, columns={list(self.columns)})"

    @cached_property
    def _position(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.ids)}

    def texts(self, columns: Sequence[str] | None = None) -> list[str | None]:
        """Each item's `item_text`, in `ids` order.

        Args:
            columns: the text columns to render, in this order (default: all, in table order).

        Returns:
            (n,) texts; None for an item with no value in any of ``columns``.

        Raises:
            SchemaError: a column the table lacks (the message lists those it has).
        """
        cols = (
            list(self.columns)
            if columns is None
            else _known_columns(columns, self.columns, " in the item table")
        )
        if not cols:
            return [None] * len(self)
        rows = zip(*(self.columns[c] for c in cols), strict=True)
        return [item_text(dict(zip(cols, row, strict=True)), cols) for row in rows]

    def subset(self, ids: Iterable[str]) -> ItemTable:
        """The rows of ``ids``, in that order.

        Args:
            ids: item ids; normalised as the table's are (``7``, ``"7.0"``, ``" 7 "`` -> ``"7"``).

        Raises:
            UnknownItemError: an id the table lacks (named).
            ConfigError: ``ids`` is one string, or names an item twice.
        """
        if isinstance(ids, str):
            raise ConfigError(f"ids must be a sequence of item ids, not one string ({ids!r})")
        given = [str(i) for i in ids]
        keys = text_ids(pa.array(given, type=pa.string())).to_pylist()
        rows = []
        for raw, key in zip(given, keys, strict=True):
            if key not in self._position:
                raise UnknownItemError(
                    f"item {raw!r} is not in this item table ({len(self):,} items)"
                )
            rows.append(self._position[key])
        if len(set(rows)) != len(rows):
            repeated = next(k for k in keys if keys.count(k) > 1)
            raise ConfigError(f"ids name item {repeated!r} more than once")
        return ItemTable(
            ids=[self.ids[r] for r in rows],
            columns={c: [v[r] for r in rows] for c, v in self.columns.items()},
        )

    def to_pandas(self) -> pd.DataFrame:
        """The table as a DataFrame: column ``item`` (the ids), then the text columns."""
        return pd.DataFrame({ITEM: self.ids, **self.columns}, dtype=object)


def item_text(values: Mapping[str, str | None], columns: Sequence[str]) -> str | None:
    """One item as text: ``"column: value"`` for each of ``columns`` that has a value.

    Args:
        values: column -> the item's value (None or blank when missing).
        columns: the columns to render, in this order.

    Returns:
        The parts joined by ``". "``; within a value, ``|``-separated parts
        (`userfm.data.schema.CATEGORY_SEP`) are joined by ``", "``; values are stripped. None
        when every value is missing (an item with no text).

    Raises:
        SchemaError: a column ``values`` does not have.
        ConfigError: ``columns`` is one string instead of a sequence of names.

    Example:
        >>> item_text({"title": "Toy Story (1995)", "genres": "Animation|Comedy"},
        ...           ["title", "genres"])
        'title: Toy Story (1995). genres: Animation, Comedy'
    """
    parts = []
    for col in _known_columns(columns, values):
        value = _clean(values[col])
        if value is not None:
            parts.append(f"{col}: {value}")
    return _PART_SEP.join(parts) or None


def _clean(value: object) -> str | None:
    """A stored value as text: ``|`` parts stripped and joined by ``", "``; None when missing
    (None, NaN as pandas gives it, blank)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    parts = (p.strip() for p in str(value).split(CATEGORY_SEP))
    return _VALUE_SEP.join(p for p in parts if p) or None


def _known_columns(columns: Sequence[str], present: Iterable[str], where: str = "") -> list[str]:
    """``columns`` as a list, each one of ``present`` (SchemaError naming the first that is not)."""
    if isinstance(columns, str):
        raise ConfigError(
            f"columns must be a sequence of column names, not one string ({columns!r})"
        )
    cols, have = list(columns), list(present)
    missing = [c for c in cols if c not in have]
    if missing:
        raise SchemaError(f"column {missing[0]!r} not found{where}; its columns are {have}")
    return cols


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
@datasets_bars_follow_terminal
def read_items(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    *,
    id_column: str = ITEM,
    text_columns: Sequence[str] | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
    sep: str | None = None,
    cache_dir: str | None = None,
) -> ItemTable:
    """Read an item side table: an id column and text columns, validated like an event log.

    Args:
        source: path to a parquet / csv / tsv / jsonl / json file, a pandas DataFrame, a
            pyarrow Table or a `datasets.Dataset`.
        id_column: the column of item ids (the ids of the event log's item column).
        text_columns: the text columns, in the order `ItemTable.texts` renders them (default:
            every other column of the source, in its order).
        format: ``parquet``, ``csv``, ``tsv``, ``jsonl`` or ``json``; default from the file
            extension. Ignored for in-memory sources.
        encoding: text encoding of csv / tsv / jsonl files (e.g. ``"latin-1"``).
        sep: csv field separator (default ``,``; a tab for tsv).
        cache_dir: where HF `datasets` caches the Arrow copy of a file.

    Returns:
        One row per input row, in input order.

    Raises:
        FileNotFoundError, FileFormatError: a missing file, an unknown extension, content that
            is not the format, undecodable text (as `read_events`).
        SchemaError: ``id_column`` or a text column is missing (the message lists the columns).
        DataError: a null / empty / non-integral float id (column and row), an id repeated
            after normalisation (both rows), a text column of an unsupported type.
        EmptyLogError: the source has no rows.
        ConfigError: ``text_columns`` names the id column or a column twice.
        TypeError: ``source`` is none of the supported kinds.
    """
    table, where = _open(source, format=format, encoding=encoding, sep=sep, cache_dir=cache_dir)
    present = table.column_names
    if id_column not in present:
        hint = _index_hint(source, id_column)
        raise SchemaError(
            f"id column {id_column!r} not found in {where}; its columns are {present}{hint}. "
            "Pass read_items(..., id_column=...)"
        )
    cols = _text_columns(text_columns, present, id_column, where)
    if table.num_rows == 0:
        raise EmptyLogError(f"{where} has no rows: no items to read")
    ids = normalise_ids(table.column(id_column), id_column).to_pylist()
    _check_unique(ids, id_column)
    return ItemTable(ids=ids, columns={c: _texts(table.column(c), c) for c in cols})


def _open(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    *,
    format: str | None,
    encoding: str,
    sep: str | None,
    cache_dir: str | None,
) -> tuple[pa.Table, str]:
    """Every column of ``source`` as an Arrow table in input row order, and how errors name
    the source."""
    if isinstance(source, (str, os.PathLike)):
        ds = read_table(source, format=format, encoding=encoding, sep=sep, cache_dir=cache_dir)
        return ds.data.table, str(source)
    if isinstance(source, pd.DataFrame):
        names = [str(c) for c in source.columns]
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise SchemaError(
                f"the DataFrame has several columns named {repeated}: which one holds the data "
                "is ambiguous; rename or drop the extra ones"
            )
        return _dataset_from_pandas(source, names).data.table, "the DataFrame"
    if isinstance(source, pa.Table):
        return source, "the table"
    if isinstance(source, datasets.Dataset):
        return source.with_format("arrow")[:], "the dataset"  # logical rows of a selection
    raise TypeError(
        "source must be a path, a pandas DataFrame, a pyarrow Table or a datasets.Dataset; "
        f"got {type(source).__name__}"
    )


def _index_hint(source: object, id_column: str) -> str:
    if isinstance(source, pd.DataFrame) and id_column in (source.index.names or []):
        return f" ({id_column!r} is the DataFrame's index: call .reset_index() first)"
    return ""


def _text_columns(
    text_columns: Sequence[str] | None, present: list[str], id_column: str, where: str
) -> list[str]:
    """The text columns to read: all but the id column by default, else ``text_columns``
    checked (present, distinct, not the id column)."""
    if text_columns is None:
        return [c for c in present if c != id_column]
    if isinstance(text_columns, str):
        raise ConfigError(
            f"text_columns must be a sequence of column names, not one string ({text_columns!r})"
        )
    cols = list(text_columns)
    if id_column in cols:
        raise ConfigError(f"text_columns names the id column {id_column!r}")
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if repeated:
        raise ConfigError(f"text_columns names {repeated} more than once")
    missing = [c for c in cols if c not in present]
    if missing:
        raise SchemaError(
            f"text column {missing[0]!r} not found in {where}; its columns are {present}"
        )
    return cols


def _check_unique(ids: list[str], column: str) -> None:
    """`DataError` naming the first id that repeats an earlier row's, and both rows."""
    repeats = pd.Series(ids, dtype=object).duplicated().to_numpy()
    if repeats.any():
        row = int(np.flatnonzero(repeats)[0])
        first = ids.index(ids[row])
        raise DataError(
            f"duplicate item id {ids[row]!r} (rows {first} and {row}); an item table has one "
            "row per item",
            column=column,
            row=row,
        )


def _texts(column: pa.ChunkedArray | pa.Array, name: str) -> list[str | None]:
    """A text column's values: the event readers' attribute text (numbers as text, lists
    ``|``-joined), stripped; None where missing or blank."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        arr = _without_null_elements(arr)
    s = pc.utf8_trim_whitespace(normalise_attribute(arr, name))
    s = pc.if_else(pc.equal(pc.utf8_length(s), 0), pa.scalar(None, pa.string()), s)
    return s.to_pylist()


def _without_null_elements(arr: pa.Array) -> pa.ListArray:
    """A list array without its null elements (``["a", None]`` -> ``["a"]``; a null list stays
    null): joined as it is, one null element would make the whole value null."""
    flat = pc.list_flatten(arr)  # (m,) the elements of the non-null lists
    parents = pc.list_parent_indices(arr).to_numpy()  # (m,) the row of each element
    keep = pc.is_valid(flat).to_numpy(zero_copy_only=False)
    offsets = np.searchsorted(parents[keep], np.arange(len(arr) + 1), side="left")
    return pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()), flat.filter(pa.array(keep)), mask=arr.is_null()
    )


# ---------------------------------------------------------------------------------------------
# from an event log
# ---------------------------------------------------------------------------------------------
def items_from_log(log: EventLog | PreparedLog, columns: Sequence[str] | None = None) -> ItemTable:
    """The item attributes an event log carries, one row per item (last value seen wins).

    Args:
        log: an event log, or a prepared one (its items come sorted by id); its item attribute columns are ``title``, ``category`` and the
            extra columns of its schema (keeping their names: ``category`` stays ``category``).
        columns: the attribute columns to take, in this order (default: all present, ``title``
            and ``category`` first). Note that user attributes passed as extras (MovieLens'
            ``gender`` with ``user_attributes=True``) are columns of the log too: name the
            item columns then.

    Returns:
        Every item of the log once, in order of first appearance in the log (sorted by user,
        time); each value is the one of the item's last event in that order.

    Raises:
        SchemaError: a column that is not an item attribute column of the log (the message
            lists those it has).
    """
    available = _log_item_columns(log)
    cols = (
        available
        if columns is None
        else _known_columns(columns, available, " among the event log's item attributes")
    )
    if isinstance(log, PreparedLog):  # its item table: the last event's values, by id
        table = log.item_table([ITEM, *cols])
        return ItemTable(
            ids=table.column(ITEM).to_pylist(),
            columns={c: _texts(table.column(c), c) for c in cols},
        )
    table = log.dataset.data.table  # EventLog keeps no indices mapping: the logical rows
    ids, last = _first_seen(table.column(ITEM))
    return ItemTable(
        ids=ids.to_pylist(), columns={c: _texts(table.column(c).take(last), c) for c in cols}
    )


def _log_item_columns(log: EventLog | PreparedLog) -> list[str]:
    """The log's item attribute columns: title, category, then the extras in log order."""
    event_columns = (USER, ITEM, TIMESTAMP, ACTION)
    present = [c for c in log.columns if c not in event_columns]
    first = [c for c in (TITLE, CATEGORY) if c in present]
    return first + [c for c in present if c not in first]


def _first_seen(keys: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct ``keys`` in order of first appearance, and the last row of each."""
    t = pa.table({"k": keys, "i": pa.array(np.arange(len(keys), dtype=np.int64))})
    g = t.group_by("k", use_threads=False).aggregate([("i", "min"), ("i", "max")])
    order = np.argsort(g.column("i_min").to_numpy(), kind="stable")
    return g.column("k").combine_chunks().take(order), g.column("i_max").to_numpy()[order]
