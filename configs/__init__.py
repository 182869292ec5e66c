"""The shipped YAML configs, installed with the package as ``userfm.configs``.

``userfm pretrain fit --config synthetic-tiny`` (a name) reads the packaged
``pretrain/synthetic-tiny.yaml`` from any folder; ``userfm configs list`` / ``userfm configs
show NAME`` print them, to copy one and edit it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STAGES = ("pretrain", "adapters")


def available(stage: str | None = None) -> list[tuple[str, str]]:
    """(stage, name) of every shipped config (of ``stage`` only when given), sorted."""
    root = resources.files(__name__)
    return sorted(
        (s, f.name.removesuffix(".yaml"))
        for s in STAGES
        if stage in (None, s)
        for f in root.joinpath(s).iterdir()
        if f.name.endswith(".yaml")
    )


def find(name: str, stage: str | None = None) -> Path | None:
    """The packaged file of config ``name`` (``synthetic-tiny``, ``synthetic-tiny.yaml`` or
    ``pretrain/synthetic-tiny``), searched in ``stage`` or every stage; None if none ships."""
    wanted = name.removesuffix(".yaml")
    if "/" in wanted:
        stage, wanted = wanted.split("/", 1)
    for s, n in available(stage):
        if n == wanted:
            return Path(str(resources.files(__name__).joinpath(s, f"{n}.yaml")))
    return None


def purpose(path: Path) -> str:
    """The config's first comment line without its ``# Purpose:`` label."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").removeprefix("Purpose:").strip()
    return ""
