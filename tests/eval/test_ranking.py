"""Blockwise full-ranking ranks equal the ranks of the whole (N, V) score matrix."""

from __future__ import annotations

import math

import pytest
import torch

from userfm.eval.ranking import target_ranks


def whole_matrix_ranks(q, items, targets, seen):
    scores = q @ items.T
    scores[:, :3] = -math.inf
    scores.scatter_(1, seen, -math.inf)
    target = scores.gather(1, targets[:, None])
    rank = ((scores > target).sum(1) + 1).double()
    return torch.where(torch.isfinite(target[:, 0]), rank, math.inf)


@pytest.mark.parametrize("block", [1, 4, 29, 1000])
def test_blockwise_ranks_equal_the_whole_matrix(block):
    g = torch.Generator().manual_seed(0)
    n, v, d = 12, 29, 5
    q, items = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g)
    targets = torch.randint(3, v, (n,), generator=g)
    seen = torch.randint(0, v, (n, 6), generator=g)
    seen[0, 2] = targets[0]  # a target the user has seen: a miss
    seen[seen == targets[:, None]] = 0
    seen[0, 2] = targets[0]
    want = whole_matrix_ranks(q, items, targets, seen)
    got = target_ranks(q, items, targets, seen, block=block)
    assert torch.equal(got, want) and got[0] == math.inf
    assert torch.isfinite(got[1:]).all() and (got[1:] >= 1).all()


def test_a_special_target_is_a_miss_not_a_rank():
    """Review of issue 20: an OOV target (a rare item mapped away) was compared with an
    uninitialised score; the whole-matrix computation counts it as a miss."""
    g = torch.Generator().manual_seed(1)
    q, items = torch.randn(4, 3, generator=g), torch.randn(10, 3, generator=g)
    targets = torch.tensor([2, 5, 1, 9])
    got = target_ranks(q, items, targets, block=4)
    assert got[0] == math.inf and got[2] == math.inf and torch.isfinite(got[[1, 3]]).all()
