"""Reading JSON-lines files of records (questions, results): one JSON object per line.

The one reader of such files (issue 19): a line that is not a JSON object raises
`FileFormatError` naming ``file:line``, the form editors and compilers use, and callers name
the same ``file:line`` (`JsonlRecord.where`) when a record lacks a field they need. Event logs
in ``.jsonl`` are read by `userfm.data.readers`, which streams them through ``datasets``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from userfm.errors import FileFormatError


class JsonlRecord(NamedTuple):
    """One object of a JSON-lines file and where it was read."""

    path: Path
    line: int  # 1-based, blank lines counted
    value: dict[str, Any]

    @property
    def where(self) -> str:
        """``"path:line"``, to name this record in an error."""
        return f"{self.path}:{self.line}"


def read_jsonl(path: str | os.PathLike) -> list[JsonlRecord]:
    """Every JSON object of the UTF-8 JSON-lines file ``path``, in file order; blank lines
    are skipped.

    Args:
        path: the file.

    Returns:
        One `JsonlRecord` (path, 1-based line, object) per non-blank line.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        FileFormatError: a line is not UTF-8, not valid JSON, or a JSON value other than an
            object; the message names ``path:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, f"no JSON-lines file at {path}", str(path))
    records = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FileFormatError(f"{where} is not UTF-8 text ({e.reason})") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise FileFormatError(
                    f"{where} is not valid JSON ({e.msg} at column {e.colno}; truncated?)"
                ) from None
            if not isinstance(value, dict):
                raise FileFormatError(
                    f"{where} is a JSON {type(value).__name__}, not an object (one record a line)"
                )
            records.append(JsonlRecord(path, n, value))
    return records
