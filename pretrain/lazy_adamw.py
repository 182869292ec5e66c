"""AdamW that updates an item table only on the rows a step read ("lazy" Adam).

With a sampled loss a step reads a few thousand rows of the item table (the batch's items, its
targets and negatives), but a dense gradient and a dense AdamW step touch all V rows: at 10^6
items that is most of a step's time (issue 20 §1). The table is read through
``F.embedding(..., sparse=True)`` instead, so its gradient is a sparse tensor of the rows read,
and `LazyAdamW` moves those rows only, with Adam's update and moments (the rule of
`torch.optim.SparseAdam`, TensorFlow's LazyAdam): a row's moments decay only in the steps that
read it. Every other parameter takes the plain AdamW step, and the state has AdamW's layout, so
checkpoints and learning-rate schedulers see one AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from userfm.errors import ConfigError


class LazyAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW`, with parameters whose gradient is sparse updated row by row.

    Args: as `torch.optim.AdamW` (``amsgrad`` / ``maximize`` are refused for sparse
    gradients: SparseAdam has neither).
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    self._row_step(p, group)
                    held.append((p, p.grad))
                    p.grad = None  # the dense AdamW step below skips it
        try:
            super().step()
        finally:
            for p, grad in held:
                p.grad = grad
        return loss

    def _row_step(self, p: torch.Tensor, group: dict) -> None:
        """Adam(W) on the rows of ``p`` its sparse gradient holds; the others keep their
        values and moments."""
        if group["amsgrad"] or group["maximize"]:
            raise ConfigError("LazyAdamW: `amsgrad` and `maximize` need dense gradients")
        grad = p.grad.coalesce()  # repeated rows summed
        rows, g = grad.indices()[0], grad.values()  # (R,), (R, D)
        state = self.state[p]
        if not state:  # AdamW's layout: a checkpoint of either optimizer loads in the other
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, eps, decay = float(group["lr"]), group["eps"], group["weight_decay"]
        m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        value = p.index_select(0, rows)  # (R, D)
        if decay:
            value.mul_(1 - lr * decay)
        denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
        value.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
        p.index_copy_(0, rows, value)
