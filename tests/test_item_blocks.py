"""userfm.item_blocks: the in-place fill writes what the autograd-safe one does, and only
the positions inside the block."""

from __future__ import annotations

import torch

from userfm.item_blocks import block_positions, fill_positions, fill_positions_


def test_the_in_place_fill_equals_the_out_of_place_one():
    gen = torch.Generator().manual_seed(0)
    for lo, size in ((0, 7), (5, 4), (20, 9)):
        scores = torch.randn(6, size, generator=gen)
        items = torch.randint(0, 30, (6, 5), generator=gen)  # inside and outside the block
        where = block_positions(items, lo, size)
        expected = fill_positions(scores, where, -torch.inf)
        same = scores.clone()
        assert fill_positions_(same, where, -torch.inf) is same
        torch.testing.assert_close(same, expected)
        pairs = {
            (r, items[r, c].item())
            for r, c in ((items >= lo) & (items < lo + size)).nonzero().tolist()
        }
        assert int(torch.isinf(same).sum()) == len(pairs)  # those, and nothing else
