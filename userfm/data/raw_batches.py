"""A raw log read batch by batch: the input half of `userfm.data.prepare` (logs larger than memory).

`open_raw_batches` opens a log the readers accept, a file, a glob (``logs/*.parquet``) or a
folder of shards (searched recursively; names starting with ``.`` or ``_``, such as Spark's
``_SUCCESS``, are skipped), or an in-memory DataFrame / Arrow table / `datasets.Dataset`, and
returns a `RawBatches`: the mapped input columns (`InputColumn`, for `make_plan`) and their
rows in batches, in input order, never the whole log at once.

Files are checked as `read_events` checks them (`userfm.data.raw_input`): the same typed
errors with the same messages. Parquet files are read with pyarrow row group by row group;
csv / tsv / jsonl files go through the readers' own `read_table` (HF `datasets` parses them
into an Arrow cache file) and the cache file is then read batch by batch with plain reads, not
memory-mapped, so the pages read are not kept resident. The input row of an event (``_row``,
named in errors) counts across the files in the order of their sorted names.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from userfm.data.raw_input import (
    SUPPORTED_EXTENSIONS,
    check_file,
    open_parquet,
    open_source,
    read_table,
    schema_fields,
)
from userfm.data.read_plan import InputColumn
from userfm.data.schema import EventSchema
from userfm.errors import DataError, EmptyLogError, FileFormatError

__all__ = ["RawBatches", "RawFile", "expand_files", "open_raw_batches"]

#: rows per batch (as `read_events` normalises them)
BATCH_ROWS = 65_536
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class RawFile:
    """One file of a log: where it is, how it is read, and where its rows start.

    Attributes:
        path: the file.
        format: ``parquet``, ``csv``, ``tsv`` or ``jsonl``.
        offset: the input row of its first row (rows of the files before it).
        num_rows: its rows.
        cache: for text formats, the Arrow cache files `datasets` parsed it into.
    """

    path: Path
    format: str
    offset: int
    num_rows: int
    cache: tuple[str, ...] = ()


class RawBatches:
    """The mapped input columns of a raw log, read in batches in input order.

    Build it with `open_raw_batches`.

    Attributes:
        columns: the mapped input columns (input name -> `InputColumn`), each column read
            afresh on every ``read()`` call (one whole-column pass).
        num_rows: the rows of the whole input.
        files: the files read (empty for an in-memory source).
        empty_files: files of a multi-file log skipped for having no rows.
    """

    def __init__(
        self,
        *,
        names: list[str],
        types: dict[str, pa.DataType],
        files: list[RawFile],
        table: pa.Table | None = None,
        empty_files: list[Path] | None = None,
    ):
        self.names, self.files, self._table = names, files, table
        self.empty_files = empty_files or []
        self.num_rows = len(table) if table is not None else sum(f.num_rows for f in files)
        self.columns = {
            name: InputColumn(types[name], lambda name=name: self._column_chunks(name))
            for name in names
        }

    def batches(self, columns: list[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """``(offset, batch)`` pairs in input order: each batch is a table of ``columns``
        (default: every mapped column) and ``offset`` the input row of its first row."""
        columns = columns or self.names
        if self._table is not None:
            for lo in range(0, len(self._table), BATCH_ROWS):
                yield lo, self._table.select(columns).slice(lo, BATCH_ROWS)
            return
        for f in self.files:
            offset = f.offset
            for batch in _file_batches(f, columns):
                yield offset, pa.Table.from_batches([batch])
                offset += batch.num_rows

    def _column_chunks(self, name: str) -> Iterator[pa.Array]:
        for _, batch in self.batches([name]):
            yield from batch.column(0).chunks

    def locate(self, row: int) -> tuple[Path, int] | None:
        """The file holding input row ``row`` and the row within it (None for one file or an
        in-memory source, where the input row is already the file's row)."""
        if len(self.files) < 2:
            return None
        for f in self.files:
            if f.offset <= row < f.offset + f.num_rows:
                return f.path, row - f.offset
        return None

    @contextlib.contextmanager
    def locating_errors(self) -> Iterator[None]:
        """Re-raise a `DataError` that names an input row with the file and row within it
        appended, when the log is several files (the type, column and row stay)."""
        try:
            yield
        except DataError as e:
            where = self.locate(e.row) if e.row is not None else None
            if where is None:
                raise
            err = type(e)(f"{e.args[0]}; that is row {where[1]} of {where[0]}")
            err.column, err.row = e.column, e.row
            raise err from e


def open_raw_batches(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    schema: EventSchema,
    *,
    format: str | None = None,
    encoding: str = "utf-8",
    sep: str | None = None,
    cache_dir: str | None = None,
) -> RawBatches:
    """Open ``source`` for batch reading, with the readers' file-level checks.

    Args:
        source: a file, a glob, a folder of files (all of one format), or an in-memory
            DataFrame / Arrow table / `datasets.Dataset`.
        schema: the columns to read (`EventSchema.input_columns`).
        format, encoding, sep, cache_dir: as in `read_events`.

    Raises:
        FileNotFoundError: no file matches.
        FileFormatError: files of several formats, or a file that is not its format.
        SchemaError: a mapped column missing (named with the file).
        DataError: a mapped column whose type differs between two files.
        EmptyLogError: no rows in any file.
    """
    needed = list(dict.fromkeys(schema.input_columns().values()))
    if not isinstance(source, (str, os.PathLike)):
        raw = open_source(
            source, schema, format=format, encoding=encoding, sep=sep, cache_dir=cache_dir
        )
        table = raw.data.table
        types = {n: table.schema.field(n).type for n in needed}
        return RawBatches(names=needed, types=types, files=[], table=table)
    paths = expand_files(source)
    fields = schema_fields(schema)
    files: list[RawFile] = []
    empty: list[Path] = []
    types: dict[str, pa.DataType] | None = None
    offset = 0
    for p in paths:
        try:
            f, file_types = _open_file(p, offset, needed, fields, format, encoding, sep, cache_dir)
        except EmptyLogError:
            if len(paths) == 1:
                raise
            empty.append(p)  # a shard without rows (Spark writes them) is no error
            continue
        types = _same_types(types, file_types, files[0].path if files else None, p)
        files.append(f)
        offset += f.num_rows
    if not files:
        raise EmptyLogError(f"none of the {len(paths)} files of {source} has rows: no events")
    assert types is not None
    return RawBatches(names=needed, types=types, files=files, empty_files=empty)


def expand_files(source: str | os.PathLike) -> list[Path]:
    """The files of a log source: the file itself, the files a glob matches, or the event
    files under a folder (recursively), sorted by path.

    Raises:
        FileNotFoundError: the path does not exist, or nothing matches.
        FileFormatError: a folder holding files of several formats.
    """
    text = os.fspath(source)
    p = Path(text).expanduser()
    if p.is_file() or (not p.exists() and not (_GLOB_CHARS & set(text))):
        return [p]  # a missing file: `check_file` names it
    if p.is_dir():
        found = sorted(
            q
            for q in p.rglob("*")
            if q.is_file()
            and not any(part.startswith((".", "_")) for part in q.relative_to(p).parts)
            and q.suffix.lower() in SUPPORTED_EXTENSIONS
        )
        what = f"folder {p}"
    else:
        found = sorted(Path(q) for q in glob.glob(os.path.expanduser(text), recursive=True))
        found = [q for q in found if q.is_file()]
        what = f"pattern {text!r}"
    if not found:
        raise FileNotFoundError(
            2,
            f"no event files in {what} (looked for {', '.join(SUPPORTED_EXTENSIONS)} files)",
            text,
        )
    kinds = sorted({SUPPORTED_EXTENSIONS.get(q.suffix.lower(), q.suffix) for q in found})
    if len(kinds) > 1:
        raise FileFormatError(
            f"{what} holds files of several formats ({', '.join(kinds)}); a log is one format: "
            "point at the files of one format (a glob such as logs/*.parquet)"
        )
    return found


def _open_file(
    p: Path,
    offset: int,
    needed: list[str],
    fields: dict[str, str],
    format: str | None,
    encoding: str,
    sep: str | None,
    cache_dir: str | None,
) -> tuple[RawFile, dict[str, pa.DataType]]:
    """One file checked and opened: its `RawFile` and the types of the mapped columns."""
    fmt = check_file(p, format=format, encoding=encoding)
    if fmt == "parquet":
        meta = open_parquet(p, needed, fields)
        arrow = meta.schema_arrow
        types = {n: arrow.field(n).type for n in needed}
        return RawFile(p, fmt, offset, meta.metadata.num_rows), types
    ds = read_table(
        p, format=fmt, columns=needed, encoding=encoding, sep=sep, cache_dir=cache_dir,
        _fields=fields,
    )  # fmt: skip
    types = {n: ds.data.table.schema.field(n).type for n in needed}
    cache = tuple(c["filename"] for c in ds.cache_files)
    assert cache, "datasets parses text files into cache files"
    return RawFile(p, fmt, offset, len(ds), cache), types


def _same_types(
    types: dict[str, pa.DataType] | None,
    new: dict[str, pa.DataType],
    first: Path | None,
    p: Path,
) -> dict[str, pa.DataType]:
    """The mapped columns' types, which every file must share (one plan reads them all)."""
    if types is None:
        return new
    for name, t in types.items():
        if new[name] != t:
            raise DataError(
                f"the column has type {t} in {first} but {new[name]} in {p}; write every file "
                "of a log with the same column types",
                column=name,
            )
    return types


def _file_batches(f: RawFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The rows of one file in batches of at most `BATCH_ROWS`, ``columns`` only."""
    if f.format == "parquet":
        with pq.ParquetFile(f.path) as pf:
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    for name in f.cache:  # datasets' Arrow cache: a stream file; plain reads, no mmap
        with pa.OSFile(name) as stream, pa.ipc.open_stream(stream) as reader:
            for batch in reader:
                batch = batch.select(columns)
                for lo in range(0, batch.num_rows, BATCH_ROWS):
                    yield batch.slice(lo, BATCH_ROWS)
