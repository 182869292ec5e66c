"""`userfm embed` of a prepared log (issue 34 §3): one output file per input shard, the same
vectors as embedding the in-memory log, a rerun skips what is written, a changed model or
log is refused, the folder is checked complete."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from userfm import UserEncoder
from userfm.api.embed_prepared import EMBEDDINGS_MANIFEST, finish_output
from userfm.cli import main
from userfm.data.prepare import prepare_log
from userfm.data.prepared import PreparedLog
from userfm.data.readers import read_events
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import DataError

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    frame = generate_synthetic_log(SyntheticConfig(num_users=60, num_items=30, seed=2))
    prepared = prepare_log(frame, root / "prepared", num_shards=4)
    model = UserEncoder.from_log(read_events(frame), hidden_size=8, num_heads=1)
    model.save_pretrained(root / "model")
    return root, frame, prepared


def run(root, out, *extra) -> int:
    return main(["embed", "--model", str(root / "model"), "--input", str(root / "prepared"),
                 "--output", str(out), "--no_progress", *extra])  # fmt: skip


def test_one_file_per_shard_with_the_in_memory_vectors(setup, capsys):
    root, frame, prepared = setup
    out = root / "out"
    assert run(root, out) == 0
    assert "0 of 4 shards already written" in capsys.readouterr().out
    files = sorted(out.glob("shard-*.parquet"))
    assert [f.name for f in files] == [f"shard-{i:05d}-of-00004.parquet" for i in range(4)]
    got = pq.read_table(files).to_pandas().set_index("user")
    model = UserEncoder.from_pretrained(root / "model")
    want = model.embed(read_events(frame))
    assert sorted(got.index) == sorted(want.user_ids)
    for user, vector in zip(want.user_ids, want.vectors):
        np.testing.assert_allclose(got.loc[user, "embedding"], vector, atol=1e-5)
    assert json.loads((out / EMBEDDINGS_MANIFEST).read_text())["complete"] is True


def test_a_rerun_skips_written_shards_and_finishes_a_partial_one(setup, capsys):
    root, _, prepared = setup
    out = root / "partial"
    assert run(root, out) == 0
    first = (out / "shard-00001-of-00004.parquet").stat().st_mtime_ns
    (out / "shard-00002-of-00004.parquet").unlink()  # as if killed before shard 2 was renamed in
    with pytest.raises(DataError, match="incomplete"):
        finish_output(prepared, out)
    capsys.readouterr()
    assert run(root, out) == 0
    assert "3 of 4 shards already written" in capsys.readouterr().out
    assert (out / "shard-00001-of-00004.parquet").stat().st_mtime_ns == first
    assert (out / "shard-00002-of-00004.parquet").exists()


def test_another_model_is_refused_without_overwrite(setup, capsys):
    root, frame, _ = setup
    out = root / "other"
    assert run(root, out) == 0
    import torch

    torch.manual_seed(1)
    other = UserEncoder.from_log(read_events(frame), hidden_size=8, num_heads=1)
    other.save_pretrained(root / "model2")
    capsys.readouterr()
    argv = ["embed", "--model", str(root / "model2"), "--input", str(root / "prepared"),
            "--output", str(out), "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    assert "another model or log" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_reader_options_are_refused_for_a_prepared_log(setup, capsys):
    root, _, _ = setup
    assert run(root, root / "x", "--min_events", "3") == 2
    assert "prepare it again" in capsys.readouterr().err


def test_a_changed_prepared_folder_is_refused(setup, tmp_path, capsys):
    import shutil

    root, _, _ = setup
    copy = tmp_path / "prepared"
    shutil.copytree(root / "prepared", copy)
    (copy / "shards" / "shard-00003-of-00004.parquet").unlink()
    argv = ["embed", "--model", str(root / "model"), "--input", str(copy), "--output",
            str(tmp_path / "out"), "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    assert "shard shards/shard-00003-of-00004.parquet is missing" in capsys.readouterr().err
    assert PreparedLog.open(root / "prepared").num_users == 60


@pytest.mark.slow  # two processes (~30 s); the launcher path is tests/test_cli.py's
def test_two_processes_share_the_shards(setup, tmp_path):
    import subprocess
    import sys

    root, frame, _ = setup
    out = tmp_path / "out"
    command = [sys.executable, "-m", "userfm.cli", "embed", "--model", str(root / "model"),
               "--input", str(root / "prepared"), "--output", str(out), "--devices", "2",
               "--no_progress"]  # fmt: skip
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(sorted(out.glob("shard-*.parquet"))) == 4
    assert pq.read_table(sorted(out.glob("shard-*.parquet"))).num_rows == 60
    assert json.loads((out / EMBEDDINGS_MANIFEST).read_text())["complete"] is True
    users = [int(x.split()[1].replace(",", "")) for x in r.stdout.splitlines() if "embedded" in x]
    assert sorted(users) != [0, 0] and sum(users) == 60  # each rank its own shards
