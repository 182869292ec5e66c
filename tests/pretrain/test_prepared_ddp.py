"""Exact mid-epoch resume on every rank from prepared shards (issue 34 §2): two DDP processes
(gloo, CPU) with a DataLoader worker each, killed with SIGKILL after a checkpoint and
resumed, train on the same remaining batches, rank by rank, as an uninterrupted run: the
batches each rank's stream gives in order, computed here in one process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from userfm.data.features import Featurizer
from userfm.data.prepare import prepare_log
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.pretrain.data import EventDataModule
from userfm.pretrain.prepared_stream import PreparedExamples

pytest.importorskip("duckdb")

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    source, out, tag, kill_at, resume = sys.argv[1:6]
    kill_at = int(kill_at)

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            with open(f"{out}/{tag}_rank{trainer.global_rank}.jsonl", "a") as f:
                f.write(json.dumps([trainer.global_step, list(batch.batch.user_ids)]) + "\\n")
            if trainer.global_step == kill_at and trainer.global_rank == 0:
                os.killpg(os.getpgid(0), signal.SIGKILL)  # both ranks, no cleanup

    L.seed_everything(0)
    dm = EventDataModule(source=source, max_len=8, batch_size=4, num_workers=1, seed=3)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=14, logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, default_root_dir=out,
        callbacks=[Record(), ModelCheckpoint(dirpath=f"{out}/ckpt_{tag}", every_n_train_steps=3,
                                             save_top_k=-1)],
    )
    module = PretrainModule(encoder=dict(hidden_size=16, num_heads=2))
    trainer.fit(module, dm, ckpt_path=None if resume == "-" else resume)
    """
)


def run(tmp_path, source, tag, *, kill_at=-1, resume="-"):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(source), str(tmp_path), tag, str(kill_at), resume],
        capture_output=True, text=True, timeout=600, start_new_session=True,
    )  # fmt: skip


def records(tmp_path, tag, rank) -> dict[int, list[str]]:
    lines = (tmp_path / f"{tag}_rank{rank}.jsonl").read_text().splitlines()
    return {step: users for step, users in map(json.loads, lines)}


def uninterrupted(source, rank: int, steps: int) -> tuple[dict[int, list[str]], int]:
    """The batches rank ``rank`` of 2 trains on, step by step, passes following each other,
    and the steps of one pass."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    from userfm.pretrain.data import collate_examples

    dm = EventDataModule(source=str(source), max_len=8, batch_size=4, num_workers=1, seed=3)
    dm.setup()
    stream = PreparedExamples(dm.prepared, Featurizer(dm.vocabs, max_len=9), "train",
                              batch_size=4, rank=rank, world_size=2, num_workers=1, seed=3)  # fmt: skip
    loader = StatefulDataLoader(stream, batch_size=4, num_workers=1, collate_fn=collate_examples)
    order: list[list[str]] = []
    while len(order) < steps:
        order += [list(b.batch.user_ids) for b in loader]
    return dict(enumerate(order[:steps])), len(stream) // 4


def test_two_ranks_killed_and_resumed_see_the_uninterrupted_batches(tmp_path):
    source = tmp_path / "prepared"
    log = generate_synthetic_log(SyntheticConfig(num_users=80, num_items=30, seed=1))
    prepare_log(log, source, num_shards=4)
    killed = run(tmp_path, source, "killed", kill_at=10)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpt = next((tmp_path / "ckpt_killed").glob("*step=6.ckpt"))  # mid-way through pass 0
    resumed = run(tmp_path, source, "resumed", resume=str(ckpt))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        want, per_pass = uninterrupted(source, rank, 14)
        assert 6 < per_pass < 14  # resumed mid-pass, then on into the next pass
        before, after = records(tmp_path, "killed", rank), records(tmp_path, "resumed", rank)
        # rank 0 kills both at step 10: rank 1 may not have started it
        assert set(range(10)) <= set(before) and sorted(after) == list(range(6, 14))
        assert before == {s: want[s] for s in before}, f"rank {rank}: other batches"
        assert after == {s: want[s] for s in after}, f"rank {rank} resumed on other batches"
    # the ranks read different users
    assert not set(records(tmp_path, "killed", 0)[0]) & set(records(tmp_path, "killed", 1)[0])
