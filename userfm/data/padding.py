"""Right-padded NumPy arrays of encoded histories: what `collate` wraps as a torch `Batch` and
what the ONNX user tower (`userfm.api.onnx_tower`) feeds to onnxruntime without torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from userfm.data.features import EncodedHistory


def pad_histories(
    histories: Sequence[EncodedHistory], *, pad_to_multiple_of: int = 1, max_len: int | None = None
) -> dict[str, np.ndarray | None]:
    """Stack B encoded histories, padded on the right to the longest one (T).

    Args:
        histories: B encoded histories.
        pad_to_multiple_of: round T up to a multiple of this.
        max_len: never round T up beyond this (the encoder's position limit).

    Returns:
        The `userfm.data.batch.Batch` fields as arrays: ``items``, ``time_gaps``, ``hours``,
        ``weekdays``, ``actions`` (B, T) int64, ``categories`` (B, T, C) int64, ``mask``
        (B, T) bool (True at real events). ``actions`` / ``categories`` are None unless every
        history has them.

    Raises:
        ValueError: no histories.
    """
    if not histories:
        raise ValueError("cannot collate an empty list of histories")
    B, T = len(histories), max(len(h) for h in histories)
    rounded = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    T = max(T, min(rounded, max_len if max_len is not None else rounded))

    def pad(name: str, trailing: tuple[int, ...] = ()) -> np.ndarray:
        out = np.zeros((B, T, *trailing), dtype=np.int64)
        for b, h in enumerate(histories):
            out[b, : len(h)] = getattr(h, name)
        return out

    mask = np.zeros((B, T), dtype=bool)
    for b, h in enumerate(histories):
        mask[b, : len(h)] = True
    first = histories[0]
    has_actions = all(h.actions is not None for h in histories)
    has_categories = all(h.categories is not None for h in histories)
    return {
        "items": pad("items"),
        "mask": mask,
        "time_gaps": pad("time_gaps"),
        "hours": pad("hours"),
        "weekdays": pad("weekdays"),
        "actions": pad("actions") if has_actions else None,
        "categories": pad("categories", (first.categories.shape[1],)) if has_categories else None,
    }
