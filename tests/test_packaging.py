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


def test_wheel_ships_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "userfm/configs/pretrain/synthetic-tiny.yaml" in names
    assert "userfm/configs/adapters/soft_prompt.yaml" in names


def test_a_fresh_venv_with_the_wheel_runs_the_demo_and_a_named_config_anywhere(wheel, tmp_path):
    """Issue 18 §5: installed from the wheel, outside the repository, `userfm demo` and
    `--config NAME` work (before, the demo stopped: "run the demo from the repository root")."""
    import site
    import venv

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    (purelib,) = (env / "lib").glob("python*/site-packages")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(purelib), str(wheel)], check=True, capture_output=True)  # fmt: skip
    # the dependencies (torch, lightning, ...) of this environment, but not its userfm
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "deps.pth").write_text("\n".join(deps) + "\n")
    python, work = env / "bin" / "python", tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        r = subprocess.run([str(python), "-m", "userfm.cli", *args], cwd=work,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    where = subprocess.run([str(python), "-c", "import userfm; print(userfm.__file__)"],
                           cwd=work, capture_output=True, text=True)  # fmt: skip
    assert where.stdout.startswith(str(purelib)), where
    assert "synthetic-tiny" in run("configs", "list")
    assert run("configs", "show", "ml100k").startswith("# Purpose:")
    out = run("demo", "--out", "demo", "--users", "120", "--epochs", "1", "--no_progress")
    assert "[5/5] next-item retrieval" in out
    run("pretrain", "fit", "--config", "synthetic-tiny", "--trainer.max_steps", "2",
        "--data.synthetic.num_users", "60", "--trainer.enable_progress_bar", "false")  # fmt: skip
    assert (work / "runs" / "pretrain" / "synthetic-tiny" / "checkpoints").is_dir()
