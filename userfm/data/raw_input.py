"""Open an event source as a raw `datasets.Dataset`: the file half of `read_events`.

A path is checked at the file level (existence, extension, content sniffed from the first
bytes, text encoding, empty files, missing columns) and read through HF `datasets`
(memory-mapped Arrow). A pandas DataFrame, pyarrow Table or `datasets.Dataset` is checked for
the mapped columns and wrapped as an in-memory Dataset. Values are not validated here: that
is `userfm.data.normalise`'s job. The errors raised are those of the bad-input table in the
docstring of `userfm.data.readers`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.table import InMemoryTable

from userfm.data.log import take_rows
from userfm.data.schema import OPTIONAL_COLUMNS, EventSchema
from userfm.errors import DataError, EmptyLogError, FileFormatError, SchemaError, UserfmError

__all__ = ["open_source", "read_table", "SUPPORTED_EXTENSIONS"]

#: file extension -> format
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_FORMATS = ("parquet", "csv", "tsv", "jsonl", "json")


def open_source(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    schema: EventSchema,
    *,
    format: str | None,
    encoding: str,
    sep: str | None,
    cache_dir: str | None,
) -> datasets.Dataset:
    """The columns ``schema`` maps, read from ``source`` (see `read_events` for the arguments).

    Returns:
        A Dataset of exactly the mapped input columns (each once), at least one row, whose
        physical row order is the input order (a selected/shuffled Dataset is materialised).

    Raises:
        TypeError: ``source`` is none of the supported kinds.
        FileNotFoundError, FileFormatError, EmptyLogError, SchemaError, DataError: see the
            bad-input table of `userfm.data.readers`.
    """
    needed = list(dict.fromkeys(schema.input_columns().values()))
    fields = schema_fields(schema)  # input column -> "EventSchema.<field>"
    if isinstance(source, (str, os.PathLike)):
        raw = read_table(
            source,
            format=format,
            columns=needed,
            encoding=encoding,
            sep=sep,
            cache_dir=cache_dir,
            _fields=fields,
        )
    elif isinstance(source, pd.DataFrame):
        check_columns([str(c) for c in source.columns], needed, fields, "the DataFrame")
        raw = _dataset_from_pandas(source, needed)
    elif isinstance(source, pa.Table):
        check_columns(source.column_names, needed, fields, "the table")
        raw = _dataset_from_arrow(source.select(needed))
    elif isinstance(source, datasets.Dataset):
        check_columns(source.column_names, needed, fields, "the dataset")
        raw = source
    else:
        raise TypeError(
            "source must be a path, a pandas DataFrame, a pyarrow Table or a datasets.Dataset; "
            f"got {type(source).__name__}"
        )

    if len(raw) == 0:
        raise EmptyLogError("the input has no rows: no events to read")
    raw = raw.select_columns(needed)
    if raw._indices is not None:  # a selected/shuffled Dataset: make the row order physical
        raw = take_rows(raw, np.arange(len(raw)))
    return raw


def read_table(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    columns: list[str] | None = None,
    encoding: str = "utf-8",
    sep: str | None = None,
    names: list[str] | None = None,
    cache_dir: str | None = None,
    _fields: Mapping[str, str] | None = None,
) -> datasets.Dataset:
    """Open a raw log file as a memory-mapped `datasets.Dataset`, with the file-level checks.

    This is the file half of `read_events` (existence, extension, content sniffing, encoding,
    empty files, missing columns); values are not validated. Loaders in
    `userfm.data.formats` use it for files that need joining before `read_events`.

    Args:
        path: the file.
        format: ``parquet``, ``csv``, ``tsv``, ``jsonl`` or ``json``; default from the extension.
        columns: the columns to read (all when None); a missing one raises `SchemaError`.
        encoding: text encoding of csv/tsv/jsonl files.
        sep: csv field separator (default ``,``, tab for tsv).
        names: column names for a csv/tsv file without a header line.
        cache_dir: HF `datasets` cache folder.

    Returns:
        The file's rows; csv/tsv columns are strings (no type guessing, no lost digits).

    Raises:
        FileNotFoundError, FileFormatError, EmptyLogError, SchemaError: see `read_events`.
    """
    p = Path(path).expanduser()
    fmt = check_file(p, format=format, encoding=encoding)
    fields = _fields or {}
    if fmt == "parquet":
        return _read_parquet(p, columns, fields, cache_dir)
    if fmt in ("csv", "tsv"):
        return _read_csv(p, fmt, columns, fields, encoding, sep, names, cache_dir)
    return _read_json(p, columns, fields, encoding, cache_dir)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def check_file(p: Path, *, format: str | None, encoding: str) -> str:
    """The format of event file ``p`` after the file-level checks `read_table` makes before
    reading (existence, not a folder, a known format, content that is that format, not empty).

    Returns:
        ``parquet``, ``csv``, ``tsv`` or ``jsonl``.

    Raises:
        FileNotFoundError, FileFormatError, EmptyLogError: see `read_events`.
    """
    if not p.exists():
        raise FileNotFoundError(2, f"event file not found: {p}", str(p))
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory; pass the path of one event file")
    fmt = _resolve_format(p, format)
    kind = _sniff(p, encoding)
    if kind == "empty":
        raise EmptyLogError(f"{p} is empty: no events to read")
    expected = {"parquet": "parquet", "csv": "text", "tsv": "text", "jsonl": "JSON"}[fmt]
    if kind != expected:
        as_fmt = {"parquet": "parquet", "JSON": "jsonl", "text": "csv"}.get(kind)
        hint = f" (pass format={as_fmt!r} or rename it)" if as_fmt else ""
        raise FileFormatError(f"{p} is not a {fmt} file: its content looks like {kind}{hint}")
    return fmt


def open_parquet(p: Path, columns: list[str] | None, fields: Mapping[str, str]) -> pq.ParquetFile:
    """Parquet file ``p`` opened (footer read), its columns checked; not yet read.

    Raises:
        FileFormatError: not readable as parquet.
        SchemaError: a column of ``columns`` missing or repeated (``fields`` names the schema
            field that maps it).
        EmptyLogError: the file has no rows.
    """
    try:
        meta = pq.ParquetFile(p)
        names = meta.schema_arrow.names
        num_rows = meta.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise FileFormatError(f"cannot read {p} as parquet: {e}") from e
    if columns is not None:
        check_columns(names, columns, fields, str(p))
    if num_rows == 0:
        raise EmptyLogError(f"{p} has no rows: no events to read")
    return meta


def _resolve_format(p: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in _FORMATS:
            raise FileFormatError(f"unknown format {format!r}; supported: {', '.join(_FORMATS)}")
        return "jsonl" if fmt == "json" else fmt
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise FileFormatError(
            f"cannot tell the format of {p} from its extension {ext or '(none)'!r}; supported "
            f"extensions: {', '.join(SUPPORTED_EXTENSIONS)} (or pass format=...)"
        )
    return SUPPORTED_EXTENSIONS[ext]


def _sniff(p: Path, encoding: str) -> str:
    """What the first bytes of the file look like: parquet, JSON, text, empty, or a binary kind."""
    with open(p, "rb") as f:
        head = f.read(4096)
    if not head.strip() and p.stat().st_size <= len(head):
        return "empty"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data (decompress it first)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (extract it first)"
    if head.startswith(b"ARROW1"):
        return "an Arrow IPC file"
    wide = encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16", "utf32"))
    if not wide and b"\x00" in head[:1024]:
        return "binary data (NUL bytes in the first KB)"
    if wide:
        head = head.decode(encoding, errors="ignore").encode("utf-8")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"["):
        return "JSON"
    return "text"


def _read_parquet(
    p: Path, columns: list[str] | None, fields: Mapping[str, str], cache_dir: str | None
) -> datasets.Dataset:
    open_parquet(p, columns, fields).close()
    try:
        return datasets.Dataset.from_parquet(str(p), columns=columns, cache_dir=cache_dir)
    except Exception as e:  # datasets wraps reader errors in DatasetGenerationError
        raise FileFormatError(f"cannot read {p} as parquet: {_root_cause(e)}") from e


def _read_csv(
    p: Path,
    fmt: str,
    columns: list[str] | None,
    fields: Mapping[str, str],
    encoding: str,
    sep: str | None,
    names: list[str] | None,
    cache_dir: str | None,
) -> datasets.Dataset:
    sep = sep if sep is not None else ("\t" if fmt == "tsv" else ",")
    engine = "python" if len(sep) > 1 and sep != r"\s+" else None
    opts: dict[str, Any] = {"sep": sep, "encoding": encoding, "keep_default_na": False}
    if engine:
        opts["engine"] = engine
    if names is not None:
        opts["names"] = list(names)
        opts["header"] = None
    try:
        head = pd.read_csv(p, nrows=1, dtype=str, **opts)
    except UnicodeDecodeError as e:
        raise _encoding_error(p, encoding, e) from e
    except pd.errors.EmptyDataError as e:
        raise EmptyLogError(f"{p} is empty: no events to read") from e
    except (pd.errors.ParserError, ValueError) as e:
        raise FileFormatError(f"cannot parse {p} as {fmt}: {str(e).strip()}") from e
    present = [str(c) for c in head.columns]
    if columns is not None:
        # pandas renames a repeated header name ("item", "item.1"): check the header as written
        written = present if names is not None else _header_as_written(p, opts)
        check_columns(written, columns, fields, str(p))
    if len(head) == 0:
        raise EmptyLogError(f"{p} has a header but no rows: no events to read")
    # every column is read (``usecols`` would silently accept lines with extra fields) as text
    features = datasets.Features({c: datasets.Value("string") for c in present})
    try:
        with _no_datasets_error_log("csv"):
            ds = datasets.Dataset.from_csv(
                str(p), features=features, na_values=[""], cache_dir=cache_dir, **opts
            )
    except Exception as e:
        raise _text_read_error(e, p, encoding, lambda cause: f"{fmt}: {str(cause).strip()}") from e
    return ds.select_columns(columns) if columns is not None else ds


def _text_read_error(
    e: Exception, p: Path, encoding: str, detail: Callable[[BaseException], str]
) -> UserfmError:
    """The typed error of a csv / json file `datasets` could not read: the text's encoding,
    no rows, or unparsable (``detail(cause)`` says as what, and where)."""
    cause = _root_cause(e)
    if isinstance(cause, UnicodeDecodeError):
        return _encoding_error(p, encoding, cause)
    if "corresponds to no data" in str(cause):
        return EmptyLogError(f"{p} has no rows: no events to read")
    return FileFormatError(f"cannot parse {p} as {detail(cause)}")


def _header_as_written(p: Path, opts: Mapping[str, Any]) -> list[str]:
    """The first line's field names without pandas' renaming of repeated names."""
    first = pd.read_csv(p, nrows=1, header=None, dtype=str, **opts)
    return ["" if pd.isna(v) else str(v) for v in first.iloc[0]]


def _read_json(
    p: Path,
    columns: list[str] | None,
    fields: Mapping[str, str],
    encoding: str,
    cache_dir: str | None,
) -> datasets.Dataset:
    try:
        with _no_datasets_error_log("json"):
            ds = datasets.Dataset.from_json(str(p), encoding=encoding, cache_dir=cache_dir)
    except Exception as e:

        def detail(cause: BaseException) -> str:  # reads the file again: only on this path
            return f"JSON lines: {_first_bad_line(p, encoding) or cause}"

        raise _text_read_error(e, p, encoding, detail) from e
    if columns is not None:
        check_columns(ds.column_names, columns, fields, str(p))
        ds = ds.select_columns(columns)
    # pyarrow's JSON reader does not check UTF-8: validate the text columns chunk by chunk
    table = ds.data.table
    for name in table.column_names:
        for chunk in table.column(name).chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as e:
                raise FileFormatError(
                    f"{p} is not valid {encoding} text (field {name!r}: {e}); pass "
                    "encoding='latin-1' (or the file's actual encoding) to read it"
                ) from e
    return ds


@contextlib.contextmanager
def _no_datasets_error_log(module: str) -> Iterator[None]:
    """datasets logs its own copy of a reader error before raising it; the error we raise
    says it once, in one line."""
    log = logging.getLogger(f"datasets.packaged_modules.{module}.{module}")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _first_bad_line(p: Path, encoding: str) -> str | None:
    """ "line N: <why>" for the first line of ``p`` that is not one JSON object (None when
    every line is, e.g. the file is one JSON array)."""
    with open(p, encoding=encoding, errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                return f"line {n} is not valid JSON ({e.msg} at column {e.colno}; truncated?)"
            if not isinstance(value, dict):
                return f"line {n} is a JSON {type(value).__name__}, not an object"
    return None


def _root_cause(e: BaseException) -> BaseException:
    """The innermost exception of a chain (datasets wraps reader errors); a decode error wins."""
    seen = set()
    cur: BaseException | None = e
    last = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, UnicodeDecodeError):
            return cur
        seen.add(id(cur))
        last = cur
        cur = cur.__cause__ or cur.__context__
    return last


def _encoding_error(p: Path, encoding: str, e: UnicodeDecodeError) -> FileFormatError:
    return FileFormatError(
        f"{p} is not valid {encoding} text ({e.reason}: byte {e.object[e.start : e.start + 1]!r}); "
        "pass encoding='latin-1' (or the file's actual encoding) to read it"
    )


def schema_fields(schema: EventSchema) -> dict[str, str]:
    out = {schema.user: "EventSchema.user", schema.item: "EventSchema.item"}
    if schema.timestamp is not None:
        out[schema.timestamp] = "EventSchema.timestamp"
    for canon in OPTIONAL_COLUMNS:
        col = getattr(schema, canon)
        if col is not None:
            out[col] = f"EventSchema.{canon}"
    for col in schema.extra:
        out[col] = "EventSchema.extra"
    return out


def check_columns(
    present: list[str], needed: list[str], fields: Mapping[str, str], where: str
) -> None:
    repeated = sorted({c for c in needed if present.count(c) > 1})
    if repeated:
        raise SchemaError(
            f"{where} has several columns named {repeated}: which one holds the data is "
            "ambiguous; rename or drop the extra ones"
        )
    missing = [c for c in needed if c not in present]
    if missing:
        desc = ", ".join(f"{c!r}" + (f" ({fields[c]})" if c in fields else "") for c in missing)
        raise SchemaError(
            f"column {desc} not found in {where}; its columns are {present}. Map your column "
            "names with EventSchema(user=..., item=..., timestamp=...)"
        )


def _dataset_from_pandas(df: pd.DataFrame, needed: list[str]) -> datasets.Dataset:
    """Arrow columns from a DataFrame; object columns of mixed str/int become exact strings."""
    arrays = {}
    by_name = {str(c): c for c in df.columns}
    for name in needed:
        s = df[by_name[name]]  # one column: `check_columns` refused repeated names
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        try:
            arrays[name] = pa.array(s, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            arrays[name] = _mixed_object_to_strings(s, name)
    return _dataset_from_arrow(pa.table(arrays))


def _dataset_from_arrow(table: pa.Table) -> datasets.Dataset:
    """An in-memory Dataset; dictionary columns are decoded (``datasets`` has no such type)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    try:
        return datasets.Dataset(InMemoryTable(table))
    except (TypeError, ValueError, NotImplementedError, pa.ArrowException) as e:
        raise DataError(f"unsupported column types {table.schema.types}: {e}") from e


def _mixed_object_to_strings(s: pd.Series, name: str) -> pa.Array:
    values = s.to_numpy(dtype=object)
    null = pd.isna(s).to_numpy()
    ok_types = (str, int, np.integer)
    for i, v in enumerate(values):  # only reached when Arrow cannot convert the column
        if not null[i] and (isinstance(v, (bool, np.bool_)) or not isinstance(v, ok_types)):
            first = next((values[j] for j in range(len(values)) if not null[j]), None)
            raise DataError(
                f"mixed or unsupported value types: {type(v).__name__} value {v!r} among "
                f"{type(first).__name__} values",
                column=name,
                row=i,
            )
    return pa.array([None if null[i] else str(v) for i, v in enumerate(values)], type=pa.string())
