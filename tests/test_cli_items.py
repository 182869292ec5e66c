"""`userfm items encode`: an item table -> parquet of (item, text, vector), cached, typed errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from userfm.cli import main
from userfm.data.items import read_items
from userfm.encoder.item_vectors import encode_items
from userfm.encoder.text_model import text_model_info


def _table(tmp_path):
    path = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "item": ["7", "8.0", " 9 "],
            "title": ["toy story", "space war", None],
            "genres": ["comedy|kids", "action", None],
        }
    ).to_csv(path, index=False)
    return path


def test_items_encode_writes_one_vector_per_item_and_counts_items_without_text(
    tiny_text_model, tmp_path, capsys
):
    items = _table(tmp_path)
    out = tmp_path / "vectors.parquet"
    argv = ["items", "encode", "--items", str(items), "--output", str(out),
            "--text_model", str(tiny_text_model), "--cache_dir", str(tmp_path / "cache"),
            "--text", "[title, genres]"]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert (
        "encoded 2 item texts (title, genres)" in said and "without text (null vector): 1" in said
    )
    table = pq.read_table(out)
    assert table.column("item").to_pylist() == ["7", "8", "9"]  # ids as the event readers read
    assert table.column("text").to_pylist()[0] == "title: toy story. genres: comedy, kids"
    vectors = table.column("vector").to_pylist()
    assert vectors[2] is None
    expected = encode_items(
        read_items(items), ["title", "genres"], text_model=tiny_text_model, cache_dir=False
    ).vectors
    np.testing.assert_allclose(np.array(vectors[:2]), expected[:2], rtol=1e-6)
    meta = table.schema.metadata
    assert meta[b"userfm.text_model_fingerprint"].decode() == (
        text_model_info(tiny_text_model).fingerprint
    )
    # the output is never replaced without --overwrite, and never the input
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*argv[:4], "--output", str(items), *argv[6:]]) == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--text", "[plot]"], "plot"),
        (["--id_column", "movie"], "movie"),
        (["--text_model", "no-such-model"], "no-such-model"),
    ],
)
def test_items_encode_errors_are_one_line(tiny_text_model, tmp_path, capsys, flags, message):
    argv = ["items", "encode", "--items", str(_table(tmp_path)), "--output",
            str(tmp_path / "v.parquet"), "--text_model", str(tiny_text_model), *flags]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("userfm items encode: error:") and message in err
    assert "Traceback" not in err and not (tmp_path / "v.parquet").exists()
