"""Fast start: `import userfm` and `userfm --version / --help` load no torch, transformers or
datasets; the public names load on first use (PEP 562)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")
# the CLI's --version / --help also stay clear of the data-frame libraries
CLI_HEAVY = (*HEAVY, "pandas", "pyarrow")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_import_userfm_loads_no_heavy_library():
    code = f"import userfm, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _run(code) == "[]"


def test_public_names_resolve_on_access():
    import userfm

    assert set(userfm.__all__) <= set(dir(userfm))
    for name in userfm.__all__:
        assert getattr(userfm, name) is not None, name
    from userfm.api.embeddings import UserEmbeddings
    from userfm.data.readers import read_events
    from userfm.encoder import UserEncoder, UserEncoderConfig

    assert userfm.UserEncoder is UserEncoder
    assert userfm.UserEncoderConfig is UserEncoderConfig
    assert userfm.UserEmbeddings is UserEmbeddings
    assert userfm.read_events is read_events
    with pytest.raises(AttributeError, match="no attribute"):
        _ = userfm.not_a_public_name


def test_attribute_access_triggers_the_import():
    code = "import userfm, sys; userfm.UserEncoder; print('torch' in sys.modules)"
    assert _run(code) == "True"


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_cli_version_and_help_load_no_heavy_library(argv):
    code = (
        "import contextlib, io, sys\n"
        "import userfm.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        userfm.cli.main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {CLI_HEAVY!r} if m in sys.modules))"
    )
    assert _run(code) == "[]"
