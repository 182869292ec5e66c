"""The dependency rules of docs/architecture.md, checked on the source with `ast`.

Imports point down the data flow (data -> encoder -> api -> pretrain / adapters -> eval ->
cli), never back up; the two training stages never import each other.

Every import of a ``userfm.*`` module counts, wherever it is written: at module level, inside
functions (lazy imports still make the dependency at run time), and under ``if TYPE_CHECKING:``.
Type-only imports count too: the rules are about which layer knows about which, and a
signature naming a type of a higher layer ties the lower layer to it as much as a run-time
import does (and ``typing.get_type_hints`` would import it). None is needed today.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source folder -> the package it is installed as
ROOTS = {"userfm": "userfm", "pretrain": "userfm.pretrain", "adapters": "userfm.adapters"}

STAGES = ("userfm.pretrain", "userfm.adapters")
# the modules that may import both training stages
BOTH_STAGES_OK = ("userfm.cli", "userfm.stage_cli")

# (the importing layer, the layers it must not import, the rule in words)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "userfm.data",
        ("userfm.encoder", "userfm.api", *STAGES, "userfm.eval", "userfm.llm"),
        "userfm.data imports no model, stage, eval or LLM code",
    ),
    ("userfm.encoder", STAGES, "the encoder imports neither training stage"),
    ("userfm.api", STAGES, "the embedding API imports neither training stage"),
    ("userfm.pretrain", ("userfm.adapters",), "pretrain/ never imports adapters/"),
    ("userfm.adapters", ("userfm.pretrain",), "adapters/ never imports pretrain/"),
    ("userfm.eval", STAGES, "userfm.eval imports no training stage"),
]


@dataclass(frozen=True)
class Import:
    path: Path  # relative to the repository
    line: int
    module: str  # the importing module
    target: str  # the imported userfm module


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(path: Path) -> str:
    """``pretrain/x.py`` -> ``userfm.pretrain.x``; ``userfm/data/__init__.py`` -> ``userfm.data``."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = [ROOTS[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    files = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if "build" not in path.relative_to(REPO).parts:
                files.append(path)
    return files


def imports_of(source: str, module: str, path: Path, known: set[str]) -> list[Import]:
    """Every ``userfm.*`` module ``source`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                # `from userfm import pretrain` imports the module userfm.pretrain
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        for target in dict.fromkeys(targets):  # once per statement
            if _within(target, "userfm"):
                found.append(Import(path.relative_to(REPO), node.lineno, module, target))
    return sorted(found, key=lambda i: (i.line, i.target))


def violations(found: list[Import]) -> list[str]:
    errors = []
    for imp in found:
        for layer, forbidden, rule in RULES:
            if not _within(imp.module, layer):
                continue
            for banned in forbidden:
                if _within(imp.target, banned):
                    errors.append(f"{imp.path}:{imp.line}: imports {imp.target}; rule: {rule}")
    by_module: dict[str, list[Import]] = {}
    for imp in found:
        by_module.setdefault(imp.module, []).append(imp)
    for module, imps in sorted(by_module.items()):
        if module in BOTH_STAGES_OK or any(_within(module, s) for s in STAGES):
            continue  # a stage importing the other one is caught by the rules above
        stage_imports = [i for i in imps if any(_within(i.target, s) for s in STAGES)]
        stages = {s for s in STAGES for i in stage_imports if _within(i.target, s)}
        if len(stages) == 2:
            where = ", ".join(f"{i.path}:{i.line} ({i.target})" for i in stage_imports)
            errors.append(
                f"{where}: rule: only {' and '.join(BOTH_STAGES_OK)} may import both "
                f"training stages"
            )
    return errors


@pytest.fixture(scope="module")
def all_imports() -> list[Import]:
    files = source_files()
    known = {module_name(p) for p in files}
    found = []
    for path in files:
        found += imports_of(path.read_text(encoding="utf-8"), module_name(path), path, known)
    return found


def test_dependency_rules_hold(all_imports):
    errors = violations(all_imports)
    assert not errors, "import rules broken (docs/architecture.md):\n" + "\n".join(errors)


def test_the_scan_sees_the_code(all_imports):
    """Guards against a scan that passes because it finds nothing."""
    files = source_files()
    assert {"userfm.cli", "userfm.pretrain.dro", "userfm.adapters.model"} <= {
        module_name(p) for p in files
    }
    assert not any("build" in p.relative_to(REPO).parts for p in files)
    cli = {i.target for i in all_imports if i.module == "userfm.cli"}
    # the CLI wires both stages in, lazily inside its command functions
    assert any(_within(t, "userfm.pretrain") for t in cli)
    assert any(_within(t, "userfm.adapters") for t in cli)


def test_the_checker_catches_lazy_type_only_and_relative_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from userfm.encoder import UserEncoder\n"
        "def f():\n"
        "    import userfm.adapters.model\n"
        "    from userfm import pretrain\n"
        "from ..eval import retrieval\n"
    )
    path = REPO / "userfm" / "data" / "fake.py"
    known = {"userfm.pretrain", "userfm.eval.retrieval"}
    found = imports_of(source, "userfm.data.fake", path, known)
    assert [(i.line, i.target) for i in found] == [
        (3, "userfm.encoder"),
        (5, "userfm.adapters.model"),
        (6, "userfm.pretrain"),
        (7, "userfm.eval.retrieval"),
    ]
    errors = violations(found)
    assert len(errors) == 4 + 1  # four forbidden imports, and both stages from one module
    assert errors[0].startswith("userfm/data/fake.py:3: imports userfm.encoder; rule: userfm.data")
    assert "only userfm.cli and userfm.stage_cli may import both" in errors[-1]
