"""Warm start: a pretrained encoder's weights in an encoder built for another log.

A foundation model is pretrained once and fine-tuned on a new log, whose vocabularies differ:
another catalogue (other items), other action or category values, or the same ones in
another order (vocabularies are sorted by frequency). `warm_start` copies every weight that
does not depend on a vocabulary whole, and the rows of the vocabulary-indexed tables (item
ids, actions, categories) token by token: a row moves to the index its token has in the new
vocabulary, and tokens the pretrained model never saw keep their fresh initialisation. Item
text vectors and item -> category tables are data of the new log, never copied. A model that
reads items through their text (`UserEncoderConfig.text_dim`) carries what it learnt about
items to a catalogue it has never seen; a text-only (inductive) one can be fine-tuned with an
id table added (``item_ids: true``, rows freshly initialised), so the new catalogue's items
also learn ids of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from userfm.errors import ConfigError

if TYPE_CHECKING:
    from userfm.data.vocab import Vocab
    from userfm.encoder.model import UserEncoder

__all__ = ["ARCHITECTURE", "WarmStart", "warm_start"]

#: the `UserEncoderConfig` fields that shape the network: a warm start keeps the pretrained
#: model's values (the data sets the vocabulary sizes, ``text_dim`` and ``max_categories``)
ARCHITECTURE = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_len",
                "num_time_gap_buckets", "use_time", "pooling", "normalize", "text_adaptor",
                "output_features")  # fmt: skip
#: tensors that hold the new log's data, not learnt weights
_DATA = ("embeddings.item_text", "embeddings.item_categories")
#: the vocabulary-indexed tables: tensor name -> `VocabSet` field
_BY_TOKEN = {
    "embeddings.item.weight": "items",
    "embeddings.action.weight": "actions",
    "embeddings.category.weight": "categories",
}


@dataclass(frozen=True)
class WarmStart:
    """What `warm_start` copied.

    Attributes:
        tensors: weights copied whole.
        rows: per vocabulary-indexed table (``items``, ``actions``, ``categories``), (rows
            copied by token, rows of the new table); the others keep their initialisation.
    """

    tensors: int
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)


@torch.no_grad()
def warm_start(dst: UserEncoder, src: UserEncoder) -> WarmStart:
    """Copy ``src``'s learnt weights into ``dst``, an encoder of the same architecture
    built for another log (its own vocabularies and item text).

    Args:
        dst: the encoder to fine-tune (vocabularies attached).
        src: the pretrained encoder (vocabularies attached).

    Returns:
        `WarmStart`: how much was copied (``rows["items"]`` is (0, V) when ``dst`` adds an id
        table to a text-only ``src``).

    Raises:
        ConfigError: the two differ in an `ARCHITECTURE` field, ``src`` reads item ids and
            ``dst`` has none (its id table would be lost), they read item text from different
            text models, or a weight has another shape.
    """
    different = [
        f"{name}: {getattr(src.config, name)!r} -> {getattr(dst.config, name)!r}"
        for name in ARCHITECTURE
        if getattr(src.config, name) != getattr(dst.config, name)
    ]
    if different:
        raise ConfigError(
            "a warm start needs the pretrained encoder's architecture; these fields differ: "
            + "; ".join(different)
        )
    if src.config.item_ids and not dst.config.item_ids:
        raise ConfigError(
            "the pretrained encoder reads item ids and this one has none (item_ids: false): "
            "its id table would be lost; keep item_ids: true"
        )
    _check_text_models(dst, src)
    src_state, dst_state = src.state_dict(), dst.state_dict()
    tensors, rows = 0, {}
    for name, target in dst_state.items():
        if name in _DATA:
            continue
        if name not in src_state:  # an id table added to a text-only encoder: fresh rows
            if name in _BY_TOKEN:
                rows[_BY_TOKEN[name]] = (0, len(target))
            continue
        if name in _BY_TOKEN:
            field_name = _BY_TOKEN[name]
            old, new = getattr(src.vocabs, field_name), getattr(dst.vocabs, field_name)
            rows[field_name] = (_copy_rows(target, src_state[name], old, new), len(target))
            continue
        if src_state[name].shape != target.shape:
            raise ConfigError(
                f"`{name}` has shape {tuple(src_state[name].shape)} in the pretrained encoder "
                f"and {tuple(target.shape)} here"
            )
        target.copy_(src_state[name])
        tensors += 1
    return WarmStart(tensors, rows)


def _check_text_models(dst: UserEncoder, src: UserEncoder) -> None:
    """Text vectors of two text models live in two spaces: the projection would not carry."""
    if not (src.config.text_dim and dst.config.text_dim):
        if src.config.text_dim != dst.config.text_dim:
            raise ConfigError(
                "the pretrained encoder and this one differ in reading item text (text_dim "
                f"{src.config.text_dim} vs {dst.config.text_dim}): give both an item table "
                "(`data.items`) or neither"
            )
        return
    a, b = src.config.text_model_fingerprint, dst.config.text_model_fingerprint
    if a and b and a != b:
        raise ConfigError(
            f"the pretrained encoder read item text with {src.config.text_model!r} and this "
            f"log's items are embedded with {dst.config.text_model!r} (another model): use "
            "the same `data.text_model`"
        )


def _copy_rows(target: torch.Tensor, source: torch.Tensor, old: Vocab, new: Vocab) -> int:
    """Rows of ``source`` (indexed by ``old``) into ``target`` (indexed by ``new``) for the
    tokens both hold; returns how many. The specials' rows (PAD, MASK, OOV) are copied too."""
    from userfm.data.vocab import NUM_SPECIALS

    target[:NUM_SPECIALS] = source[:NUM_SPECIALS]
    shared = [t for t in new.tokens if t in old]
    if shared:
        target[torch.from_numpy(new.encode(shared)[0])] = source[
            torch.from_numpy(old.encode(shared)[0])
        ]
    return len(shared)
