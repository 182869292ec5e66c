"""The `userfm` command line: each command end to end, errors as one line without traceback."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from userfm import __version__
from userfm.api.embeddings import UserEmbeddings
from userfm.cli import main

TINY = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "synthetic-tiny.yaml"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", ["synth", "embed", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: userfm [options] {command} " in capsys.readouterr().out


def test_demo_synth_then_embed_end_to_end(tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--out",
                str(tmp_path / "demo"),
                "--users",
                "150",
                "--epochs",
                "2",
                "--pretrain_config",
                str(TINY),
                "--no_progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "[5/5] next-item retrieval, leave-one-out, test split" in out
    assert "most popular  HR@10" in out and "top-5 next items" in out and "nearest users" in out
    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "s"),
                "--users",
                "120",
                "--items",
                "200",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    log = tmp_path / "s" / "events.parquet"
    assert log.is_file()
    capsys.readouterr()
    code = main(
        [
            "embed",
            "--model",
            str(tmp_path / "demo" / "encoder"),
            "--input",
            str(log),
            "--output",
            str(tmp_path / "emb.parquet"),
            "--no_progress",
        ]
    )  # no column flags: the model reads the genre / action columns it was trained with
    assert code == 0
    summary = capsys.readouterr().out
    assert "embedded 120 users" in summary and "unknown items" in summary and "dropped" in summary
    assert "users without the side features the model uses (embedded without them): 0" in summary
    emb = UserEmbeddings.from_parquet(tmp_path / "emb.parquet")
    assert len(emb) == 120 and emb.dim == 64


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    """In-process (issue 19 §6: a subprocess per error case paid the whole import each time);
    the console entry point is `main`, so this is what the shell sees."""
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"uid": ["a"], "item": ["x"], "timestamp": [1]}).to_csv(bad, index=False)
    argv = ["embed", "--model", str(tmp_path), "--input", str(bad), "--output",
            str(tmp_path / "o.parquet")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0 and err.startswith("userfm embed: error:")


def test_debug_shows_the_traceback(tmp_path):
    argv = ["--debug", "embed", "--model", str(tmp_path), "--input", "x.csv", "--output",
            "o.parquet"]  # fmt: skip
    with pytest.raises(FileNotFoundError):  # raised, so Python prints the traceback
        main(argv)


def test_debug_works_anywhere_on_the_line(tmp_path):
    argv = ["embed", "--model", str(tmp_path), "--input", "x.csv", "--output", "o.parquet"]
    with pytest.raises(FileNotFoundError):
        main([*argv, "--debug"])


@pytest.mark.parametrize(
    "device,message",
    [("cuda", "CUDA is not available"), ("gpu0", "is not a device"), ("meta", "holds no data")],
)
def test_a_bad_device_is_one_line_before_any_work(tmp_path, capsys, device, message):
    if device == "cuda" and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["embed", "--model", str(tmp_path / "none"), "--input", "x.csv", "--output",
            str(tmp_path / "o.parquet"), "--device", device]  # fmt: skip
    assert main(argv) == 2  # the missing model and input are not even read
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_embed_api_refuses_the_meta_device():
    from userfm import UserEncoder, read_events
    from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
    from userfm.errors import ConfigError

    log = read_events(generate_synthetic_log(SyntheticConfig(num_users=5, num_items=30)))
    model = UserEncoder.from_log(log, hidden_size=8, num_heads=1)
    before = model.embeddings.item.weight.clone()
    with pytest.raises(ConfigError, match="meta"):
        model.embed(log, device="meta", progress=False)
    assert model.embeddings.item.weight.device.type == "cpu"
    assert (model.embeddings.item.weight == before).all()


@pytest.mark.parametrize("stage", ["pretrain", "adapters"])
def test_stage_fit_needs_an_existing_config(tmp_path, capsys, stage):
    assert main([stage, "fit"]) == 2
    assert "needs --config CONFIG" in capsys.readouterr().err
    assert main([stage, "fit", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no config file at" in err and err.strip().count("\n") == 0


def _embed_on_two_devices(model, events, out, *extra):
    """`userfm embed --devices 2` in a fresh interpreter: Lightning's DDP launcher starts the
    second rank by running the same command again."""
    command = [sys.executable, "-m", "userfm.cli", "embed", "--model", str(model)]
    command += ["--input", str(events), "--output", str(out), "--devices", "2", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_sharded_embed_is_the_single_process_loop_vectors_and_counts_alike(tmp_path):
    """`userfm embed --devices 2` writes one shard per rank into the --output folder (readable
    as one parquet table), and (issue 19 §2: one embedding loop) the shards hold `embed`'s
    vector for every user once, in log order (contiguous shards), and the counts the ranks print
    add up to its stats."""
    import re

    import numpy as np
    import pyarrow.parquet as pq

    from userfm import UserEncoder, read_events

    rng = np.random.default_rng(0)

    def events(num_items, num_users):  # up to 39 events per user: longer than max_len 16
        rows = [
            (f"u{u}", f"i{rng.integers(0, num_items)}", 1_600_000_000 + 60 * k)
            for u in range(num_users)
            for k in range(int(rng.integers(1, 40)))
        ]
        return pd.DataFrame(rows, columns=["user", "item", "timestamp"])

    train = read_events(events(30, 20))
    UserEncoder.from_log(train, seed=0, hidden_size=16, num_heads=2, max_len=16).save_pretrained(
        tmp_path / "model"
    )
    events(60, 25).to_parquet(tmp_path / "events.parquet")  # items i30..i59 are unknown
    r = _embed_on_two_devices(
        tmp_path / "model",
        tmp_path / "events.parquet",
        tmp_path / "shards",
        "--batch_size",
        "4",
        "--no_progress",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    model = UserEncoder.from_pretrained(tmp_path / "model")
    single = model.embed(tmp_path / "events.parquet", progress=False)
    shards = sorted((tmp_path / "shards").glob("part-*.parquet"))
    both = UserEmbeddings.concat([UserEmbeddings.from_parquet(p) for p in shards])
    assert [p.name for p in shards] == ["part-00000.parquet", "part-00001.parquet"]
    assert sorted(both.user_ids) == sorted(single.user_ids)
    assert pq.read_table(tmp_path / "shards").num_rows == len(single)
    for u in single.user_ids:
        np.testing.assert_allclose(both[u], single[u], atol=1e-5, err_msg=u)
    counts = re.findall(
        r"embedded ([\d,]+) users .*?([\d,]+) histories cut .*?([\d,]+) unknown items", r.stdout
    )
    assert len(counts) == 2, r.stdout
    users, truncated, oov = (sum(int(c[i].replace(",", "")) for c in counts) for i in range(3))
    assert users == len(single)
    assert truncated == single.stats["truncated_users"] > 0
    assert oov == single.stats["oov_items"] > 0
    assert both.user_ids == single.user_ids  # contiguous shards, in rank order: log order
