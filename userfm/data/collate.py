"""Collate encoded histories into a right-padded `Batch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from userfm.data.batch import Batch
from userfm.data.features import EncodedHistory
from userfm.data.padding import pad_histories


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
    arrays = pad_histories(histories, pad_to_multiple_of=pad_to_multiple_of, max_len=max_len)
    tensors = {k: None if v is None else torch.from_numpy(v) for k, v in arrays.items()}
    return Batch(**tensors, user_ids=[h.user for h in histories])
