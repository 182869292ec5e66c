"""Reading training checkpoints safely: one loader for `pretrain export` and for resuming.

Lightning checkpoints are pickles. They are read with ``torch.load(weights_only=True)``:
tensors and plain containers only, so a planted checkpoint cannot run code; a truncated file
or one holding other objects is a typed error naming it, never a traceback (issue 18).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from userfm.errors import FileFormatError


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device | Callable | None = "cpu",
    weights_only: bool = True,
) -> Any:
    """``torch.load`` of ``path`` with typed errors.

    Args:
        path: the checkpoint file.
        map_location: as `torch.load`'s (default: everything on the CPU).
        weights_only: refuse anything but tensors and plain containers (default). Only a
            caller that trusts the file may pass False.

    Raises:
        FileNotFoundError: no file at ``path``.
        FileFormatError: not a readable checkpoint (truncated, not a checkpoint), or it holds
            objects besides tensors and plain containers (refused, never unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with checkpoint_errors(path):
        return torch.load(path, map_location=map_location, weights_only=weights_only)


@contextlib.contextmanager
def checkpoint_errors(path: str | Path) -> Iterator[None]:
    """Turn what `torch.load` raises on a damaged or refused checkpoint at ``path`` into a
    `FileFormatError` naming it (for code that loads checkpoints itself, e.g. LightningCLI).
    """
    try:
        yield
    except pickle.UnpicklingError as e:  # what weights_only refuses
        raise FileFormatError(
            f"{path} holds objects other than tensors and plain containers; refused unread "
            "(checkpoints are trusted input only as far as weights_only allows)"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise FileFormatError(f"{path} is not a readable checkpoint (truncated?): {e}") from e
