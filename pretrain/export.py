"""Export a pretraining checkpoint as a `save_pretrained` encoder directory (no Lightning needed)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from userfm.data.vocab import VocabSet
from userfm.encoder import UserEncoder, UserEncoderConfig
from userfm.errors import FileFormatError, UserfmError

PREFIX = "encoder."


def load_checkpoint(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, so a
    planted checkpoint cannot run code; a truncated file or one holding other objects is a
    typed error naming it.

    Raises:
        FileFormatError: not a readable checkpoint, or it holds objects besides tensors and
            plain containers (refused, never unpickled).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # what weights_only refuses
        raise FileFormatError(
            f"{path} holds objects other than tensors and plain containers; refused unread "
            "(checkpoints are trusted input only as far as weights_only allows)"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise FileFormatError(f"{path} is not a readable checkpoint (truncated?): {e}") from e


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, *, name: str | None = None
) -> Path:
    """Write ``out_dir`` (config.json, model.safetensors, vocab.json, README.md) from a
    `PretrainModule` checkpoint (or a run folder: its newest ``last.ckpt``); the model card
    lists the run's metrics and data statistics.

    Raises:
        FileNotFoundError: no such checkpoint.
        UserfmError: the file is not a userfm pretraining checkpoint.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():  # a run folder: its newest last.ckpt
        found = sorted(checkpoint.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no last.ckpt under {checkpoint}")
        checkpoint = found[-1]
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    ckpt = load_checkpoint(checkpoint)
    info = ckpt.get("userfm") if isinstance(ckpt, dict) else None
    if info is None:
        raise UserfmError(
            f"{checkpoint} is not a userfm pretraining checkpoint (no 'userfm' entry)"
        )
    config = UserEncoderConfig.from_dict(info["encoder_config"])
    model = UserEncoder(config, vocabs=VocabSet.from_dict(info["vocabs"]))
    state = {k[len(PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    model.load_state_dict(state, strict=True)
    metrics = dict(info.get("metrics", {}))
    at = metrics.pop("step", None)
    protocol = f"leave-one-out valid split, full ranking, seen items filtered, at step {at}"
    card = {
        "name": name or f"userfm encoder pretrained on {info['data_stats'].get('source', 'a log')}",
        "training_data": {**info["data_stats"], "training steps": info.get("global_step")},
        "metrics": {f"{k} ({protocol})": v for k, v in metrics.items()},
    }
    return model.save_pretrained(out_dir, card_data=card)
