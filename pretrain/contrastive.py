"""Contrastive pretraining: CL4SRec augmentations and a symmetric in-batch InfoNCE.

CL4SRec (Xie et al., 2022, "Contrastive Learning for Sequential Recommendation") builds two
views of each history with one random augmentation each and pulls the two views' embeddings
together while pushing other users' apart:

- crop: keep a random contiguous sub-sequence of ``max(1, floor(crop_rate · n))`` events;
- mask: replace ``floor(mask_rate · n)`` random events' items with MASK (index 1);
- reorder: shuffle a random contiguous span of ``floor(reorder_rate · n)`` events.

Augmentations work on a whole :class:`~userfm.data.batch.Batch` through one index gather,
so actions, categories and time features travel with their events; the result is still
right-padded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal, overload

import torch
import torch.nn.functional as F

from userfm.data.batch import Batch
from userfm.data.vocab import MASK, PAD
from userfm.errors import ConfigError

Augmentation = Literal["crop", "mask", "reorder"]
AUGMENTATIONS = ("crop", "mask", "reorder")


def _check_rates(
    crop_rate: float, mask_rate: float, reorder_rate: float, ops: Sequence[str]
) -> None:
    if not 0.0 < crop_rate <= 1.0:
        raise ConfigError(f"`crop_rate` (fraction kept) must be in (0, 1], got {crop_rate}")
    if not 0.0 <= mask_rate < 1.0:
        raise ConfigError(f"`mask_rate` must be in [0, 1), got {mask_rate}")
    if not 0.0 <= reorder_rate <= 1.0:
        raise ConfigError(f"`reorder_rate` must be in [0, 1], got {reorder_rate}")
    if not ops or any(op not in AUGMENTATIONS for op in ops):
        raise ConfigError(f"`ops` must be a non-empty subset of {AUGMENTATIONS}, got {ops!r}")


def augment_plan(
    mask: torch.Tensor,
    *,
    crop_rate: float = 0.6,
    mask_rate: float = 0.3,
    reorder_rate: float = 0.6,
    ops: Sequence[Augmentation] = AUGMENTATIONS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw one augmentation per sequence, as a gather index over positions.

    Args:
        mask: (B, T) bool, right-padded valid positions.
        crop_rate: fraction of events a crop keeps (η); at least one is kept.
        mask_rate: fraction of events whose item is masked (γ).
        reorder_rate: fraction of events in the shuffled span (β).
        ops: the augmentations to choose from, uniformly per sequence.
        generator: random generator on ``mask.device`` (None: torch's default one).

    Returns:
        ``(index, new_mask, masked, op)``: index (B, T) int64 source position of each output
        position; new_mask (B, T) bool, right-padded; masked (B, T) bool, output positions
        whose item is replaced by MASK; op (B,) int64 index into ``AUGMENTATIONS`` applied
        to each sequence.
    """
    _check_rates(crop_rate, mask_rate, reorder_rate, ops)
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ConfigError(f"`mask` must be a (B, T) bool tensor, got {tuple(mask.shape)}")
    B, T = mask.shape
    device = mask.device
    n = mask.sum(dim=1)  # (B,) lengths
    pos = torch.arange(T, device=device).expand(B, T)  # (B, T)
    allowed = torch.tensor([AUGMENTATIONS.index(o) for o in ops], device=device)
    op = allowed[torch.randint(len(allowed), (B,), generator=generator, device=device)]  # (B,)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    def span_start(length: torch.Tensor) -> torch.Tensor:
        # uniform start in [0, n - length] for each row
        return (rand(B) * (n - length + 1).clamp(min=1)).floor().long()  # (B,)

    # crop: output j < k reads source start + j
    k_crop = (n.double() * crop_rate).floor().long().clamp(min=1)  # (B,)
    start = span_start(k_crop)
    crop_index = (start[:, None] + pos).clamp(max=T - 1)  # (B, T)
    crop_mask = (pos < k_crop[:, None]) & (n[:, None] > 0)  # (B, T)

    # reorder: sort keys; positions outside the span keep their integer key, positions inside
    # [s, s + k) get random keys in [s - 0.5, s + k - 0.5), so only the span is permuted
    k_re = (n.double() * reorder_rate).floor().long()  # (B,)
    s = span_start(k_re)
    in_span = (pos >= s[:, None]) & (pos < (s + k_re)[:, None])  # (B, T)
    keys = torch.where(
        in_span, s[:, None] - 0.5 + rand(B, T) * k_re[:, None], pos.to(torch.float32)
    )
    reorder_index = keys.argsort(dim=1)  # (B, T)

    # mask: exactly floor(γ n) random valid positions (rank of random keys < m)
    m = (n.double() * mask_rate).floor().long()  # (B,)
    u = rand(B, T).masked_fill(~mask, math.inf)
    rank = u.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's key
    mask_sel = (rank < m[:, None]) & mask

    is_crop, is_mask, is_reorder = (op == i for i in range(3))
    index = torch.where(
        is_crop[:, None], crop_index, torch.where(is_reorder[:, None], reorder_index, pos)
    )
    new_mask = torch.where(is_crop[:, None], crop_mask, mask)
    masked = mask_sel & is_mask[:, None]
    return index, new_mask, masked, op


@overload
def augment(
    batch: Batch,
    *,
    crop_rate: float = ...,
    mask_rate: float = ...,
    reorder_rate: float = ...,
    ops: Sequence[Augmentation] = ...,
    generator: torch.Generator | None = ...,
) -> Batch: ...


@overload
def augment(
    batch: torch.Tensor,
    mask: torch.Tensor,
    *,
    crop_rate: float = ...,
    mask_rate: float = ...,
    reorder_rate: float = ...,
    ops: Sequence[Augmentation] = ...,
    generator: torch.Generator | None = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


def augment(
    batch: Batch | torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    crop_rate: float = 0.6,
    mask_rate: float = 0.3,
    reorder_rate: float = 0.6,
    ops: Sequence[Augmentation] = AUGMENTATIONS,
    generator: torch.Generator | None = None,
) -> Batch | tuple[torch.Tensor, torch.Tensor]:
    """One CL4SRec augmentation per history (crop, mask or reorder, chosen uniformly).

    Call it on a :class:`Batch` (returns a new Batch) or on ``(items, mask)`` tensors
    (returns ``(items', mask')``). Every per-event field is gathered with the same index, so
    actions, categories and time features stay with their events; a crop's first event gets
    time gap 0 (it has no previous event in the view). Masking replaces the item with MASK
    and clears the event's categories (item attributes would leak the item); the action and
    time stay (they describe the event, not the item).

    Args:
        batch: a Batch, or (B, T) int64 items.
        mask: (B, T) bool valid positions when ``batch`` is a tensor; must be None otherwise.
        crop_rate: fraction of events a crop keeps, in (0, 1] (at least one is kept).
        mask_rate: fraction of events masked, in [0, 1).
        reorder_rate: fraction of events in the shuffled contiguous span, in [0, 1].
        ops: the augmentations to choose from.
        generator: random generator on the batch's device (None: torch's default one).

    Returns:
        The augmented Batch, or ``(items' (B, T), mask' (B, T))``: right-padded (PAD after
        the last event), lengths in [1, L] for non-empty histories, same T as the input.
    """
    if isinstance(batch, Batch):
        if mask is not None:
            raise ConfigError("`mask` must be None when augmenting a Batch (it has its own)")
        items, mask = batch.items, batch.mask
    else:
        if mask is None:
            raise ConfigError("`mask` (B, T) is required when augmenting an items tensor")
        if mask.shape != batch.shape:
            raise ConfigError(
                f"`mask` must have the shape of items {tuple(batch.shape)}, got {tuple(mask.shape)}"
            )
        items = batch
    index, new_mask, masked, op = augment_plan(
        mask,
        crop_rate=crop_rate,
        mask_rate=mask_rate,
        reorder_rate=reorder_rate,
        ops=ops,
        generator=generator,
    )

    def gather(x: torch.Tensor) -> torch.Tensor:
        # (B, T, ...) -> (B, T, ...), PAD (0) outside the new mask
        idx = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
        out = x.gather(1, idx)
        keep = new_mask.reshape(*new_mask.shape, *([1] * (x.dim() - 2)))
        return out * keep.to(out.dtype)

    new_items = gather(items).masked_fill(masked, MASK)
    if not isinstance(batch, Batch):
        return new_items, new_mask
    time_gaps = gather(batch.time_gaps)
    time_gaps[:, 0] = torch.where(op == AUGMENTATIONS.index("crop"), PAD, time_gaps[:, 0])
    categories = None
    if batch.categories is not None:
        categories = gather(batch.categories).masked_fill(masked[..., None], PAD)
    return replace(
        batch,
        items=new_items,
        mask=new_mask,
        time_gaps=time_gaps,
        hours=gather(batch.hours),
        weekdays=gather(batch.weekdays),
        actions=None if batch.actions is None else gather(batch.actions),
        categories=categories,
    )


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
    gather_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank: int = 0,
) -> torch.Tensor:
    """Symmetric InfoNCE between two views of the same users, in-batch negatives.

    User i's positive is its other view (the diagonal); the other users' other views are the
    negatives. The loss is the mean of the two directions (view 1 -> 2 and 2 -> 1), as in
    CLIP; intra-view negatives are not used.

    Across data-parallel ranks, pass a differentiable all-gather as ``gather_fn`` (e.g.
    ``lambda z: torch.cat(torch.distributed.nn.functional.all_gather(z))`` or a
    LightningModule's ``lambda z: self.all_gather(z, sync_grads=True).flatten(0, 1)``) and
    this process's ``rank``: the negatives then come from every rank's batch, and user i's
    positive sits at row ``rank * B + i`` of the gathered views (every rank must have the same
    B). This module imports nothing distributed itself.

    Args:
        z1: (B, D) embeddings of the first view.
        z2: (B, D) embeddings of the second view.
        temperature: τ > 0 dividing the similarities.
        normalize: use cosine similarity (L2-normalise first) instead of the dot product.
        gather_fn: (B, D) -> (W·B, D) concatenation of every rank's tensor in rank order.
        rank: this process's rank (only used with ``gather_fn``).

    Returns:
        (B,) float32 per-user losses.
    """
    if temperature <= 0 or math.isnan(temperature):
        raise ConfigError(f"`temperature` must be > 0, got {temperature}")
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ConfigError(
            f"`z1` and `z2` must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if normalize:
        z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    B = z1.shape[0]
    all_z1, all_z2, offset = z1, z2, 0
    if gather_fn is not None:
        all_z1, all_z2 = gather_fn(z1), gather_fn(z2)  # (W·B, D)
        total = all_z1.shape[0]
        if total % B or not 0 <= rank < total // B or all_z2.shape != all_z1.shape:
            raise ConfigError(
                f"`gather_fn` returned {total} rows for a batch of {B} and `rank`={rank}: "
                "it must concatenate W equal batches in rank order, with 0 <= rank < W"
            )
        offset = rank * B
    labels = torch.arange(B, device=z1.device) + offset  # (B,)
    logits_12 = (z1 @ all_z2.T).float() / temperature  # (B, W·B)
    logits_21 = (z2 @ all_z1.T).float() / temperature  # (B, W·B)
    loss_12 = F.cross_entropy(logits_12, labels, reduction="none")
    loss_21 = F.cross_entropy(logits_21, labels, reduction="none")
    return 0.5 * (loss_12 + loss_21)  # (B,)
