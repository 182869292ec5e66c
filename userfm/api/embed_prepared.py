"""Embed every user of a prepared log, shard by shard, resumably (issue 34 §3).

    userfm embed --model DIR --input PREPARED --output OUT_DIR [--devices N]

One output file per input shard, ``OUT_DIR/shard-00003-of-00064.parquet`` (columns as
`UserEmbeddings.to_arrow`: ``user``, ``embedding``), each written through a temporary file and
renamed once complete, so memory holds one chunk of users, not the log. ``OUT_DIR/
embeddings.json`` records what the folder is the embedding of (the model's and the prepared
log's fingerprints) and, once every shard is there with as many rows as its input shard,
``"complete": true``. A rerun with the same model and log skips the shards already written
(a killed run resumes); with another model or log it is refused unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from userfm.api.embeddings import UserEmbeddings, sum_stats
from userfm.data.prepared import MANIFEST, PreparedLog, sha256_file
from userfm.errors import ConfigError, DataError
from userfm.outputs import atomic_output

__all__ = ["EMBEDDINGS_MANIFEST", "embed_prepared", "model_fingerprint"]

EMBEDDINGS_MANIFEST = "embeddings.json"


def model_fingerprint(model: Any) -> str:
    """SHA-256 over a model's config and weights (which model wrote a folder)."""
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def output_name(prepared: PreparedLog, index: int) -> str:
    """The output file of input shard ``index``: its file name, in the output folder."""
    return Path(prepared.shards[index].file).name


def start_output(
    model: Any, prepared: PreparedLog, out_dir: str | Path, *, overwrite: bool = False
) -> Path:
    """Check (or create) the output folder and write its manifest, not complete yet.

    Raises:
        ConfigError: the folder holds other files, or the embedding of another model or
            log, and ``overwrite`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"`--output` {out} is a file; a prepared log embeds into a folder")
    wanted = {
        "model": model_fingerprint(model),
        "prepared": sha256_file(prepared.root / MANIFEST),
        "num_shards": len(prepared.shards),
    }
    manifest = out / EMBEDDINGS_MANIFEST
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        if not manifest.is_file():
            raise ConfigError(
                f"`--output` {out} holds files that are not a userfm embedding; pass "
                "--overwrite or give another folder"
            )
        had = json.loads(manifest.read_text())
        if any(had.get(k) != v for k, v in wanted.items()):
            raise ConfigError(
                f"`--output` {out} holds the embedding of another model or log; pass "
                "--overwrite to replace it, or give another folder"
            )
    elif overwrite and out.is_dir():
        for path in out.glob("shard-*.parquet"):
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, {**wanted, "complete": False})
    return out


def embed_prepared(
    model: Any,
    prepared: PreparedLog,
    out_dir: str | Path,
    *,
    shards: Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | None = None,
    progress: bool | None = None,
) -> dict[str, int]:
    """Embed the users of ``shards`` (default: all) into ``out_dir`` (made by
    `start_output`), skipping those already written.

    Args:
        model: a `UserEncoder`.
        prepared: the prepared log.
        out_dir: the output folder.
        shards: the input shards to embed (a rank's share).
        batch_size, device, progress: as in `UserEncoder.iter_embed`.

    Returns:
        Counts over the shards embedded now (`iter_embed`'s ``stats``) and ``skipped_shards``.
    """
    out = Path(out_dir)
    stats: list[dict] = []
    skipped = 0
    for index in range(len(prepared.shards)) if shards is None else shards:
        path = out / output_name(prepared, index)
        if _complete(path, prepared.shards[index].users):
            skipped += 1
            continue
        stats.append(_embed_shard(model, prepared, index, path, batch_size, device, progress))
    return {**sum_stats(stats), "skipped_shards": skipped}


def finish_output(prepared: PreparedLog, out_dir: str | Path) -> None:
    """Check that every shard is written with as many users as its input shard, then mark
    the folder complete.

    Raises:
        DataError: a shard is missing or has another number of rows.
    """
    out = Path(out_dir)
    for index, shard in enumerate(prepared.shards):
        path = out / output_name(prepared, index)
        if not _complete(path, shard.users):
            raise DataError(
                f"{path} is missing or does not hold the {shard.users:,} users of "
                f"{shard.file}: the embedding is incomplete; run the command again to finish it"
            )
    manifest = json.loads((out / EMBEDDINGS_MANIFEST).read_text())
    _write_manifest(out, {**manifest, "complete": True})


def _embed_shard(
    model: Any,
    prepared: PreparedLog,
    index: int,
    path: Path,
    batch_size: int,
    device: str | None,
    progress: bool | None,
) -> dict:
    """One input shard's users, chunk by chunk, into ``path`` (renamed in when complete)."""
    if prepared.shards[index].users == 0:  # an empty file of the same columns
        empty = UserEmbeddings([], np.empty((0, model.config.hidden_size), np.float32))
        empty.to_parquet(path)
        return {}
    totals: list[dict] = []
    with atomic_output(path) as tmp:
        writer = None
        try:
            for part in model.iter_embed(
                prepared.iter_histories([index]),
                batch_size=batch_size,
                device=device,
                progress=progress,
            ):
                table = part.to_arrow()
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                totals.append(part.stats)
        finally:
            if writer is not None:
                writer.close()
    return sum_stats(totals)


def _complete(path: Path, users: int) -> bool:
    if not path.is_file():
        return False
    try:
        return pq.ParquetFile(path).metadata.num_rows == users
    except (pa.ArrowInvalid, OSError):
        return False


def _write_manifest(out: Path, manifest: dict) -> None:
    with atomic_output(out / EMBEDDINGS_MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
