"""Typed errors for users of userfm.

Every error a user can cause derives from :class:`UserfmError`; the CLI prints these as one line
and exits non-zero (``--debug`` shows the traceback). Internal invariants use ``assert``.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


class UserfmError(Exception):
    """Base class of every error a user can cause and fix."""


class SchemaError(UserfmError, KeyError):
    """A required column is missing, or a schema field names a column that is not there."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(UserfmError, ValueError):
    """A value in the log is invalid. Names the column and the first offending row.

    Attributes:
        column: the (user-facing) column name, or ``None`` for whole-file problems.
        row: 0-based index of the first offending row in the input, or ``None``.
    """

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None):
        where = []
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.column = column
        self.row = row


class EmptyLogError(DataError):
    """The input holds no events (empty file, or every row was removed by filters)."""


class FileFormatError(UserfmError, ValueError):
    """A file cannot be read as the format its extension (or the caller) says."""


class ConfigError(UserfmError, ValueError):
    """A configuration field has an invalid value. Names the field."""


class UnknownUserError(UserfmError, KeyError):
    """A user id that is not among the users at hand (e.g. the embedded ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def field_error(name: str, value: object, expected: str) -> ConfigError:
    """The one message for a bad field: ``"`name` must be <expected>, got <value!r>"``.

    Returned, not raised, so the caller writes ``raise field_error(...)`` and the flow is plain.

    Args:
        name: the field as the user writes it (``"num_heads"``, ``"QuestionConfig.window"``).
        value: the value that was given.
        expected: what would be accepted, as a noun phrase (``"a probability in [0, 1]"``).
    """
    return ConfigError(f"`{name}` must be {expected}, got {value!r}")


def check_fields(name: str, given: Iterable[str], known: Iterable[str], owner: str) -> None:
    """Refuse a mapping of settings that names a field ``owner`` does not have (a misspelt
    field would otherwise fail as a bare ``TypeError``, or be kept and never used).

    Args:
        name: the setting as the user writes it (``"adapter"``, ``"encoder"``).
        given: the field names given.
        known: the fields ``owner`` accepts.
        owner: the config class, named in the message (``"AdapterConfig"``).

    Raises:
        ConfigError: ``"`adapter` has no field(s) ['num_latent'] (did you mean 'num_latent'
            -> 'num_latents'?); AdapterConfig's fields are [...]"``.
    """
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    close = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
    hints = [f"{u!r} -> {m[0]!r}" for u, m in close.items() if m]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    raise ConfigError(f"`{name}` has no field(s) {unknown}{hint}; {owner}'s fields are {known}")


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite real number: Python or numpy int/float, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(
    name: str, value: object, *, minimum: int, maximum: int | None = None, why: str = ""
) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``: Python and numpy integers, not bools
    nor floats (``10.0`` is refused: a float count is usually a mistaken expression).

    Args:
        name: the field as the user writes it (named in the error).
        value: the value to check.
        minimum: the smallest value accepted.
        maximum: the largest value accepted (``None``: no upper bound).
        why: a reason for the bounds, shown in parentheses (``"0 turns the feature off"``).

    Returns:
        ``int(value)`` (numpy integers become Python ints, which JSON can write).

    Raises:
        ConfigError: ``value`` is not such an integer; the message names ``name``.
    """
    if (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and minimum <= int(value)
        and (maximum is None or int(value) <= maximum)
    ):
        return int(value)
    bounds = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    raise field_error(name, value, f"an integer {bounds}" + (f" ({why})" if why else ""))


def check_k(k: object, *, allow_none: bool = False) -> int | None:
    """``k`` (how many results) as an int >= 1: Python and numpy integers, not bools.

    Raises:
        ConfigError: anything else (None only when ``allow_none``: full ranking).
    """
    if k is None and allow_none:
        return None
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and int(k) >= 1:
        return int(k)
    what = "an int >= 1" + (" or None (full ranking)" if allow_none else "")
    raise field_error("k", k, what)
