"""Result files: refused before the work when they may not be written, and written atomically."""

from __future__ import annotations

import pandas as pd
import pytest

from userfm.cli import main
from userfm.errors import ConfigError
from userfm.outputs import atomic_output, check_output


def test_check_output_refuses_the_input_a_folder_an_existing_file_and_a_wrong_suffix(tmp_path):
    log = tmp_path / "log.parquet"
    log.write_bytes(b"events")
    with pytest.raises(ConfigError, match="is the input file"):
        check_output(log, inputs=[log], overwrite=True)
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        check_output(log)
    assert check_output(log, overwrite=True) == log
    with pytest.raises(ConfigError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(ConfigError, match=r"writes \.parquet files"):
        check_output(tmp_path / "emb.csv", suffixes=[".parquet"])
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output(log / "sub" / "out.parquet")
    assert (
        check_output(tmp_path / "new" / "emb.parquet", suffixes=[".parquet"]).name == "emb.parquet"
    )


def test_atomic_output_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "emb.parquet"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        assert out.read_text() == "old"  # the target is untouched while writing
        raise RuntimeError("killed mid-write")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]  # no .part left
    with atomic_output(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and list(tmp_path.iterdir()) == [out]


def test_cli_embed_and_synth_never_destroy_a_file(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--users", "30", "--items", "20"]) == 0
    log = tmp_path / "events.parquet"
    before = log.read_bytes()
    rc = main(["synth", "--out", str(tmp_path), "--users", "30", "--items", "20"])
    assert rc == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    model = tmp_path / "no-model-needed"  # the output is refused before the model is read
    for output, message in ((log, "is the input file"), (tmp_path / "e.csv", "writes .parquet")):
        rc = main(["embed", "--model", str(model), "--input", str(log), "--output", str(output),
                   "--overwrite"])  # fmt: skip
        assert rc == 2 and message in capsys.readouterr().err
    assert log.read_bytes() == before
    (tmp_path / "emb.parquet").write_text("keep me")
    rc = main(["embed", "--model", str(model), "--input", str(log), "--output",
               str(tmp_path / "emb.parquet")])  # fmt: skip
    assert rc == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "emb.parquet").read_text() == "keep me"
    assert len(pd.read_parquet(log)) > 0
