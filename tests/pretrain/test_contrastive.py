"""CL4SRec augmentations and the symmetric InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from userfm.data.batch import Batch
from userfm.data.vocab import MASK
from userfm.errors import ConfigError
from userfm.pretrain.contrastive import AUGMENTATIONS, augment, augment_plan, info_nce

B, T = 400, 20


def histories(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded items: row b holds distinct items 10 + 0..n-1 (n in [1, T])."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    items = (torch.arange(T)[None, :] + 10) * mask
    return items, mask


def assert_right_padded(items: torch.Tensor, mask: torch.Tensor) -> None:
    n = mask.sum(1)
    assert torch.equal(mask, torch.arange(mask.shape[1])[None, :] < n[:, None])
    assert (items[~mask] == 0).all() and (items[mask] != 0).all()


def test_each_op_keeps_right_padding_and_lengths():
    items, mask = histories()
    L = mask.sum(1)
    g = torch.Generator().manual_seed(1)
    for op in AUGMENTATIONS:
        new_items, new_mask = augment(items, mask, ops=(op,), generator=g)
        assert new_items.shape == items.shape
        assert_right_padded(new_items, new_mask)
        n = new_mask.sum(1)
        assert (n >= 1).all() and (n <= L).all()
        if op == "crop":
            torch.testing.assert_close(n, (L * 0.6).floor().long().clamp(min=1))
        else:
            assert torch.equal(n, L)


def test_crop_keeps_a_contiguous_subsequence():
    items, mask = histories()
    new_items, new_mask = augment(
        items, mask, ops=("crop",), crop_rate=0.5, generator=torch.Generator().manual_seed(2)
    )
    for b in range(B):
        kept = new_items[b, new_mask[b]]
        # items are consecutive integers, so a contiguous span is a run of +1 steps
        assert (kept.diff() == 1).all()
        assert kept[0] >= 10 and kept[-1] < 10 + mask[b].sum()


def test_mask_fraction_matches_mask_rate():
    items, mask = histories()
    new_items, new_mask = augment(
        items, mask, ops=("mask",), mask_rate=0.3, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(new_mask, mask)
    masked = new_items == MASK
    assert torch.equal(masked.sum(1), (mask.sum(1) * 0.3).floor().long())
    frac = masked.sum() / mask.sum()
    assert abs(float(frac) - 0.3) < 0.05
    assert torch.equal(new_items[~masked], items[~masked])  # the rest untouched


def test_reorder_is_a_permutation_of_a_contiguous_span():
    items, mask = histories()
    new_items, _ = augment(
        items, mask, ops=("reorder",), reorder_rate=0.5, generator=torch.Generator().manual_seed(4)
    )
    shuffled_any = False
    for b in range(B):
        n = int(mask[b].sum())
        old, new = items[b, :n], new_items[b, :n]
        assert sorted(new.tolist()) == old.tolist()
        moved = (old != new).nonzero()[:, 0]
        if len(moved):
            shuffled_any = True
            lo, hi = int(moved.min()), int(moved.max())
            assert hi - lo + 1 <= math.floor(0.5 * n)
            assert sorted(new[lo : hi + 1].tolist()) == old[lo : hi + 1].tolist()
    assert shuffled_any


def test_ops_are_chosen_roughly_uniformly_and_seeded():
    _, mask = histories()
    _, _, _, op = augment_plan(mask, generator=torch.Generator().manual_seed(5))
    share = torch.bincount(op, minlength=3) / B
    assert (share > 0.25).all()
    items, mask = histories()
    a = augment(items, mask, generator=torch.Generator().manual_seed(6))
    b = augment(items, mask, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_augment_batch_moves_every_field_with_its_event():
    items, mask = histories()
    feat = items * mask  # a per-event feature equal to the item, to check alignment
    batch = Batch(
        items=items,
        mask=mask,
        time_gaps=feat.clone(),
        hours=feat.clone(),
        weekdays=feat.clone(),
        actions=feat.clone(),
        categories=torch.stack([feat, feat], dim=-1),
        user_ids=[str(i) for i in range(B)],
    )
    out = augment(batch, generator=torch.Generator().manual_seed(7))
    assert isinstance(out, Batch) and out.user_ids == batch.user_ids
    assert_right_padded(out.items, out.mask)
    not_masked = out.items != MASK
    for name in ("hours", "weekdays", "actions"):
        assert torch.equal(getattr(out, name)[not_masked], out.items[not_masked])
    assert torch.equal(out.categories[..., 0][not_masked], out.items[not_masked])
    assert (out.categories[~not_masked] == 0).all()  # masked events lose their categories
    assert (out.actions[~not_masked] != 0).all()  # ... but keep their action
    # a crop's first event has no previous event in the view
    crop_rows = out.mask.sum(1) < mask.sum(1)
    assert crop_rows.any() and (out.time_gaps[crop_rows, 0] == 0).all()


def test_augment_bad_arguments():
    items, mask = histories()
    with pytest.raises(ConfigError, match="crop_rate"):
        augment(items, mask, crop_rate=0.0)
    with pytest.raises(ConfigError, match="mask_rate"):
        augment(items, mask, mask_rate=1.0)
    with pytest.raises(ConfigError, match="ops"):
        augment(items, mask, ops=("flip",))
    with pytest.raises(ConfigError, match="mask"):
        augment(items)


def test_info_nce_equals_manual_cross_entropy():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    tau = 0.3
    loss = info_nce(z1, z2, temperature=tau)
    a, b = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    sim = a @ b.T / tau
    manual = [
        0.5
        * ((torch.logsumexp(sim[i], 0) - sim[i, i]) + (torch.logsumexp(sim[:, i], 0) - sim[i, i]))
        for i in range(6)
    ]
    torch.testing.assert_close(loss, torch.stack(manual))
    raw = info_nce(z1, z2, temperature=1.0, normalize=False)
    assert not torch.allclose(raw, info_nce(z1, z2, temperature=1.0))


def test_identical_orthogonal_views_give_low_loss():
    z = torch.eye(4) * 3
    low = info_nce(z, z, temperature=0.1)
    assert (low < 1e-3).all()
    # swapped positives: high loss
    high = info_nce(z, z.roll(1, 0), temperature=0.1)
    assert (high > 5).all()


def test_gather_offsets_with_two_fake_ranks():
    g = torch.Generator().manual_seed(1)
    full_1 = torch.randn(8, 5, generator=g, requires_grad=True)
    full_2 = torch.randn(8, 5, generator=g)
    reference = info_nce(full_1, full_2, temperature=0.5)  # one process with all 8 users
    for rank in (0, 1):
        local_1, local_2 = full_1[4 * rank : 4 * rank + 4], full_2[4 * rank : 4 * rank + 4]
        sources = iter([full_1, full_2])  # info_nce gathers view 1, then view 2

        def gather(z: torch.Tensor, rank: int = rank, sources=sources) -> torch.Tensor:
            # fake all-gather of 2 ranks: this rank's rows stay live (differentiable), the
            # other rank's rows are constants, as they are after a real all-gather
            other = F.normalize(next(sources).detach(), dim=-1)
            return torch.cat([z if r == rank else other[4 * r : 4 * r + 4] for r in (0, 1)])

        out = info_nce(local_1, local_2, temperature=0.5, gather_fn=gather, rank=rank)
        torch.testing.assert_close(out, reference[4 * rank : 4 * rank + 4])
        out.sum().backward()
    assert full_1.grad is not None and full_1.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="rank"):
        info_nce(full_1[:4], full_2[:4], gather_fn=lambda z: torch.cat([z, z]), rank=2)
