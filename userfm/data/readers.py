"""Read raw interaction logs into a validated `EventLog`.

`read_events` accepts a path to a parquet / csv / tsv / jsonl (``.json``) file, a pandas
DataFrame, a pyarrow Table or a HF `datasets.Dataset`. Files are read through HF `datasets`
(``Dataset.from_parquet`` / ``from_csv`` / ``from_json``): the data are cached as Arrow and
memory-mapped, and validation runs batch by batch (``Dataset.map(batched=True)`` with pyarrow
compute inside), so logs larger than memory can be read.

Output: the canonical columns of `userfm.data.schema` (``user``, ``item`` strings; ``timestamp``
int64 unix seconds; optional ``action`` / ``category`` / ``title`` / extra attribute strings)
plus ``_row``, the 0-based row of each event in the input (for csv/tsv files: data rows, the
header line is not counted).

Canonical values:

* ids are strings. Integer ids keep every digit (csv/tsv columns are read as text, parquet
  ``uint64`` is converted exactly). Float ids that are integral become integer strings
  (``1.0`` -> ``"1"``), and so does their text in csv / jsonl (``"1.0"`` -> ``"1"``). Text ids
  lose surrounding whitespace and are otherwise kept verbatim (``"007"`` stays ``"007"``);
  what was changed is counted in ``ReadStats.ids_normalised``.
* timestamps: integers / floats in unit ``s``, ``ms``, ``us`` or ``ns`` (``timestamp_unit``),
  ``auto`` infers the unit from the largest value (> 1e11 -> ms, > 1e14 -> us, > 1e17 -> ns,
  else s) and records which in ``ReadStats.notes``. Arrow/pandas datetime and date types are
  used as they are. Strings are parsed as numbers when they look like numbers, otherwise as
  ISO-8601 dates/datetimes (other date formats such as ``01-Jan-1995`` are tried next); naive
  datetimes are UTC. Fractions of a second are floored.
* with ``EventSchema(timestamp=None)`` or ``timestamp_unit="order"`` the row order within the
  input is the time (``timestamp = _row``) and ``EventLog.has_time`` is False.
* attribute columns (action, category, title, extras) are cast to strings (``5.0`` -> ``"5"``,
  ``True`` -> ``"true"``); a list column is joined with ``|`` (``["a", "b"]`` -> ``"a|b"``).
  Nulls are allowed there and stay null.

Bad input: a typed error from `userfm.errors` naming the user-facing column and the first
offending 0-based input row, or a documented handling that is counted in `ReadStats` and
logged on the ``userfm.data`` logger.

==============================================  ============================================
input                                           handling
==============================================  ============================================
file does not exist                             ``FileNotFoundError`` naming the path
unknown file extension                          ``FileFormatError`` listing the supported ones
file content is not its format (csv named       ``FileFormatError`` naming the file and the
.parquet, binary named .csv, parquet named      kind detected from its first bytes (parquet
.jsonl, ...)                                    magic ``PAR1``; NUL bytes -> binary; gzip/zip)
text that is not valid in ``encoding``          ``FileFormatError`` naming the file, suggesting
                                                ``encoding="latin-1"``
unparsable csv/json (a line with too many      ``FileFormatError`` naming the file (a line
fields, broken JSON)                            with too few fields gives nulls, see below)
JSON field of mixed types (ids sometimes        values read as text (``1`` -> ``"1"``); a
numbers, sometimes strings)                     nested value in an id column -> ``DataError``
empty file, header only, zero rows              ``EmptyLogError``
a mapped column is missing                      ``SchemaError`` listing the columns present
id / timestamp column of the wrong type         ``DataError`` naming column and type (e.g.
(bool or list timestamps, nested ids)           ``list<item: int64>``)
null or empty (blank) user / item id            ``DataError`` (column, first row)
non-integral float id (``1.5``) or float id     ``DataError`` (column, first row)
beyond 2**53 (not exact)
null / unparsable timestamp                     ``DataError`` (column, first row, value)
negative timestamp (before 1970)                ``DataError`` (column, first row)
timestamp after 2100-01-01 (usually a unit      ``DataError`` (column, first row) with a hint
mistake, e.g. ms read as s)                     to set ``EventSchema.timestamp_unit``
numeric timestamps in two units (unix seconds   ``DataError`` naming the first row of each
beside milliseconds), ``timestamp_unit="auto"``  unit (values >= 1e8 are sorted by magnitude)
explicit unit that puts every event in 1970     kept; a note in ``ReadStats.notes`` and a
although the values look like unix seconds      warning (probably the wrong unit)
rows not sorted by (user, time)                 sorted (stable: ties keep input order),
                                                counted in ``rows_reordered``
exact duplicate rows (all mapped columns        ``duplicates="drop"`` (default): first kept,
equal after normalisation)                      others dropped, ``duplicates_dropped``, warning;
                                                ``"error"``: ``DataError`` naming the first
                                                duplicate row and the row it repeats;
                                                ``"keep"``: kept. Without timestamps
                                                (row-order time) no two rows are duplicates.
users with fewer than ``min_events`` events     dropped, ``short_users_dropped`` and
                                                ``short_user_rows_dropped``, info log line;
                                                ``EmptyLogError`` if no user is left
users with a single event                       kept, counted in ``single_event_users``
==============================================  ============================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.table import InMemoryTable

from userfm.data.log import ROW, EventLog, ReadStats, take_rows
from userfm.data.schema import (
    ACTION,
    CATEGORY,
    CATEGORY_SEP,
    ITEM,
    OPTIONAL_COLUMNS,
    TIMESTAMP,
    TITLE,
    USER,
    EventSchema,
)
from userfm.errors import ConfigError, DataError, EmptyLogError, FileFormatError, SchemaError

logger = logging.getLogger("userfm.data")

__all__ = ["read_events", "read_table", "SUPPORTED_EXTENSIONS", "MAX_TIMESTAMP"]

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
#: 2100-01-01T00:00:00Z: later timestamps are treated as a unit mistake
MAX_TIMESTAMP = 4_102_444_800
_UNIT_FACTOR = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_HASH = "_hash"
_BATCH_SIZE = 65_536
_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
#: the text of an integral float id: "12.0" -> group "12"
_FLOAT_ID_RE = r"^([+-]?\d+)\.0*$"
_INT_RE = r"^[+-]?\d+$"
_ONE_YEAR = 365 * 86_400
_EXACT_FLOAT_INT = 2**53


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def read_events(
    source: str | os.PathLike | pd.DataFrame | pa.Table | datasets.Dataset,
    schema: EventSchema | None = None,
    *,
    format: str | None = None,
    min_events: int = 1,
    duplicates: Literal["drop", "keep", "error"] = "drop",
    encoding: str = "utf-8",
    sep: str | None = None,
    cache_dir: str | None = None,
) -> EventLog:
    """Read, validate and normalise an interaction log (see the module docstring for details).

    Args:
        source: path to a parquet / csv / tsv / jsonl / json file, a pandas DataFrame, a pyarrow
            Table or a `datasets.Dataset`.
        schema: which input columns hold user, item, timestamp and attributes (default: columns
            named ``user``, ``item``, ``timestamp``, unit inferred).
        format: ``parquet``, ``csv``, ``tsv``, ``jsonl`` or ``json``; default from the file
            extension. Ignored for in-memory sources.
        min_events: users with fewer events (after dropping duplicates) are dropped and counted.
        duplicates: what to do with exact duplicate rows: ``drop`` (keep the first), ``keep``,
            or ``error``.
        encoding: text encoding of csv/tsv/jsonl files (e.g. ``"latin-1"``).
        sep: csv field separator (default ``,`` for csv and a tab for tsv; several characters,
            e.g. ``::``, use pandas' python engine; ``\\s+`` splits on any whitespace).
        cache_dir: where HF `datasets` caches the Arrow copy of a file (default: its own cache).

    Returns:
        The validated `EventLog`, sorted by (user, timestamp, input row); ``log.stats`` says what
        reading did.

    Raises:
        FileNotFoundError: the file does not exist.
        FileFormatError: unknown extension, content that is not the format, undecodable text.
        SchemaError: a mapped column is missing.
        DataError: an invalid value (names the column and the first bad row).
        EmptyLogError: no events (empty input, or every user below ``min_events``).
        ConfigError: an invalid argument.
    """
    schema = schema if schema is not None else EventSchema()
    if not isinstance(schema, EventSchema):
        raise ConfigError(f"schema must be an EventSchema, got {type(schema).__name__}")
    if (
        isinstance(min_events, bool)
        or not isinstance(min_events, (int, np.integer))
        or min_events < 1
    ):
        raise ConfigError(f"min_events must be an integer >= 1, got {min_events!r}")
    if duplicates not in ("drop", "keep", "error"):
        raise ConfigError(f"duplicates must be 'drop', 'keep' or 'error', got {duplicates!r}")
    reserved = {USER, ITEM, TIMESTAMP, ACTION, CATEGORY, TITLE, ROW, _HASH}
    clash = sorted(set(schema.extra) & reserved)
    if clash:
        raise ConfigError(
            f"EventSchema.extra names {clash}, which are canonical column names; rename those "
            "input columns first"
        )

    mapping = schema.input_columns()  # canonical -> input column
    fields = _field_names(schema)  # input column -> "EventSchema.<field>"
    needed = list(dict.fromkeys(mapping.values()))

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
        _check_columns([str(c) for c in source.columns], needed, fields, "the DataFrame")
        raw = _dataset_from_pandas(source, needed)
    elif isinstance(source, pa.Table):
        _check_columns(source.column_names, needed, fields, "the table")
        raw = _dataset_from_arrow(source.select(needed))
    elif isinstance(source, datasets.Dataset):
        _check_columns(source.column_names, needed, fields, "the dataset")
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

    stats = ReadStats(rows_read=len(raw))
    plan = _make_plan(raw.data.table, schema, mapping, stats, dedupe=duplicates != "keep")

    features = datasets.Features(
        {
            **{
                canon: datasets.Value("int64" if canon == TIMESTAMP else "string")
                for canon in plan["out"]
            },
            ROW: datasets.Value("int64"),
            **({_HASH: datasets.Value("uint64")} if plan["hash"] else {}),
        }
    )
    canon = raw.with_format("arrow").map(
        _normalise_batch,
        batched=True,
        with_indices=True,
        batch_size=_BATCH_SIZE,
        writer_batch_size=_BATCH_SIZE,
        remove_columns=raw.column_names,
        features=features,
        fn_kwargs={"plan": plan},
        desc="userfm: validating events",
    )
    canon = canon.with_format(None)
    table = canon.data.table
    keep = np.ones(len(canon), dtype=bool)

    if plan["hash"]:
        dup_rows = _duplicate_rows(table, plan["out"], duplicates, mapping)
        if len(dup_rows):
            keep[dup_rows] = False
            stats.duplicates_dropped = len(dup_rows)
            logger.warning(
                "dropped %d exact duplicate rows (first at row %d); pass duplicates='keep' to keep them",
                len(dup_rows),
                int(dup_rows[0]),
            )
        canon = canon.remove_columns([_HASH])
        table = canon.data.table

    if min_events > 1:
        users = table.column(USER)
        counts = pc.value_counts(pc.filter(users, pa.array(keep)) if not keep.all() else users)
        short = counts.field("values").filter(pc.less(counts.field("counts"), min_events))
        if len(short):
            short_mask = pc.is_in(users, value_set=short).to_numpy(zero_copy_only=False) & keep
            stats.short_users_dropped = len(short)
            stats.short_user_rows_dropped = int(short_mask.sum())
            keep &= ~short_mask
            logger.info(
                "dropped %d users with fewer than min_events=%d events (%d events)",
                stats.short_users_dropped,
                min_events,
                stats.short_user_rows_dropped,
            )
        if not keep.any():
            raise EmptyLogError(
                f"no events left: every user has fewer than min_events={min_events} events"
            )

    if not keep.all():
        canon = take_rows(canon, np.flatnonzero(keep))
    return EventLog(
        canon, stats, has_time=plan["ts_mode"] != "order", schema=_resolved(schema, plan)
    )


def _resolved(schema: EventSchema, plan: dict) -> EventSchema:
    """``schema`` with the timestamp unit the reader used (``auto`` resolved): what a model
    trained on the log records, so that later inputs are read the same way."""
    mode = plan["ts_mode"]
    unit = "order" if mode == "order" else plan["ts_unit"] or "datetime"
    return replace(schema, timestamp_unit=unit)


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
    fields = _fields or {}
    if fmt == "parquet":
        return _read_parquet(p, columns, fields, cache_dir)
    if fmt in ("csv", "tsv"):
        return _read_csv(p, fmt, columns, fields, encoding, sep, names, cache_dir)
    return _read_json(p, columns, fields, encoding, cache_dir)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
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
    try:
        meta = pq.ParquetFile(p)
        names = meta.schema_arrow.names
        num_rows = meta.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise FileFormatError(f"cannot read {p} as parquet: {e}") from e
    if columns is not None:
        _check_columns(names, columns, fields, str(p))
    if num_rows == 0:
        raise EmptyLogError(f"{p} has no rows: no events to read")
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
        _check_columns(written, columns, fields, str(p))
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
        cause = _root_cause(e)
        if isinstance(cause, UnicodeDecodeError):
            raise _encoding_error(p, encoding, cause) from e
        if "corresponds to no data" in str(cause):
            raise EmptyLogError(f"{p} has no rows: no events to read") from e
        raise FileFormatError(f"cannot parse {p} as {fmt}: {str(cause).strip()}") from e
    return ds.select_columns(columns) if columns is not None else ds


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
        cause = _root_cause(e)
        if isinstance(cause, UnicodeDecodeError):
            raise _encoding_error(p, encoding, cause) from e
        if "corresponds to no data" in str(cause):
            raise EmptyLogError(f"{p} has no rows: no events to read") from e
        raise FileFormatError(
            f"cannot parse {p} as JSON lines: {_first_bad_line(p, encoding) or cause}"
        ) from e
    if columns is not None:
        _check_columns(ds.column_names, columns, fields, str(p))
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


def _field_names(schema: EventSchema) -> dict[str, str]:
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


def _check_columns(
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
        s = df[by_name[name]]  # one column: `_check_columns` refused repeated names
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


# ---------------------------------------------------------------------------------------------
# plan: per-column decisions made once for the whole input (types, timestamp unit)
# ---------------------------------------------------------------------------------------------
def _value_type(t: pa.DataType) -> pa.DataType:
    """The logical value type: dictionary -> its values; JSON-encoded text (``datasets`` uses it
    for JSON fields of mixed types, e.g. ids that are sometimes numbers) -> string."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if _is_json(t):
        return pa.string()
    return t


def _is_json(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"


def _plain(arr: pa.Array) -> pa.Array:
    """Decode dictionary arrays and JSON-encoded text into plain arrays."""
    if pa.types.is_dictionary(arr.type):
        return arr.dictionary_decode()
    if _is_json(arr.type):
        return _json_to_text(arr)
    return arr


def _json_to_text(arr: pa.Array) -> pa.Array:
    """JSON texts -> scalar strings (``"b"`` -> ``b``, ``1`` -> ``1``, ``null`` -> null)."""
    s = arr.storage.cast(pa.string())
    s = pc.if_else(pc.equal(s, "null"), pa.scalar(None, pa.string()), s)
    quoted = pc.and_(pc.starts_with(s, '"'), pc.ends_with(s, '"'))
    out = pc.if_else(quoted, pc.utf8_slice_codeunits(s, 1, -1), s)
    escaped = pc.fill_null(pc.and_(quoted, pc.match_substring(s, "\\")), False)
    if pc.any(escaped).as_py():  # rare: unescape those values properly
        values = out.to_pylist()
        for i in np.flatnonzero(escaped.to_numpy(zero_copy_only=False)):
            values[i] = json.loads(s[int(i)].as_py())
        out = pa.array(values, type=pa.string())
    return out


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _id_kind(t: pa.DataType, col: str) -> str:
    if _is_json(t):
        return "json"
    t = _value_type(t)
    if _is_text(t):
        return "str"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t) and t.scale == 0:
        return "int"
    if pa.types.is_null(t):
        raise DataError("missing id: the column holds only nulls", column=col, row=0)
    raise DataError(f"ids must be strings or integers, but the column has type {t}", column=col)


def _attr_kind(t: pa.DataType, col: str) -> str:
    t = _value_type(t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = _value_type(t.value_type)
        if (
            pa.types.is_nested(inner)
            or pa.types.is_binary(inner)
            or pa.types.is_large_binary(inner)
        ):
            raise DataError(f"attribute column has unsupported type {t}", column=col)
        return "list"
    if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise DataError(
            f"attribute column has unsupported type {t}; expected strings, numbers or lists of them",
            column=col,
        )
    return "scalar"


def _infer_unit(max_abs: float) -> str:
    if max_abs > 1e17:
        return "ns"
    if max_abs > 1e14:
        return "us"
    if max_abs > 1e11:
        return "ms"
    return "s"


#: |value| ranges that look like unix time in each unit: [1e8, 1e11) seconds is 1973-5138
_UNIT_BINS = (1e8, 1e11, 1e14, 1e17)
_BIN_UNITS = ("s", "ms", "us", "ns")


def _magnitudes(column: pa.ChunkedArray, text: bool) -> tuple[float, dict[str, int]]:
    """Largest absolute value of a numeric (or numeric-text) column, and the first row whose
    value looks like unix time in each unit (values below 1e8 look like none), chunk by chunk."""
    best, first, offset = 0.0, {}, 0
    for chunk in column.chunks:
        n = len(chunk)
        chunk = _plain(chunk)
        if text:
            chunk = pc.utf8_trim_whitespace(chunk)
            numeric = pc.fill_null(pc.match_substring_regex(chunk, _NUMBER_RE), False)
            chunk = pc.if_else(numeric, chunk, pa.scalar(None, chunk.type))
        values = np.abs(
            pc.cast(chunk, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        )  # (n,), NaN at nulls
        finite = np.isfinite(values)
        if finite.any():
            best = max(best, float(values[finite].max()))
            kinds = np.digitize(np.where(finite, values, 0.0), _UNIT_BINS)  # 0: below 1e8
            for k in np.unique(kinds[kinds > 0]):
                unit = _BIN_UNITS[int(k) - 1]
                first.setdefault(unit, offset + int(np.argmax(kinds == k)))
        offset += n
    return best, first


def _make_plan(
    table: pa.Table, schema: EventSchema, mapping: dict[str, str], stats: ReadStats, dedupe: bool
) -> dict:
    types = {name: table.schema.field(name).type for name in table.column_names}
    plan: dict[str, Any] = {"cols": {}, "out": list(mapping)}
    if TIMESTAMP not in plan["out"]:
        plan["out"].insert(2, TIMESTAMP)
    for canon, col in mapping.items():
        if canon in (USER, ITEM):
            plan["cols"][canon] = (col, _id_kind(types[col], col))
            if plan["cols"][canon][1] in ("str", "json"):
                changed = _count_normalised_ids(table.column(col))
                if changed:
                    stats.ids_normalised += changed
                    stats.notes.append(
                        f"{changed:,} {canon} ids of column {col!r} normalised (surrounding "
                        "spaces removed, '1.0' read as '1')"
                    )
        elif canon != TIMESTAMP:
            plan["cols"][canon] = (col, _attr_kind(types[col], col))

    unit = schema.timestamp_unit
    if TIMESTAMP not in mapping:
        plan["ts_mode"], plan["ts_unit"], plan["ts_col"] = "order", None, None
        stats.notes.append("no timestamp column: row order within the input is the event time")
    else:
        col = mapping[TIMESTAMP]
        t = _value_type(types[col])
        plan["ts_col"] = col
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            plan["ts_mode"], plan["ts_unit"] = "datetime_type", None
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            if unit == "datetime":
                raise DataError(
                    f"timestamp_unit='datetime' but the column is numeric ({t}); set timestamp_unit "
                    "to 's', 'ms', 'us', 'ns' or 'auto'",
                    column=col,
                )
            plan["ts_mode"] = "number"
            plan["ts_unit"] = (
                unit if unit != "auto" else _auto_unit(table.column(col), False, col, stats)
            )
        elif _is_text(t):
            if unit == "datetime":
                plan["ts_mode"], plan["ts_unit"] = "date_text", None
            elif unit != "auto":
                plan["ts_mode"], plan["ts_unit"] = "number_text", unit
            elif _looks_numeric(table.column(col)):
                plan["ts_mode"] = "number_text"
                plan["ts_unit"] = _auto_unit(table.column(col), True, col, stats)
            else:
                plan["ts_mode"], plan["ts_unit"] = "date_text", None
        elif pa.types.is_null(t):
            raise DataError("missing timestamp: the column holds only nulls", column=col, row=0)
        else:
            raise DataError(
                f"timestamps must be integers, floats, datetimes or date strings, but the column "
                f"has type {t}",
                column=col,
            )
        if plan["ts_unit"] in ("ms", "us", "ns") and unit == plan["ts_unit"]:
            # an explicit sub-second unit that puts every event in 1970: probably seconds
            m, _ = _magnitudes(table.column(col), plan["ts_mode"] == "number_text")
            if m / _UNIT_FACTOR[unit] < _ONE_YEAR and m > 1e8:
                note = (
                    f"timestamps in column {col!r} read as {_UNIT_NAME[unit]} all fall in 1970; "
                    f"the values look like unix seconds (timestamp_unit='s'?)"
                )
                stats.notes.append(note)
                logger.warning(note)
    plan["hash"] = dedupe and plan["ts_mode"] != "order"
    return plan


def _looks_numeric(column: pa.ChunkedArray) -> bool:
    """Whether most of the first (up to 1000) non-null values of a text column are numbers."""
    for chunk in column.chunks:
        chunk = _plain(chunk)
        sample = pc.drop_null(chunk.slice(0, 5000))[:1000]
        if len(sample):
            sample = pc.utf8_trim_whitespace(sample)
            numeric = pc.sum(pc.match_substring_regex(sample, _NUMBER_RE).cast(pa.int64())).as_py()
            return numeric * 2 >= len(sample)
    return True


def _auto_unit(column: pa.ChunkedArray, text: bool, col: str, stats: ReadStats) -> str:
    """The unit of the column's largest value; a column whose values look like unix time in
    two units (seconds beside milliseconds) is refused: one unit would put the others in
    1970 or after 2100."""
    m, first = _magnitudes(column, text)
    if len(first) > 1:
        kinds = ", ".join(
            f"{_UNIT_NAME[u]} from row {r}" for u, r in sorted(first.items(), key=lambda x: x[1])
        )
        raise DataError(
            f"timestamps mix units ({kinds}); convert the column to one unit (timestamp_unit "
            "applies to every row)",
            column=col,
            row=max(first.values()),
        )
    unit = _infer_unit(m)
    note = (
        f"timestamp unit of column {col!r} inferred as {_UNIT_NAME[unit]} ('{unit}') from the "
        f"largest value {m:.4g}; set EventSchema(timestamp_unit=...) to override"
    )
    stats.notes.append(note)
    logger.info(note)
    return unit


# ---------------------------------------------------------------------------------------------
# per-batch normalisation (runs inside Dataset.map)
# ---------------------------------------------------------------------------------------------
def _normalise_batch(batch: pa.Table, indices: list[int], plan: dict) -> pa.Table:
    offset = indices[0] if len(indices) else 0
    n = batch.num_rows
    out: dict[str, pa.Array] = {}
    for canon in plan["out"]:
        if canon == TIMESTAMP:
            out[canon] = _timestamps(batch, plan, offset, n)
            continue
        col, kind = plan["cols"][canon]
        arr = _combine(batch.column(col))
        if canon in (USER, ITEM):
            out[canon] = _ids(arr, kind, col, offset)
        else:
            out[canon] = _attribute(arr, kind)
    out[ROW] = pa.array(np.arange(offset, offset + n, dtype=np.int64))
    if plan["hash"]:
        frame = pa.table({k: out[k] for k in plan["out"]}).to_pandas()
        out[_HASH] = pa.array(pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64))
    return pa.table(out)


def _combine(col: pa.ChunkedArray) -> pa.Array:
    return _plain(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)


def _first(mask: pa.Array | np.ndarray) -> int:
    m = (
        mask.to_numpy(zero_copy_only=False)
        if isinstance(mask, (pa.Array, pa.ChunkedArray))
        else mask
    )
    return int(np.flatnonzero(m)[0])


def _check_nulls(arr: pa.Array, col: str, offset: int, what: str) -> None:
    if arr.null_count:
        i = _first(arr.is_null())
        raise DataError(f"missing {what} (null / empty field)", column=col, row=offset + i)


def _text_ids(s: pa.Array) -> pa.Array:
    """Text ids as the log keeps them: surrounding whitespace removed, and the text of an
    integral float (``"1.0"``, how a float column of ids prints) read as the integer (``"1"``),
    as float-typed columns are; other text verbatim (``"007"``)."""
    s = pc.utf8_trim_whitespace(s)
    return pc.replace_substring_regex(s, pattern=_FLOAT_ID_RE, replacement=r"\1")


def _count_normalised_ids(column: pa.ChunkedArray) -> int:
    """How many (non-null) text ids `_text_ids` changes, chunk by chunk."""
    changed = 0
    for chunk in column.chunks:
        s = _plain(chunk).cast(pa.string())
        changed += pc.sum(pc.fill_null(pc.not_equal(s, _text_ids(s)), False)).as_py() or 0
    return changed


def _ids(arr: pa.Array, kind: str, col: str, offset: int) -> pa.Array:
    _check_nulls(arr, col, offset, "id")
    if kind == "json":  # ids of mixed JSON types: scalars only
        nested = pc.or_(pc.starts_with(arr, "["), pc.starts_with(arr, "{"))
        if pc.any(nested).as_py():
            i = _first(nested)
            raise DataError(f"nested id value {arr[i].as_py()}", column=col, row=offset + i)
    if kind in ("str", "json"):
        s = _text_ids(arr.cast(pa.string()))
        empty = pc.equal(pc.utf8_length(s), 0)
        if pc.any(empty).as_py():
            raise DataError("empty id", column=col, row=offset + _first(empty))
        return s
    if kind == "int":
        return arr.cast(pa.string())
    v = arr.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(v) | (np.floor(v) != v)
    if bad.any():
        i = _first(bad)
        raise DataError(f"non-integral float id {float(v[i])!r}", column=col, row=offset + i)
    big = np.abs(v) >= _EXACT_FLOAT_INT
    if big.any():
        i = _first(big)
        raise DataError(
            f"float id {float(v[i])!r} is too large to be exact (ids were stored as floating point); "
            "store ids as strings or integers",
            column=col,
            row=offset + i,
        )
    return pa.array(v.astype(np.int64)).cast(pa.string())


def _attribute(arr: pa.Array, kind: str) -> pa.Array:
    if kind == "list":
        if pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            arr = arr.cast(pa.list_(_value_type(arr.type.value_type)))
        vt = arr.type.value_type
        if pa.types.is_dictionary(vt):
            arr = arr.cast(pa.list_(vt.value_type))
        return pc.binary_join(arr.cast(pa.list_(pa.string())), CATEGORY_SEP)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    return arr.cast(pa.string())


def _timestamps(batch: pa.Table, plan: dict, offset: int, n: int) -> pa.Array:
    mode = plan["ts_mode"]
    if mode == "order":
        return pa.array(np.arange(offset, offset + n, dtype=np.int64))
    col = plan["ts_col"]
    arr = _combine(batch.column(col))
    if mode == "date_text" or mode == "number_text":
        arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        arr = pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), arr)
    _check_nulls(arr, col, offset, "timestamp")
    if mode == "datetime_type":
        secs = _datetime_seconds(arr)
    elif mode == "date_text":
        secs = _parse_dates(arr, col, offset)
    elif mode == "number_text":
        secs = _number_text_seconds(arr, plan["ts_unit"], col, offset)
    else:
        secs = _number_seconds(arr, plan["ts_unit"], col, offset)
    _check_range(secs, arr, plan["ts_unit"], col, offset)
    return pa.array(secs, type=pa.int64())


def _datetime_seconds(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_date32(t):
        return arr.cast(pa.int32()).to_numpy().astype(np.int64) * 86_400
    if pa.types.is_date64(t):
        return np.floor_divide(arr.cast(pa.int64()).to_numpy(), 1000)
    factor = _UNIT_FACTOR[t.unit]
    return np.floor_divide(arr.cast(pa.int64()).to_numpy(), factor)


def _number_seconds(arr: pa.Array, unit: str, col: str, offset: int) -> np.ndarray:
    t = arr.type
    factor = _UNIT_FACTOR[unit]
    if pa.types.is_integer(t):
        v = arr.to_numpy()
        if pa.types.is_unsigned_integer(t):
            over = v > np.iinfo(np.int64).max
            if over.any():
                i = _first(over)
                raise DataError(
                    f"timestamp {int(v[i])} is out of range; {_unit_hint(float(v[i]), unit)}",
                    column=col,
                    row=offset + i,
                )
        v = v.astype(np.int64)
        _check_negative(v, arr, col, offset)
        return np.floor_divide(v, factor)
    v = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(v)
    if bad.any():
        i = _first(bad)
        raise DataError(f"unparsable timestamp {float(v[i])!r}", column=col, row=offset + i)
    _check_negative(v, arr, col, offset)
    return _float_seconds(v, factor, unit, col, offset)


def _float_seconds(v: np.ndarray, factor: int, unit: str, col: str, offset: int) -> np.ndarray:
    secs = np.floor(v / factor)
    over = secs > MAX_TIMESTAMP
    if over.any():
        i = _first(over)
        raise DataError(
            f"timestamp {v[i]:.6g} is after 2100-01-01; {_unit_hint(float(v[i]), unit)}",
            column=col,
            row=offset + i,
        )
    return secs.astype(np.int64)


def _number_text_seconds(arr: pa.Array, unit: str, col: str, offset: int) -> np.ndarray:
    ok = pc.match_substring_regex(arr, _NUMBER_RE)
    if not pc.all(ok).as_py():
        i = _first(pc.invert(ok))
        raise DataError(
            f"unparsable timestamp {arr[i].as_py()!r} (read as a number in {_UNIT_NAME[unit]}; "
            "set EventSchema(timestamp_unit='datetime') for date strings)",
            column=col,
            row=offset + i,
        )
    if pc.all(pc.match_substring_regex(arr, _INT_RE)).as_py():
        try:
            ints = arr.cast(pa.int64())
        except (pa.ArrowInvalid, OverflowError):
            ints = None
        if ints is not None:
            return _number_seconds(ints, unit, col, offset)
    v = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    _check_negative(v, arr, col, offset)
    return _float_seconds(v, _UNIT_FACTOR[unit], unit, col, offset)


def _parse_dates(arr: pa.Array, col: str, offset: int) -> np.ndarray:
    s = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
    dt = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
    retry = dt.isna()
    if retry.any():  # other formats (e.g. 01-Jan-1995), slower
        dt = dt.astype("datetime64[us, UTC]")
        dt[retry] = pd.to_datetime(s[retry], format="mixed", utc=True, errors="coerce").astype(
            "datetime64[us, UTC]"
        )
        bad = dt.isna().to_numpy()
        if bad.any():
            i = _first(bad)
            raise DataError(
                f"unparsable timestamp {s.iloc[i]!r} (expected ISO-8601 dates/datetimes, or numbers "
                "with EventSchema.timestamp_unit)",
                column=col,
                row=offset + i,
            )
    values = dt.dt.tz_localize(None).to_numpy()
    secs = values.astype("datetime64[s]").astype(np.int64)
    neg = secs < 0
    if neg.any():
        i = _first(neg)
        raise DataError(f"timestamp {s.iloc[i]!r} is before 1970-01-01", column=col, row=offset + i)
    return secs


def _check_negative(v: np.ndarray, arr: pa.Array, col: str, offset: int) -> None:
    neg = v < 0
    if neg.any():
        i = _first(neg)
        raise DataError(f"negative timestamp {arr[i].as_py()!r}", column=col, row=offset + i)


def _check_range(secs: np.ndarray, arr: pa.Array, unit: str | None, col: str, offset: int) -> None:
    over = secs > MAX_TIMESTAMP
    if over.any():
        i = _first(over)
        value = arr[i].as_py()
        try:
            hint = (
                _unit_hint(float(value), unit)
                if unit is not None
                else "dates after that are not supported"
            )
        except (TypeError, ValueError):
            hint = "dates after that are not supported"
        raise DataError(
            f"timestamp {value!r} is after 2100-01-01; {hint}", column=col, row=offset + i
        )
    neg = secs < 0
    if neg.any():
        i = _first(neg)
        raise DataError(
            f"timestamp {arr[i].as_py()!r} is before 1970-01-01", column=col, row=offset + i
        )


def _unit_hint(value: float, unit: str) -> str:
    guess = _infer_unit(abs(value))
    if guess != unit:
        return (
            f"read as {_UNIT_NAME[unit]}, it looks like {_UNIT_NAME[guess]}: set "
            f"EventSchema(timestamp_unit='{guess}')"
        )
    return "probably a unit mistake: set EventSchema(timestamp_unit='s'|'ms'|'us'|'ns')"


# ---------------------------------------------------------------------------------------------
# duplicates
# ---------------------------------------------------------------------------------------------
def _duplicate_rows(
    table: pa.Table, cols: list[str], duplicates: str, mapping: dict[str, str]
) -> np.ndarray:
    """Positions of rows equal to an earlier row in every canonical column (hash, then verify)."""
    hashes = table.column(_HASH)
    counts = pc.value_counts(hashes)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return np.zeros(0, dtype=np.int64)
    cand = table.filter(pc.is_in(hashes, value_set=repeated)).select([*cols, ROW]).to_pandas()
    dup = cand.duplicated(subset=cols, keep="first").to_numpy()
    rows = cand[ROW].to_numpy()[dup]
    if duplicates == "error" and len(rows):
        first = int(rows[0])
        key = cand.loc[cand[ROW] == first, cols].iloc[0]
        same = (cand[cols] == key) | (cand[cols].isna() & key.isna())
        original = int(cand.loc[same.all(axis=1), ROW].iloc[0])
        raise DataError(
            f"exact duplicate event: row {first} repeats row {original} in every mapped column "
            f"({', '.join(mapping.values())}); pass duplicates='drop' or 'keep'",
            row=first,
        )
    return rows.astype(np.int64)
