"""Training and evaluation streamed from prepared shards (issue 34 §2): the in-memory path is
the reference (same examples, same validation metrics); whole shards per rank and worker,
the same number of batches on every rank, seeded shuffling, exact resume."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from userfm.data.features import Featurizer
from userfm.data.prepare import prepare_log
from userfm.data.prepared import PreparedLog
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.errors import ConfigError
from userfm.pretrain.data import EventDataModule, collate_examples
from userfm.pretrain.prepared_stream import PreparedExamples

pytest.importorskip("duckdb")

SCHEMA = EventSchema(action="action", category="category", title="title")
SYNTH = {"num_users": 160, "num_items": 50, "seed": 4}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "p"
    prepare_log(generate_synthetic_log(SyntheticConfig(**SYNTH)), out, SCHEMA, num_shards=8)
    return out


def stream(prepared_dir, split="train", *, rank=0, world=1, workers=0, batch=8, **kw):
    prepared = PreparedLog.open(prepared_dir)
    featurizer = Featurizer(prepared.vocabs, max_len=11)
    return PreparedExamples(prepared, featurizer, split, batch_size=batch, rank=rank,
                            world_size=world, num_workers=workers, **kw)  # fmt: skip


def batches(dataset, workers=0, state=None, batch=8):
    loader = StatefulDataLoader(dataset, batch_size=batch, num_workers=workers,
                                collate_fn=collate_examples)  # fmt: skip
    if state is not None:
        loader.load_state_dict(state)
    return loader


def users(loader) -> list[list[str]]:
    return [list(b.batch.user_ids) for b in loader]


def test_ranks_and_workers_read_disjoint_users_in_equal_numbers_of_batches(prepared_dir):
    per_rank = [users(batches(stream(prepared_dir, rank=r, world=2, workers=2), workers=2))
                for r in (0, 1)]  # fmt: skip
    assert len(per_rank[0]) == len(per_rank[1]) > 0  # no rank ends early (DDP would hang)
    seen = [[u for b in rank for u in b] for rank in per_rank]
    assert all(len(s) == len(set(s)) for s in seen)  # no user twice in an epoch
    assert not set(seen[0]) & set(seen[1])
    assert all(len(b) == 8 for rank in per_rank for b in rank)


def test_streamed_examples_are_the_in_memory_ones(prepared_dir):
    dm = EventDataModule(synthetic=SYNTH, max_len=10, batch_size=8)  # the in-memory reference
    dm.setup()
    reference = {
        split: {tuple(e.inputs.items): e.targets.tolist() for e in dm.datasets[split].examples}
        for split in ("train", "valid", "test")
    }
    for split in ("valid", "test"):  # every user, once
        got = {tuple(e.inputs.items): e.targets.tolist() for e in stream(prepared_dir, split)}
        assert got == reference[split]
    train = [e for e in stream(prepared_dir, "train", batch=1)]  # batch 1: nothing left out
    assert len(train) == len(reference["train"])
    assert {tuple(e.inputs.items): e.targets.tolist() for e in train} == reference["train"]


def test_validation_over_ranks_covers_every_user_in_equal_batches(prepared_dir):
    counts = [len(list(batches(stream(prepared_dir, "valid", rank=r, world=2)))) for r in (0, 1)]
    assert counts[0] == counts[1]
    seen = set()
    for r in (0, 1):
        seen |= {
            u for b in users(batches(stream(prepared_dir, "valid", rank=r, world=2))) for u in b
        }
    assert len(seen) == sum(1 for _ in stream(prepared_dir, "valid"))


@pytest.mark.parametrize("workers", [0, 2])
def test_order_is_seeded_and_changes_with_each_pass(prepared_dir, workers):
    dataset = stream(prepared_dir, workers=workers)
    loader = batches(dataset, workers=workers)
    first, second = users(loader), users(loader)
    assert first != second and sorted(map(sorted, first)) != sorted(map(sorted, second))
    again = batches(stream(prepared_dir, workers=workers), workers=workers)
    assert users(again) == first and users(again) == second
    assert users(batches(stream(prepared_dir, seed=1))) != first


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", [5, "end"])
def test_resume_continues_with_the_uninterrupted_batches(prepared_dir, workers, stop):
    loader = batches(stream(prepared_dir, workers=workers), workers=workers)
    full = users(loader) + users(loader)  # two passes
    loader = batches(stream(prepared_dir, workers=workers), workers=workers)
    it = iter(loader)
    n = len(full) // 2 if stop == "end" else stop  # stopped mid-pass, or on its last batch
    head = [list(next(it).batch.user_ids) for _ in range(n)]
    state = loader.state_dict()
    del it, loader
    resumed = batches(stream(prepared_dir, workers=workers), workers=workers, state=state)
    rest = users(resumed)
    if len(head) + len(rest) < len(full):  # stopped on the pass's last batch
        rest += users(resumed)
    assert head + rest == full


def test_validation_metrics_equal_the_in_memory_path(prepared_dir):
    from userfm.pretrain.module import PretrainModule

    def validate(dm):
        L.seed_everything(0)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False)  # fmt: skip
        module = PretrainModule(encoder=dict(hidden_size=16, num_heads=2))
        return trainer.validate(module, dm, verbose=False)[0]

    memory = validate(EventDataModule(synthetic=SYNTH, max_len=10, eval_batch_size=16))
    streamed = validate(EventDataModule(source=str(prepared_dir), max_len=10, eval_batch_size=16))
    assert memory.keys() == streamed.keys()
    for k in memory:
        assert memory[k] == pytest.approx(streamed[k], rel=1e-5), k


def test_prepared_vocabulary_options_can_only_narrow(prepared_dir):
    wide = EventDataModule(source=str(prepared_dir), max_len=10)
    wide.setup()
    narrow = EventDataModule(source=str(prepared_dir), max_len=10, max_items=20)
    narrow.setup()
    assert len(narrow.vocabs.items.tokens) == 20
    assert narrow.vocabs.items.tokens == wide.vocabs.items.tokens[:20]
    # DRO prior / logQ counts: the training part only, as the in-memory path counts them
    dm = EventDataModule(synthetic=SYNTH, max_len=10)
    dm.setup()
    assert torch.equal(wide.item_counts, dm.item_counts)


def test_too_few_shards_or_examples_are_refused(prepared_dir):
    with pytest.raises(ConfigError, match="8 shards for 16 processes"):
        stream(prepared_dir, world=16)
    with pytest.raises(ConfigError, match="fewer than batch_size=500"):
        len(stream(prepared_dir, batch=500))
    with pytest.raises(ConfigError, match="group_by_length"):
        EventDataModule(source=str(prepared_dir), group_by_length=True).setup()


def test_fit_on_prepared_shards_with_workers(prepared_dir):
    from userfm.pretrain.module import PretrainModule

    L.seed_everything(0)
    dm = EventDataModule(source=str(prepared_dir), max_len=10, batch_size=8, num_workers=2)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(PretrainModule(encoder=dict(hidden_size=16, num_heads=2)), dm)
    per_epoch = len(dm.datasets["train"]) // 8
    assert trainer.global_step == 2 * per_epoch
    assert np.isfinite(float(trainer.callback_metrics["valid/ndcg@10"]))


def test_a_state_saved_before_the_first_batch_restarts_the_first_pass(prepared_dir):
    loader = batches(stream(prepared_dir))
    state = loader.state_dict()  # nothing read yet
    assert users(batches(stream(prepared_dir), state=state)) == users(loader)
