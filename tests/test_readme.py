"""Every snippet in README.md runs: the Python blocks, and the `userfm ...` command lines."""

import re
import shlex
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


def run_cli_lines(tmp_path: Path, llm: Path | None, monkeypatch) -> None:
    """Run README's `userfm` lines in order in `tmp_path`, in this process through
    `userfm.cli.main` (what the `userfm` script calls; tests/test_packaging.py runs the
    installed script itself); `llm`: the LLM folder to use in place of the README's (None: the
    README's own)."""
    from userfm.cli import main

    commands = [
        line.split("#")[0].strip()
        for block in blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith("userfm ")
    ]
    assert commands, "README shows no userfm commands"
    monkeypatch.chdir(tmp_path)
    # the README's commands use the model that `make demo` writes; build a small one first
    config = README.parent / "configs" / "pretrain" / "synthetic-tiny.yaml"
    setup = ["demo", "--out", "runs/demo", "--epochs", "1"]
    assert main([*setup, "--pretrain_config", str(config), "--no_progress"]) == 0
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    for cmd in commands:
        args = shlex.split(cmd)
        if args[1:3] == ["pretrain", "fit"]:
            # the same run, a few steps of one epoch, to keep CI short
            args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
            args += ["--trainer.limit_val_batches", "2"]
        if args[1:3] == ["adapters", "fit"]:  # the same run, two steps on a few questions
            args += ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2"]
            args += ["--data.max_train", "16", "--data.max_eval", "8"]
            if llm is not None:
                args += ["--model.adapter.llm", str(llm)]
        if args[1:3] == ["eval", "uqa"]:  # the same evaluation on two questions per sub-task
            args += ["--max_per_task", "2", "--text_tokens", "64"]
            if llm is not None:
                args += ["--llm", str(llm)]
        try:
            status = main(args[1:])
        except SystemExit as e:  # --version, --help
            status = e.code
        assert status == 0, cmd


def test_cli_lines_run(tmp_path, tiny_llm, monkeypatch):
    """README's command lines, with a tiny random LLM in place of SmolLM2 (fast;
    `tiny_llm` in tests/conftest.py: its tokenizer knows README's words)."""
    run_cli_lines(tmp_path, tiny_llm, monkeypatch)


@pytest.mark.slow
def test_cli_lines_run_real_llm(tmp_path, monkeypatch):
    """README's command lines as written, on the real LLM (SmolLM2-135M-Instruct)."""
    run_cli_lines(tmp_path, None, monkeypatch)
