"""Export a pretraining checkpoint as a `save_pretrained` encoder directory (no Lightning needed)."""

from __future__ import annotations

from pathlib import Path

from userfm.checkpoints import load_checkpoint
from userfm.data.vocab import VocabSet
from userfm.encoder import UserEncoder, UserEncoderConfig
from userfm.errors import FileFormatError

PREFIX = "encoder."


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, *, name: str | None = None
) -> Path:
    """Write ``out_dir`` (config.json, model.safetensors, vocab.json, README.md) from a
    `PretrainModule` checkpoint (or a run folder: its newest ``last.ckpt``); the model card
    lists the run's metrics and data statistics.

    Raises:
        FileNotFoundError: no such checkpoint.
        FileFormatError: the file is damaged, refused by ``weights_only``, or not a userfm
            pretraining checkpoint.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():  # a run folder: its newest last.ckpt
        found = sorted(checkpoint.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no last.ckpt under {checkpoint}")
        checkpoint = found[-1]
    ckpt = load_checkpoint(checkpoint)
    info = ckpt.get("userfm") if isinstance(ckpt, dict) else None
    if info is None:
        raise FileFormatError(
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
