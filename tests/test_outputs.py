"""Result files: refused before the work when they may not be written, and written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from userfm.cli import main
from userfm.errors import ConfigError
from userfm.outputs import atomic_output, check_output, check_output_dir, staged_output_dir


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


def test_check_output_dir_refuses_a_file_a_path_under_a_file_and_a_folder_in_use(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(tmp_path / "f", overwrite=True)
    with pytest.raises(ConfigError, match="is under a file"):
        check_output_dir(tmp_path / "f" / "out")
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds files; pass --overwrite"):
        check_output_dir(used)
    assert check_output_dir(used, overwrite=True) == used
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty") == tmp_path / "empty"
    assert check_output_dir(tmp_path / "new" / "out") == tmp_path / "new" / "out"


def test_staged_output_dir_moves_a_complete_folder_in_and_nothing_on_an_error(tmp_path):
    out = tmp_path / "model"
    with staged_output_dir(out) as stage:
        (stage / "config.json").write_text("1")
        (stage / "lora").mkdir()
        (stage / "lora" / "a.bin").write_text("1")
    assert (out / "config.json").read_text() == "1" and (out / "lora" / "a.bin").exists()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), staged_output_dir(out) as stage:
        (stage / "config.json").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (out / "config.json").read_text() == "1"  # the old result is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .part folder left
    with staged_output_dir(out) as stage:
        (stage / "config.json").write_text("2")
        (stage / "lora").mkdir()
        (stage / "lora" / "b.bin").write_text("2")
    assert (out / "config.json").read_text() == "2"
    assert sorted(p.name for p in (out / "lora").iterdir()) == ["b.bin"]  # replaced whole
    assert (out / "notes.txt").read_text() == "mine"  # other files are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def write_result(out: Path, text: str) -> None:
    with staged_output_dir(out) as stage:
        (stage / "config.json").write_text(text)


def test_a_symlinked_output_folder_is_written_through_and_stays_a_link(tmp_path):
    """An empty folder behind a symlink made `rmdir` fail (NotADirectoryError)."""
    real = tmp_path / "disk" / "model"
    real.mkdir(parents=True)
    link = tmp_path / "model"
    link.symlink_to(real)
    write_result(link, "1")  # empty target
    assert link.is_symlink() and (real / "config.json").read_text() == "1"
    write_result(link, "2")  # target with a result in it
    assert link.is_symlink() and (real / "config.json").read_text() == "2"
    dangling = tmp_path / "later"
    dangling.symlink_to(tmp_path / "disk" / "later")
    write_result(dangling, "3")  # the folder it points to does not exist yet
    assert (tmp_path / "disk" / "later" / "config.json").read_text() == "3"
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["later", "model"]


def other_filesystem(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    return Path(tempfile.mkdtemp(dir=shm))


def test_an_output_folder_on_another_filesystem_is_written_with_renames(tmp_path):
    """A symlink to another filesystem used to stage beside the link: EXDEV on the move."""
    other = other_filesystem(tmp_path)
    try:
        link = tmp_path / "model"
        link.symlink_to(other)
        (other / "notes.txt").write_text("mine")
        write_result(link, "1")
        assert (other / "config.json").read_text() == "1"
        assert (other / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    finally:
        shutil.rmtree(other)


def test_a_mount_point_is_staged_inside_itself(tmp_path, monkeypatch):
    """An output folder that is a mount point cannot be renamed over nor staged beside."""
    out = tmp_path / "mnt"
    out.mkdir()
    (out / "config.json").write_text("old")
    real_stat = Path.stat

    def stat(self, *args, **kwargs):  # `out` reports another device, as a mount point does
        st = real_stat(self, *args, **kwargs)
        if self == out:
            return os.stat_result((*st[:2], st.st_dev + 1, *st[3:]))
        return st

    monkeypatch.setattr(Path, "stat", stat)
    stages = []
    with staged_output_dir(out) as stage:
        stages.append(stage)
        (stage / "config.json").write_text("new")
    assert stages[0].parent == out
    assert (out / "config.json").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_failed_save_pretrained_leaves_the_saved_model_loadable(tmp_path, monkeypatch):
    """Issue 18 §2: save_pretrained wrote into the folder file by file; an error (or a kill)
    between the weights and the card left a mix of two models."""
    import userfm.api.model_card as card
    from userfm.encoder import UserEncoder
    from userfm.encoder.config import UserEncoderConfig

    model = UserEncoder(UserEncoderConfig(num_items=20, hidden_size=16, num_heads=2))
    model.save_pretrained(tmp_path / "enc")
    before = (tmp_path / "enc" / "model.safetensors").read_bytes()
    other = UserEncoder(UserEncoderConfig(num_items=30, hidden_size=16, num_heads=2))

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(card, "render_model_card", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        other.save_pretrained(tmp_path / "enc")
    assert (tmp_path / "enc" / "model.safetensors").read_bytes() == before
    assert UserEncoder.from_pretrained(tmp_path / "enc").config.num_items == 20


def test_folder_writing_commands_refuse_a_folder_in_use_before_any_work(tmp_path, capsys):
    """Issue 18 §2: `eval questions/descriptions/uqa --out`, `pretrain export`, `plot --out`
    and `demo --out` wrote into an existing folder (or over a file) without a word."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    png = tmp_path / "curves.png"
    png.write_text("keep me")
    missing = str(tmp_path / "not-read")  # every refusal comes before the inputs are read
    log = ["--log", missing]
    commands = [
        ["eval", "questions", *log, "--out", str(used)],
        ["eval", "descriptions", *log, "--out", str(used)],
        ["eval", "uqa", "--questions", missing, *log, "--out", str(used)],
        ["pretrain", "export", missing, str(used)],
        ["plot", missing, "--out", str(png)],
        ["plot", missing, "--out", str(tmp_path / "curves.pdf")],
        ["demo", "--out", str(used)],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("--overwrite" in err[0] or ".png" in err[0]), (argv, err)
    assert (used / "notes.txt").read_text() == "mine" and png.read_text() == "keep me"
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_results_get_the_permissions_of_any_new_file(tmp_path):
    """Review of issue 18: mkstemp / mkdtemp create 0600 / 0700 and a rename keeps that, so
    every saved model and result was unreadable to other users."""
    import os

    mask = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "emb.parquet") as tmp:
            tmp.write_text("x")
        with staged_output_dir(tmp_path / "model") as stage:
            (stage / "config.json").write_text("{}")
    finally:
        os.umask(mask)
    assert (tmp_path / "emb.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
