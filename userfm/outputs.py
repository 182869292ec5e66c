"""Results written safely: never half-written, never a silent overwrite, never the input.

For a result file, `check_output` refuses an output path before any work is done (it is the
input, a folder, an existing file without ``overwrite``, or a suffix of another format);
`atomic_output` writes to a temporary file in the same folder and renames it over the target
only once the writer finished, so a kill or an error leaves the old file intact (issue 18).

For a result folder (a model, a report, a question set), `check_output_dir` refuses a file, a
path under a file, or a folder that already holds something unless ``overwrite``;
`staged_output_dir` builds the folder beside the target and moves it in once complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_dir(path: str | Path, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """``path`` as a `Path` if a result folder may be written there.

    Raises:
        ConfigError: the path is a file or under a file, or a folder that is not empty and
            ``overwrite`` is False (with it, the files the command writes are replaced and
            other files are left alone).
    """
    out = Path(path)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == out else f"is under a file ({parent})"
            raise ConfigError(f"`{flag}` {out} {what}; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"`{flag}` {out} is a folder that already holds files; pass --overwrite to replace "
            "the ones this command writes, or give another folder"
        )
    return out


@contextlib.contextmanager
def staged_output_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` to write a result folder into.

    When the block ends without an exception, the result moves to ``path``: in one rename
    when ``path`` does not exist or is empty; otherwise entry by entry, each replacing the
    entry of the same name whole (other files in ``path`` are kept), so only a kill between
    two of those renames, not during the writing, can leave a mix of the old result and the
    new. On an exception the temporary folder is deleted and ``path`` is untouched.

    The temporary folder sits on the result's own filesystem, so every move is a rename: a
    symlinked ``path`` is staged beside the folder it points to (the link stays), and a
    ``path`` that is a mount point is staged inside it.
    """
    out = Path(path)
    if out.is_symlink():
        out = out.resolve()  # beside the real folder, which may be on another filesystem
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    if out.is_dir() and out.stat().st_dev != tmp.stat().st_dev:  # a mount point
        tmp.rmdir()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would outlive the rename
    try:
        yield tmp
        inside = tmp.parent == out  # a mount point stays; its entries are replaced
        if not inside and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(tmp, out)
            return
        for entry in sorted(tmp.iterdir()):
            _replace(entry, out / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(new: Path, old: Path) -> None:
    """Move ``new`` to ``old``'s name; an existing folder there is swapped out first (and put
    back if the move fails)."""
    if old.is_dir() and not old.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{old.name}.", suffix=".old", dir=old.parent))
        os.replace(old, trash / old.name)
        try:
            os.replace(new, old)
        except BaseException:
            os.replace(trash / old.name, old)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, old)


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
