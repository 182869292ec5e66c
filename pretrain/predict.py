"""Scale-out embedding: users sharded over processes / GPUs, one parquet file per rank.

    userfm embed --model DIR --input events.parquet --output OUT_DIR --devices 2

Lightning Fabric only launches the processes and tells each its rank. Rank r takes the r-th
contiguous share of the users and embeds it with `UserEncoder.iter_embed`, the one embedding
loop (length-sorted batches, counts of unknown items, truncated histories and missing side
features; issue 19 §2), then writes ``OUT_DIR/part-<rank>.parquet``. Read the folder with
`pyarrow.parquet.read_table(OUT_DIR)` (users in log order: shards are contiguous and named by
rank) or `UserEmbeddings.from_parquet` per shard.

A prepared log (``userfm prepare``) is embedded shard by shard instead: rank r takes the
input shards ``i`` with ``i % W == r`` and writes one output file per input shard
(`userfm.api.embed_prepared`: resumable, checked complete by rank 0 at the end).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np

from userfm.api.embed_prepared import embed_prepared, finish_output, start_output
from userfm.api.embeddings import UserEmbeddings
from userfm.data.log import EventLog, UserHistory
from userfm.data.prepared import PreparedLog
from userfm.encoder import UserEncoder

# the counters `iter_embed` puts in ``stats``, all 0 for a rank that gets no user
_NO_USERS = dict.fromkeys(
    ("users", "events", "oov_items", "truncated_users", "users_without_side_features"), 0
)


class _UserRange(Sequence[UserHistory]):
    """Users ``lo .. hi - 1`` of a log, streamed in log order; a `Sequence`, so the progress
    bar knows the total."""

    def __init__(self, log: EventLog, lo: int, hi: int):
        self.log, self.lo, self.hi = log, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int) -> UserHistory:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(f"user {i} out of range for a shard of {len(self)} users")
        return self.log.history_at(self.lo + i)

    def __iter__(self) -> Iterator[UserHistory]:
        return itertools.islice(self.log.iter_histories(), self.lo, self.hi)


def embed_sharded(
    model: UserEncoder,
    log: EventLog | PreparedLog,
    out_dir: str | Path,
    *,
    devices: int = 2,
    accelerator: str = "auto",
    batch_size: int = 256,
    progress: bool | None = None,
    overwrite: bool = False,
) -> dict:
    """Embed every user of ``log`` on ``devices`` processes, one ``part-<rank>.parquet`` each.

    With ``devices > 1`` the calling script is started again once per extra rank (Lightning's
    DDP launcher; gloo on CPU, NCCL on GPUs), and every rank returns from this call.

    Args:
        model: a `UserEncoder` with vocabularies.
        log: the users to embed; rank r of W embeds users ``r*N//W .. (r+1)*N//W - 1``, or
            of a prepared log the shards ``i % W == r`` (one output file per input shard).
        out_dir: the folder of ``part-<rank>.parquet`` files (each written atomically).
        overwrite: a prepared log's output folder: replace another model's or log's
            embedding (`userfm.api.embed_prepared.start_output`).
        devices: processes (GPUs when ``accelerator`` resolves to CUDA).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        batch_size: users per forward pass.
        progress: progress bar on rank 0; None: only when stderr is a terminal.

    Returns:
        This rank's ``stats`` as in `iter_embed`: users, events, oov_items, truncated_users,
        users_without_side_features. Rank 0 returns once every shard is written.
    """
    fabric = L.Fabric(
        accelerator=accelerator, devices=devices, strategy="ddp" if devices > 1 else "auto"
    )
    fabric.launch()
    if isinstance(log, PreparedLog):
        return _embed_prepared_sharded(
            fabric, model, log, out_dir, batch_size=batch_size, progress=progress,
            overwrite=overwrite,
        )  # fmt: skip
    rank, world, n = fabric.global_rank, fabric.world_size, log.num_users
    parts = list(
        model.iter_embed(
            _UserRange(log, rank * n // world, (rank + 1) * n // world),
            batch_size=batch_size,
            device=fabric.device,
            progress=progress if rank == 0 else False,
        )
    )
    shard = (
        UserEmbeddings.concat(parts)
        if parts
        else UserEmbeddings([], np.empty((0, model.config.hidden_size)), dict(_NO_USERS))
    )
    shard.to_parquet(Path(out_dir) / f"part-{rank:05d}.parquet")
    fabric.barrier()  # the folder is complete when rank 0 returns
    return shard.stats


def _embed_prepared_sharded(
    fabric: L.Fabric,
    model: UserEncoder,
    prepared: PreparedLog,
    out_dir: str | Path,
    *,
    batch_size: int,
    progress: bool | None,
    overwrite: bool,
) -> dict:
    """This rank's input shards, one output file each; rank 0 checks the folder first and
    marks it complete last."""
    rank, world = fabric.global_rank, fabric.world_size
    if rank == 0:
        start_output(model, prepared, out_dir, overwrite=overwrite)
    fabric.barrier()
    mine = [i for i in range(len(prepared.shards)) if i % world == rank]
    stats = embed_prepared(
        model, prepared, out_dir, shards=mine, batch_size=batch_size, device=fabric.device,
        progress=progress if rank == 0 else False,
    )  # fmt: skip
    fabric.barrier()
    if rank == 0:
        finish_output(prepared, out_dir)
    return {**dict(_NO_USERS), **stats}
