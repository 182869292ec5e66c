"""`Batch`: a right-padded mini-batch of user histories, the encoder's only input type."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """Right-padded histories of B users, T = longest history in the batch.

    Index 0 is padding in every id tensor (``Vocab.PAD``). Events are in chronological order;
    ``mask[b, :lengths[b]]`` is True and the rest False.

    Attributes:
        items: (B, T) int64 item indices.
        mask: (B, T) bool, True at real events.
        time_gaps: (B, T) int64 log-bucketed gap to the previous event (0 for the first / pad).
        hours: (B, T) int64 hour of day + 1 (0 = pad / unknown time).
        weekdays: (B, T) int64 weekday + 1 (0 = pad / unknown time).
        actions: (B, T) int64 action indices, or None when the log has no action column.
        categories: (B, T, C) int64 category indices (0-padded bag of up to C categories per
            event), or None when the log has no category column.
        user_ids: the B user ids, in batch order.
    """

    items: torch.Tensor
    mask: torch.Tensor
    time_gaps: torch.Tensor
    hours: torch.Tensor
    weekdays: torch.Tensor
    actions: torch.Tensor | None = None
    categories: torch.Tensor | None = None
    user_ids: list[str] | None = None

    def __post_init__(self) -> None:
        assert self.items.dim() == 2, f"items must be (B, T), got {tuple(self.items.shape)}"
        assert self.mask.shape == self.items.shape and self.mask.dtype == torch.bool

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) int64 number of real events per user."""
        return self.mask.sum(dim=1)

    def __len__(self) -> int:
        return self.items.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device`` (non-blocking when pinned)."""
        moved = {
            f.name: v.to(device, non_blocking=True)
            for f in fields(self)
            if isinstance(v := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def pin_memory(self) -> Batch:
        """Pin every tensor (used by DataLoader(pin_memory=True))."""
        return replace(
            self,
            **{
                f.name: v.pin_memory()
                for f in fields(self)
                if isinstance(v := getattr(self, f.name), torch.Tensor)
            },
        )
