"""Item blocks: scoring a catalogue a block of items at a time, with some items of each row
left out. One mechanism for the chunked full softmax (`userfm.pretrain.objectives`), the
blockwise full-ranking ranks (`userfm.eval.ranking`) and `recommend`'s blockwise top-k
(`userfm.api.recommend`); it sits below all three layers, as a small module any layer may use.
"""

from __future__ import annotations

import torch


def block_positions(
    items: torch.Tensor, lo: int, size: int, *, spare: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, S) global item indices -> their positions inside the block of items
    ``[lo, lo + size)``; ``size`` (one past the block) for those outside it or ``spare``."""
    local = items - lo
    outside = (local < 0) | (local >= size)
    return torch.where(outside if spare is None else outside | spare, size, local)


def fill_positions(scores: torch.Tensor, positions: torch.Tensor, value: float) -> torch.Tensor:
    """(N, b) ``scores`` with the (N, S) ``positions`` (from `block_positions`; b = none) set
    to ``value``, out of place (autograd-safe): through one spare column, so no (N, b) mask."""
    pad = torch.zeros(len(scores), 1, dtype=scores.dtype, device=scores.device)
    return torch.cat([scores, pad], dim=1).scatter(1, positions, value)[:, :-1]


def fill_positions_(scores: torch.Tensor, positions: torch.Tensor, value: float) -> torch.Tensor:
    """`fill_positions` in place, for scores no gradient flows through (ranking, `recommend`):
    only the (N, S) positions inside the block are written, with no (N, b) copy. Returns
    ``scores``."""
    inside = positions < scores.shape[1]  # (N, S)
    rows = torch.arange(len(scores), device=scores.device).unsqueeze(1).expand_as(positions)
    scores[rows[inside], positions[inside]] = value
    return scores
