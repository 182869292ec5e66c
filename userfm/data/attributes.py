"""An item's attribute value: ONE definition shared by the UQA questions and the history text.

An item can hold several categories joined by ``|`` (`userfm.data.schema.CATEGORY_SEP`), e.g.
MovieLens genres ``"Action|Adventure|Drama"`` (alphabetical). The question builder
(`userfm.eval.uqa.tasks`) asks about one value per item, and the text rendering of a history
(`userfm.data.history_text`) shows the model that same value: a question whose answer the
model cannot read in its input would measure nothing, so both call `attribute_value`.
"""

from __future__ import annotations

from userfm.data.schema import CATEGORY_SEP
from userfm.errors import ConfigError

__all__ = ["DEFAULT_MULTI_VALUE", "MULTI_VALUES", "attribute_value"]

#: how a ``|``-joined value becomes one attribute: its first part, its last part, or as is
MULTI_VALUES = ("first", "last", "joined")
DEFAULT_MULTI_VALUE = "first"

_PART = {"first": 0, "last": -1}


def attribute_value(raw: object, multi_value: str = DEFAULT_MULTI_VALUE) -> str | None:
    """The single attribute value of one event (None when missing).

    Args:
        raw: the stored value (a ``|``-joined string, a number, or None).
        multi_value: ``"first"`` / ``"last"``: that ``|``-separated part; ``"joined"``: the
            whole string as is.

    Returns:
        The stripped value, or None for a missing / empty / whitespace-only value (or an
        empty selected part, as in ``"|Drama"`` with ``"first"``): missing values are never
        counted as a value.

    Raises:
        ConfigError: ``multi_value`` is not one of `MULTI_VALUES`.

    Example:
        >>> attribute_value("Action|Adventure|Drama")
        'Action'
        >>> attribute_value("Action|Adventure|Drama", "last")
        'Drama'
        >>> attribute_value(" Comedy|Drama ", "joined")
        'Comedy|Drama'
        >>> attribute_value("  ") is None
        True
    """
    # checked before the missing-value shortcut so that a bad setting fails on any input
    if multi_value not in MULTI_VALUES:
        raise ConfigError(f"multi_value must be one of {list(MULTI_VALUES)}, got {multi_value!r}")
    if raw is None:
        return None
    s = str(raw).strip()
    if s and multi_value != "joined":
        s = s.split(CATEGORY_SEP)[_PART[multi_value]].strip()
    return s or None
