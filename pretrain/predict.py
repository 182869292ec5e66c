"""Scale-out embedding with Lightning's predict loop: one parquet shard per rank.

    userfm embed --model DIR --input events.parquet --output OUT_DIR --devices 2

Each rank embeds a disjoint share of the users (Lightning's unrepeated distributed sampler for
prediction) and appends its batches to ``OUT_DIR/part-<rank>.parquet``; read the folder with
`pyarrow.parquet.read_table(OUT_DIR)` or `UserEmbeddings.from_parquet` per shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from userfm.api.embeddings import UserEmbeddings
from userfm.data.collate import collate
from userfm.data.features import Featurizer
from userfm.data.log import EventLog
from userfm.encoder import UserEncoder


class _Histories(Dataset):
    """Encoded histories of a log, featurized lazily per user."""

    def __init__(self, log: EventLog, featurizer: Featurizer):
        self.log, self.featurizer = log, featurizer

    def __len__(self) -> int:
        return self.log.num_users

    def __getitem__(self, i: int):
        return self.featurizer(self.log.history_at(i))


class EmbedModule(L.LightningModule):
    """A thin shell around a `UserEncoder` for `Trainer.predict`."""

    def __init__(self, encoder: UserEncoder):
        super().__init__()
        self.encoder = encoder

    def predict_step(self, batch: Any, batch_idx: int) -> UserEmbeddings:
        emb = self.encoder(batch, return_states=False).embedding  # (B, D)
        return UserEmbeddings(batch.user_ids, emb.float().cpu().numpy())


class ParquetShardWriter(BasePredictionWriter):
    """Appends each predicted batch to ``out_dir/part-<rank>.parquet``."""

    def __init__(self, out_dir: str | Path):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self._writer: pq.ParquetWriter | None = None
        self.users = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        table = prediction.to_arrow()
        if self._writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"part-{trainer.global_rank:05d}.parquet"
            self._writer = pq.ParquetWriter(path, table.schema)
        self._writer.write_table(table)
        self.users += len(prediction)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._writer is not None:
            self._writer.close()


def embed_sharded(
    model: UserEncoder,
    log: EventLog,
    out_dir: str | Path,
    *,
    devices: int = 2,
    accelerator: str = "auto",
    batch_size: int = 256,
    num_workers: int = 0,
) -> int:
    """Embed every user of ``log`` on ``devices`` processes; returns the users this rank wrote."""
    featurizer = model.featurizer()
    loader = DataLoader(
        _Histories(log, featurizer),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
    )
    writer = ParquetShardWriter(out_dir)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        callbacks=[writer],
        enable_progress_bar=True,
        enable_model_summary=False,
    )
    with torch.inference_mode():
        trainer.predict(EmbedModule(model.eval()), loader, return_predictions=False)
    return writer.users
