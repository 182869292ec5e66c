"""Every snippet in README.md runs: the Python blocks, and the `userfm ...` command lines."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_blocks_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_cli_lines_run(tmp_path):
    commands = [
        line.split("#")[0].strip()
        for block in blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith("userfm ")
    ]
    assert commands, "README shows no userfm commands"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # the README's commands use the model that `make demo` writes; build a small one first
    config = README.parent / "configs" / "pretrain" / "synthetic-tiny.yaml"
    setup = ["userfm", "demo", "--out", "runs/demo", "--epochs", "1"]
    setup += ["--config", str(config), "--no-progress"]
    subprocess.run(setup, cwd=tmp_path, env=env, check=True, capture_output=True)
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    for cmd in commands:
        args = shlex.split(cmd)
        if args[1:3] == ["pretrain", "fit"]:
            args += ["--trainer.max_epochs", "1"]  # the same run, one epoch, to keep CI short
        if args[1:3] == ["adapters", "fit"]:  # the same run, two steps on a few questions
            args += ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2"]
            args += ["--data.max_train", "16", "--data.max_eval", "8"]
        if args[1:3] == ["eval", "uqa"]:  # the same evaluation on two questions per sub-task
            args += ["--max-per-task", "2", "--text-tokens", "64"]
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
