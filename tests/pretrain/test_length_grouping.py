"""Length-grouped training batches: coverage, less padding, per-epoch regrouping, resume."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from userfm.errors import ConfigError
from userfm.pretrain.data import EventDataModule, LengthGroupedBatches
from userfm.pretrain.module import PretrainModule

DATA = dict(
    synthetic={"num_users": 300, "num_items": 60, "mean_events": 20.0, "seed": 2},
    max_len=100,
    batch_size=16,
)


def grouped_module(**kwargs) -> EventDataModule:
    dm = EventDataModule(**DATA, group_by_length=True, **kwargs)
    dm.setup()
    return dm


def test_every_example_once_per_epoch_with_less_padding():
    dm = grouped_module()
    plain = EventDataModule(**DATA)
    plain.setup()
    grouped = [b for b in dm.train_dataloader()]
    users = [u for b in grouped for u in b.batch.user_ids]
    assert sorted(users) == sorted(e.inputs.user for e in plain.datasets["train"].examples)
    padded = lambda batches: sum(b.batch.items.numel() for b in batches)  # noqa: E731
    assert padded(grouped) < 0.8 * padded(list(plain.train_dataloader()))
    assert all(len(b) <= 16 for b in grouped)


def test_grouping_is_a_function_of_seed_and_epoch():
    a, b = grouped_module(), grouped_module()
    ds_a, ds_b = a.datasets["train"], b.datasets["train"]
    assert isinstance(ds_a, LengthGroupedBatches)
    first = [x.tolist() for x in ds_a.batches]
    assert first == [x.tolist() for x in ds_b.batches]
    ds_a.set_epoch(1)
    assert [x.tolist() for x in ds_a.batches] != first
    ds_a.set_epoch(0)
    assert [x.tolist() for x in ds_a.batches] == first


def test_the_loader_resumes_at_the_next_batch():
    dm = grouped_module()
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    expected = next(it).batch.user_ids
    resumed = grouped_module().train_dataloader()
    resumed.load_state_dict(state)
    assert next(iter(resumed)).batch.user_ids == expected


class FirstBatches(Callback):
    def __init__(self):
        self.users: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.users.append(list(batch.batch.user_ids))


def test_training_regroups_every_epoch():
    L.seed_everything(0)
    dm = EventDataModule(**DATA, group_by_length=True)
    record = FirstBatches()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(PretrainModule(encoder=dict(hidden_size=16, num_heads=2), warmup_steps=1), dm)
    ds = dm.datasets["train"]
    expected = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected.append([ds.examples[j].inputs.user for j in ds.batches[0]])
    assert record.users == expected
    assert np.isfinite(trainer.callback_metrics["train/loss"].item())


def test_grouping_rejects_streaming_and_bad_groups():
    with pytest.raises(ConfigError, match="group_by_length"):
        EventDataModule(**DATA, group_by_length=True, streaming=True)
    with pytest.raises(ConfigError, match="group"):
        LengthGroupedBatches([], batch_size=4, group=0)
