"""`read_jsonl`: the one reader of JSON-lines record files (questions, results)."""

from __future__ import annotations

import pytest

from userfm.data.jsonl import read_jsonl
from userfm.errors import FileFormatError


def test_objects_with_their_lines_blank_lines_skipped(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"b": [2]}\n', encoding="utf-8")
    records = read_jsonl(path)
    assert [(r.line, r.value) for r in records] == [(1, {"a": 1}), (4, {"b": [2]})]
    assert records[1].where == f"{path}:4"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"a": 1}\n\n{"a": \n', r"q\.jsonl:3 is not valid JSON \(.*column"),
        ('{"a": 1}\n[1, 2]\n', r"q\.jsonl:2 is a JSON list, not an object"),
        ('"text"\n', r"q\.jsonl:1 is a JSON str, not an object"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path, text, match):
    path = tmp_path / "q.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=match):
        read_jsonl(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xe9"}\n')
    with pytest.raises(FileFormatError, match=r"q\.jsonl:2 is not UTF-8"):
        read_jsonl(path)
    with pytest.raises(FileNotFoundError, match="no JSON-lines file"):
        read_jsonl(tmp_path / "missing.jsonl")
