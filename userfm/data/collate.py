"""Collate encoded histories into a right-padded `Batch`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from userfm.data.batch import Batch
from userfm.data.features import EncodedHistory


def collate(
    histories: Sequence[EncodedHistory], *, pad_to_multiple_of: int = 1, max_len: int | None = None
) -> Batch:
    """Stack B encoded histories into a `Batch` padded on the right to the longest one.

    Right padding (not left) keeps the causal + key-padding mask free of fully masked rows
    for real events, which fused SDPA kernels turn into NaN.

    Args:
        histories: B encoded histories.
        pad_to_multiple_of: round T up to a multiple of this. Few distinct shapes let the
            allocator reuse freed blocks: with every T different, glibc's heap fragments and
            the RSS of a long embedding run creeps up.
        max_len: never round T up beyond this (the encoder's position limit).
    """
    if not histories:
        raise ValueError("cannot collate an empty list of histories")
    B, T = len(histories), max(len(h) for h in histories)
    rounded = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    T = max(T, min(rounded, max_len if max_len is not None else rounded))

    def pad(name: str, trailing: tuple[int, ...] = ()) -> torch.Tensor:
        out = np.zeros((B, T, *trailing), dtype=np.int64)
        for b, h in enumerate(histories):
            out[b, : len(h)] = getattr(h, name)
        return torch.from_numpy(out)

    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, h in enumerate(histories):
        mask[b, : len(h)] = True
    first = histories[0]
    has_actions = all(h.actions is not None for h in histories)
    has_categories = all(h.categories is not None for h in histories)
    return Batch(
        items=pad("items"),
        mask=mask,
        time_gaps=pad("time_gaps"),
        hours=pad("hours"),
        weekdays=pad("weekdays"),
        actions=pad("actions") if has_actions else None,
        categories=pad("categories", (first.categories.shape[1],)) if has_categories else None,
        user_ids=[h.user for h in histories],
    )
