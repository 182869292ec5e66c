"""When userfm shows a progress bar: the one rule every ``progress`` argument follows.

``progress=None`` (the default) shows a bar only when stderr is a terminal, where tqdm draws
it, so logs, notebooks' captured output and CI files get no bars; True / False force it
(STYLE.md habit 12: a progress bar that follows the terminal; issue 19 §4).
"""

from __future__ import annotations

import sys


def resolve_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: ``progress`` when given, else whether stderr is a tty."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
