"""`OnnxUserTower`: embed users with an exported ONNX user tower (`userfm.api.onnx_export`).

The folder ``UserEncoder.export(dir, format="onnx")`` writes holds ``model.onnx``, the
vocabularies and the encoder config. This reader featurises histories with the same
`userfm.data.features.Featurizer` as ``UserEncoder.embed`` (same vocabularies, truncation to
``max_len``, time buckets, unknown items counted), pads them on the right into NumPy arrays
(`userfm.data.padding.pad_histories`) and runs them with onnxruntime (the model runs without
torch; this module is part of userfm and imports its dependencies).

Example:
    >>> tower = OnnxUserTower("runs/tower")           # doctest: +SKIP
    >>> emb = tower.embed(log)                         # doctest: +SKIP
    >>> emb.vectors.shape                              # doctest: +SKIP
    (943, 50)
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from userfm.api.embed import (
    PAD_MULTIPLE,
    HistoriesLike,
    as_histories,
    chunk_stats,
    length_sorted_batches,
)
from userfm.api.embeddings import UserEmbeddings
from userfm.api.onnx_export import ONNX_FILE, OUTPUT, SERVE_PACKAGES, require_onnx
from userfm.data.features import Featurizer
from userfm.data.padding import pad_histories
from userfm.data.schema import EventSchema
from userfm.data.vocab import VocabSet
from userfm.errors import ConfigError, DataError, FileFormatError

__all__ = ["OnnxUserTower"]


class OnnxUserTower:
    """An exported user tower, run by onnxruntime.

    Args:
        directory: the folder ``UserEncoder.export(dir, format="onnx")`` wrote.
        providers: onnxruntime execution providers (default: CPU).

    Raises:
        FileNotFoundError: a file of the export is missing (named).
        FileFormatError: config.json is not JSON.
        ConfigError: onnxruntime is not installed.
    """

    def __init__(self, directory: str | Path, *, providers: list[str] | None = None):
        require_onnx(SERVE_PACKAGES, "running an ONNX user tower")
        import onnxruntime as ort

        folder = Path(directory)
        for name in (ONNX_FILE, "vocab.json", "config.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{folder} is not an exported user tower: no {name} there (write one with "
                    "UserEncoder.export(dir, format='onnx'))"
                )
        try:
            self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FileFormatError(f"{folder / 'config.json'} is not valid JSON ({e})") from e
        self.vocabs = VocabSet.load(folder / "vocab.json")
        self.session = ort.InferenceSession(
            str(folder / ONNX_FILE), providers=providers or ["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.max_len = int(self.config["max_len"])
        self.dim = int(self.config["hidden_size"])

    def featurizer(self) -> Featurizer:
        """The featuriser of the exported model (its vocabularies and config values)."""
        return Featurizer(
            self.vocabs,
            max_len=self.max_len,
            num_time_gap_buckets=int(self.config["num_time_gap_buckets"]),
            max_categories=int(self.config["max_categories"]),
        )

    def run(self, arrays: dict[str, np.ndarray | None]) -> np.ndarray:
        """(B, D) float32 embeddings of a padded batch (`pad_histories`' arrays; the inputs
        the model does not read are ignored).

        Raises:
            ConfigError: the batch lacks an input the model reads (e.g. ``actions``).
        """
        missing = [n for n in self.input_names if arrays.get(n) is None]
        if missing:
            raise ConfigError(f"the batch lacks {missing}, which the exported model reads")
        return self.session.run([OUTPUT], {n: arrays[n] for n in self.input_names})[0]

    def embed(
        self,
        histories: HistoriesLike,
        *,
        batch_size: int = 256,
        schema: EventSchema | None = None,
    ) -> UserEmbeddings:
        """Embed users, ``batch_size`` at a time (length-sorted within chunks of 32 batches),
        returned in input order.

        Args:
            histories: as ``UserEncoder.embed`` accepts (`userfm.api.embed.as_histories`).
            batch_size: users per run.
            schema: column mapping for DataFrame / file inputs (default: the schema the
                model was trained with, recorded in its config).

        Returns:
            `UserEmbeddings` (N ids, (N, D) float32) with ``stats`` as ``UserEncoder.embed``
            counts them: users, events, ``oov_items``, ``truncated_users``,
            ``users_without_side_features``, summed over the chunks.

        Raises:
            DataError: ``histories`` holds no user (as ``UserEncoder.embed``).
            ConfigError: a ``batch_size`` that is not an integer >= 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        if schema is None and self.config.get("event_schema") is not None:
            schema = EventSchema.from_dict(self.config["event_schema"])
        stream, _ = as_histories(histories, schema)
        featurizer = self.featurizer()
        parts: list[UserEmbeddings] = []
        it = iter(stream)
        # as `UserEncoder.embed`: chunks of 32 batches, length-sorted batches, input order back
        while chunk := list(itertools.islice(it, batch_size * 32)):
            missing_before = featurizer.missing_side_features
            encoded = [featurizer(h) for h in chunk]
            lengths = np.fromiter((len(h) for h in chunk), dtype=np.int64, count=len(chunk))
            out = np.empty((len(chunk), self.dim), dtype=np.float32)
            for idx in length_sorted_batches(lengths, self.max_len, batch_size):
                arrays = pad_histories(
                    [encoded[i] for i in idx], pad_to_multiple_of=PAD_MULTIPLE, max_len=self.max_len
                )
                out[idx] = self.run(arrays)
            stats = chunk_stats(lengths, encoded, self.max_len)
            stats["users_without_side_features"] = featurizer.missing_side_features - missing_before
            parts.append(UserEmbeddings([h.user for h in chunk], out, stats))
        if not parts:
            raise DataError("no user histories to embed")
        return UserEmbeddings.concat(parts)
