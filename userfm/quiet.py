"""Library output that is not the user's business, hidden in one place (issue 18).

`quiet_library_noise` hides deprecations inside torchdata and Lightning, the frozen LLM's
eval-mode note and Lightning's "Tip" advertisement for a training run; everything else stays.
`transformers_output` turns transformers' progress bars and load reports off for a block: a
small encoder saves and loads in milliseconds, and a damaged folder is reported by userfm in
one line, not by a table from transformers followed by the same error. `datasets_progress`
does the same for HF datasets' bars, which draw whatever stderr is (a nohup log got them), and
`datasets_bars_follow_terminal` applies it to the dataset loaders, which take no ``progress``.
`onnx_exporter_output` hides torch.onnx's progress lines, registry notes and tracing warnings
while a user tower is exported.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from userfm.progress import resolve_progress

P = ParamSpec("P")
R = TypeVar("R")

#: warnings every training run printed (regular expressions of their messages)
NOISE = (
    r".*'set_vital' is deprecated",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_library_noise() -> None:
    """Hide `NOISE` warnings and Lightning's "Tip" advertisement; everything else stays."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())


@contextlib.contextmanager
def transformers_output(*, progress: bool, reports: bool = True) -> Iterator[None]:
    """transformers' progress bars (``progress``) and its warnings, load reports included
    (``reports``), on or off for the block; the previous settings come back after it."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    if not progress and bars:
        hf_logging.disable_progress_bar()
    if not reports:
        hf_logging.set_verbosity(max(level, logging.ERROR))
    try:
        yield
    finally:
        if not progress and bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(level)


@contextlib.contextmanager
def datasets_progress(*, progress: bool) -> Iterator[None]:
    """HF datasets' progress bars (its file loading, ``map``) off for the block unless
    ``progress``; the previous setting comes back after it."""
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    if not progress and bars:
        ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not progress and bars:
            ds_logging.enable_progress_bar()


def datasets_bars_follow_terminal(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for a reader without a ``progress`` argument (the dataset loaders): HF
    datasets' bars inside it (file loading, ``map``) only when stderr is a terminal."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with datasets_progress(progress=resolve_progress(None)):
            return fn(*args, **kwargs)

    return wrapper


#: the loggers torch.onnx's exporter reports through (progress, registry notes, tracing)
ONNX_EXPORT_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")


@contextlib.contextmanager
def onnx_exporter_output() -> Iterator[None]:
    """torch.onnx's log lines below ERROR and its warnings off for the block; the previous
    levels and warning filters come back after it."""
    levels = {n: logging.getLogger(n).level for n in ONNX_EXPORT_LOGGERS}
    for n in ONNX_EXPORT_LOGGERS:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notes
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
