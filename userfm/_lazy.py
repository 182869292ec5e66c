"""Public names that load on first use (PEP 562): a package's ``__getattr__`` / ``__dir__``
from a map of name -> defining module, so importing the package (``userfm --version``, the
CLI's parser) pulls in no torch, transformers or datasets."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose globals are ``namespace``:
    ``names[attr]`` is imported on the first lookup of ``attr`` and kept in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        # the public names (loaded or not) and the module's own dunders; no helpers
        return sorted(
            set(namespace.get("__all__", ())) | {n for n in namespace if n.startswith("__")}
        )

    return __getattr__, __dir__
