"""Result files written safely: never half-written, never a silent overwrite, never the input.

`check_output` refuses an output path before any work is done (it is the input, a folder, an
existing file without ``overwrite``, or a suffix of another format); `atomic_output` writes
to a temporary file in the same folder and renames it over the target only once the writer
finished, so a kill or an error leaves the old file intact (issue 18).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from userfm.errors import ConfigError


def check_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
    suffixes: Sequence[str] = (),
    flag: str = "--output",
) -> Path:
    """``path`` as a `Path` if a result may be written there.

    Args:
        path: the output file.
        overwrite: allow replacing an existing file.
        inputs: files the command reads; the output must be none of them.
        suffixes: accepted suffixes (lower case, with the dot), e.g. ``(".parquet",)``.
        flag: the option named in errors.

    Raises:
        ConfigError: the path is an input, a folder, under a file, has another format's
            suffix, or exists and ``overwrite`` is False.
    """
    out = Path(path)
    if suffixes and out.suffix.lower() not in suffixes:
        raise ConfigError(
            f"`{flag}` {out}: this command writes {' / '.join(suffixes)} files; give the "
            f"path that suffix (a {out.suffix or 'suffix-less'} name would hold another format)"
        )
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise ConfigError(
                f"`{flag}` {out} is the input file: writing it would destroy the input"
            )
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"`{flag}` {out}: {parent} is a file, not a folder")
    if out.is_dir():
        raise ConfigError(f"`{flag}` {out} is a folder; give a file path")
    if out.exists() and not overwrite:
        raise ConfigError(f"`{flag}` {out} exists; pass --overwrite to replace it")
    return out


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block ends
    without an exception, delete it otherwise. The folder is created."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
