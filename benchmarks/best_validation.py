"""Keep a model's best validation checkpoint in memory: the selection the reference SASRec
recipe makes (the SASRec paper's protocol), given to our runs in `pretrain_quality.py` so
that both sides of a ratio choose their weights the same way: on the validation split,
never on test.
"""

from __future__ import annotations

import lightning as L
import torch


class KeepBestValidation(L.Callback):
    """After each validation, copy the module's weights if ``monitor`` is the best so far
    (higher is better); `restore` loads the best copy back into the module.

    Lightning's own ``ModelCheckpoint`` does the same through files; this keeps the copy in
    memory (a benchmark's thousands of parameters) and records which epoch won.

    Args:
        monitor: a logged validation metric (``valid/ndcg@10``).
    """

    def __init__(self, monitor: str = "valid/ndcg@10") -> None:
        self.monitor = monitor
        self.best = -float("inf")
        self.best_epoch = 0  # 1-based: the epochs trained when the best copy was taken
        self.history: list[tuple[int, float]] = []  # (epoch, value) of every validation
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the hook Lightning's ModelCheckpoint reads its monitor in: the validation loop
        # has finished and its epoch metrics are in callback_metrics
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"{self.monitor!r} was not logged by the validation loop")
        value = float(value)
        epoch = trainer.current_epoch + 1
        self.history.append((epoch, value))
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            self._state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def restore(self, pl_module: L.LightningModule) -> None:
        """Load the best weights seen into ``pl_module``.

        Raises:
            RuntimeError: no validation ran.
        """
        if self._state is None:
            raise RuntimeError("no validation ran: nothing to restore")
        pl_module.load_state_dict(self._state)
