"""Real DDP with 2 CPU processes (gloo): ranks see disjoint users and end with identical
weights and DRO state."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    out = sys.argv[1]

    class Record(Callback):
        users = []
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.users.extend(batch.batch.user_ids)
        def on_train_end(self, trainer, pl_module):
            flat = torch.cat([p.detach().flatten() for p in pl_module.encoder.parameters()])
            digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
            with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
                dro = pl_module.dro_weighting.class_loss.tolist()
                json.dump({"users": self.users, "weights": digest, "dro": dro,
                           "world": trainer.world_size}, f)

    L.seed_everything(0)
    dm = EventDataModule(synthetic={"num_users": 64, "num_items": 50, "seed": 0}, max_len=8, batch_size=8)
    module = PretrainModule(
        encoder=dict(hidden_size=16, num_heads=2), dro="bucket", contrastive_weight=0.1
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Record()],
    )
    trainer.fit(module, dm)
    """
)


def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert all(rk["world"] == 2 for rk in ranks)
    seen = [set(rk["users"]) for rk in ranks]
    assert len(ranks[0]["users"]) == 3 * 8 and seen[0] and seen[1]
    assert not seen[0] & seen[1], "ranks trained on overlapping users"
    assert ranks[0]["weights"] == ranks[1]["weights"], "ranks diverged"
    # the DRO class losses are summed over ranks: both fold the same statistics into the EMA
    assert ranks[0]["dro"] == ranks[1]["dro"], "ranks hold different DRO class losses"
