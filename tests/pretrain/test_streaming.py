"""Streaming training data: sharded per rank and per worker, disjoint, complete, seeded."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from userfm.data.features import Featurizer
from userfm.pretrain.data import EventDataModule, StreamingExamples, collate_examples

DATA = dict(synthetic={"num_users": 90, "num_items": 60, "seed": 2}, max_len=10)


def users_of(dataset, num_workers=0, epoch=0):
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=7, num_workers=num_workers, collate_fn=collate_examples)
    return [u for batch in loader for u in batch.batch.user_ids]


def stream(dm, rank, world, num_workers=0):
    featurizer = Featurizer(dm.vocabs, max_len=dm.hparams.max_len + 1)
    return StreamingExamples(
        dm.log_, featurizer, rank=rank, world_size=world, seed=0, num_workers=num_workers
    )


def test_ranks_and_workers_see_disjoint_users_covering_the_log():
    dm = EventDataModule(**DATA)
    dm.setup()
    expected = {str(u) for u, n in zip(dm.log_.user_ids, dm.log_.lengths) if n >= 4}
    parts = [users_of(stream(dm, rank, 2, num_workers=2), num_workers=2) for rank in (0, 1)]
    assert all(len(p) == len(set(p)) for p in parts)  # no user twice within a rank
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == expected


def test_order_is_seeded_and_changes_per_epoch():
    dm = EventDataModule(**DATA)
    dm.setup()
    a, b = users_of(stream(dm, 0, 1)), users_of(stream(dm, 0, 1))
    assert a == b
    assert users_of(stream(dm, 0, 1), epoch=1) != a


def test_fit_on_a_stream(tmp_path):
    L.seed_everything(0)
    from userfm.pretrain.module import PretrainModule

    dm = EventDataModule(**DATA, streaming=True, batch_size=8)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=14,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(PretrainModule(encoder=dict(hidden_size=16, num_heads=2)), dm)
    assert trainer.global_step == 14  # more than one epoch of 90 users / 8
    assert dm.stats["train_users"] == "streamed"
