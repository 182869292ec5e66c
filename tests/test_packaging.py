"""The distribution installs as one import root: userfm, userfm.pretrain, userfm.adapters.

Builds the real (non-editable) wheel, installs it into a scratch folder and imports it from a
directory outside the repository, so the editable install cannot answer instead.
"""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("userfm-*.whl")
    return whl


def test_wheel_holds_the_stage_packages_under_userfm_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "userfm/pretrain/__init__.py" in names
    assert "userfm/adapters/__init__.py" in names
    assert "userfm/model_cards/template.md" in names
    assert not any(n.startswith(("pretrain/", "adapters/", "tests/")) for n in names)


def test_installed_wheel_imports_all_three_packages(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib.util, userfm, userfm.pretrain, userfm.adapters;"
        f"assert userfm.__file__.startswith({str(site)!r}), userfm.__file__;"
        "assert importlib.util.find_spec('pretrain') is None;"
        "from userfm.api.model_card import render_model_card;"
        "print('ok', userfm.__version__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": ""},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
