"""`LazyAdamW`: the item table moves on the rows a step read, everything else as AdamW
(issue 20 §1: a sampled step at 10^6 items costs its rows, not the table)."""

from __future__ import annotations

import copy

import pytest
import torch

from userfm.errors import ConfigError
from userfm.pretrain.lazy_adamw import LazyAdamW
from userfm.pretrain.objectives import next_item_loss


def _params(seed: int = 0) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(20, 4, generator=g))  # (V, D)
    dense = torch.nn.Parameter(torch.randn(4, 4, generator=g))
    return table, dense


def _loss(table, dense, rows, sparse):
    x = torch.nn.functional.embedding(rows, table, sparse=sparse)  # (R, D)
    return ((x @ dense) ** 2).sum()


def _groups(table, dense):
    return [{"params": [dense], "weight_decay": 0.1}, {"params": [table], "weight_decay": 0.0}]


def test_rows_read_every_step_move_exactly_as_adamw_and_dense_params_too():
    table, dense = _params()
    ref_table, ref_dense = copy.deepcopy(table), copy.deepcopy(dense)
    lazy = LazyAdamW(_groups(table, dense), lr=0.05)
    adamw = torch.optim.AdamW(_groups(ref_table, ref_dense), lr=0.05)
    every = torch.tensor([0, 3, 3, 19, *range(20)])  # all rows each step, some twice
    for _ in range(5):
        for opt, (t, d, sparse) in ((lazy, (table, dense, True)), (adamw, (ref_table, ref_dense, False))):  # fmt: skip
            opt.zero_grad()
            _loss(t, d, every, sparse).backward()
            opt.step()
    assert table.grad is not None and table.grad.is_sparse  # the gradient is given back
    torch.testing.assert_close(table, ref_table)
    torch.testing.assert_close(dense, ref_dense)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(lazy.state[table][key], adamw.state[ref_table][key])


def test_rows_not_read_keep_their_values_and_moments():
    table, dense = _params()
    opt = LazyAdamW(_groups(table, dense), lr=0.05)
    first = torch.tensor([1, 2, 5])
    opt.zero_grad()
    _loss(table, dense, first, True).backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[table].items()}
    values = table.detach().clone()
    opt.zero_grad()
    _loss(table, dense, torch.tensor([2, 7]), True).backward()
    opt.step()
    untouched = torch.tensor([i for i in range(20) if i not in (2, 7)])
    torch.testing.assert_close(table.detach()[untouched], values[untouched])
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt.state[table][key][untouched], before[key][untouched])
        assert not torch.equal(opt.state[table][key][7], before[key][7])


def test_its_state_is_adamws_a_checkpoint_loads_either_way():
    table, dense = _params()
    lazy = LazyAdamW(_groups(table, dense), lr=0.05)
    lazy.zero_grad()
    _loss(table, dense, torch.tensor([4, 9]), True).backward()
    lazy.step()
    adamw = torch.optim.AdamW(_groups(table, dense), lr=0.05)
    adamw.load_state_dict(lazy.state_dict())
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(adamw.state[table][key], lazy.state[table][key])


@pytest.mark.parametrize("kind", ["sampled", "bce"])
def test_sparse_grad_losses_equal_the_dense_ones_and_their_gradients(kind):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(6, 8, generator=g)
    targets = torch.randint(3, 40, (6,), generator=g)
    grads, values = [], []
    for sparse in (False, True):
        table = torch.nn.Parameter(torch.randn(40, 8, generator=torch.Generator().manual_seed(1)))
        loss = next_item_loss(h, table, targets, kind=kind, num_negatives=7,
                              generator=torch.Generator().manual_seed(2), sparse_grad=sparse)  # fmt: skip
        loss.sum().backward()
        values.append(loss.detach())
        grads.append(table.grad.to_dense() if sparse else table.grad)
        assert table.grad.is_sparse == sparse
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_the_full_softmax_refuses_sparse_grad():
    with pytest.raises(ConfigError, match="sparse_grad"):
        next_item_loss(torch.randn(2, 4), torch.randn(9, 4), torch.tensor([3, 4]), sparse_grad=True)
