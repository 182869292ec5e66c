"""Every script in benchmarks/ answers ``--help`` (transfer.py's help once raised a
``ValueError`` on a bare ``%`` in an option's text, which argparse formats)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_prints_the_options_and_exits_0(name, capsys):
    script = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    assert "--" in capsys.readouterr().out  # at least one option is described
