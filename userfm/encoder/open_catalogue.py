"""An open catalogue: give a trained encoder new items from their text, without retraining.

A model trained with text features (``config.text_dim`` > 0) reads an item through its id
embedding (when it has one) plus a projection of the item's sentence-encoder vector.
`add_items` appends new items to the vocabulary with a zero id embedding and the vector of
their text, made by the same text model the model was trained with (checked by its
fingerprint), so `embed` reads them in histories and `recommend` ranks them. Models trained
with ID dropout or in the inductive mode (``item_ids: false``) learnt to read such items.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from userfm.data.items import ItemTable, read_items
from userfm.data.vocab import Vocab
from userfm.encoder.item_vectors import encode_items
from userfm.encoder.text_model import text_model_info
from userfm.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from userfm.encoder.model import UserEncoder

__all__ = ["AddedItems", "add_items"]


@dataclass(frozen=True)
class AddedItems:
    """What `add_items` did.

    Attributes:
        added: new items given a vector from their text (now in the vocabulary).
        known: items of the table the model already had (left as they were).
        without_text: new items with no text in any of the model's text columns: not added,
            they stay OOV (counted by `embed` as unknown).
        ids: the added item ids, in table order.
        without_categories: added items whose output vector lacks the category features the
            model scores with (`UserEncoder.scores_categories`), because the table has no
            column of the training log's category name: they are scored from id-less text
            alone, a handicap against known items.
    """

    added: int
    known: int
    without_text: int
    ids: list[str] = field(default_factory=list, repr=False)
    without_categories: int = 0


def add_items(
    model: UserEncoder,
    items: ItemTable | pd.DataFrame | str | os.PathLike,
    *,
    id_column: str = "item",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> AddedItems:
    """Add the items of ``items`` the model does not know, each with the vector of its text.

    Args:
        model: an encoder trained with text features (``config.text_model`` set).
        items: an `ItemTable`, or a DataFrame / file `read_items` reads, holding ``id_column``
            and the model's ``config.text_columns`` (and, for a model that scores items with
            their categories, the column of the training log's category name).
        id_column: the id column of a DataFrame / file.
        batch_size, device, progress, cache_dir: `encode_texts` options for the new texts.

    Returns:
        `AddedItems` (added, known, without_text).

    Raises:
        ConfigError: the model has no text features, or hash buckets (their indices follow
            the known items'), or the installed text model is not the one it was trained with.
        SchemaError: the table lacks one of the model's text columns.
    """
    cfg = model.config
    vocab = model._require_vocabs().items
    if not cfg.text_dim or not cfg.text_model or not cfg.text_columns:
        raise ConfigError(
            "this encoder reads no item text (it was trained without `data.items`): it cannot "
            "read new items; pretrain it with an item table (`data.items`, `data.item_text`)"
        )
    if vocab.num_hash_buckets:
        raise ConfigError(
            "add_items does not support models with hash buckets (`num_hash_buckets` > 0) yet: "
            "their bucket indices follow the known items"
        )
    info = text_model_info(cfg.text_model)
    if cfg.text_model_fingerprint and info.fingerprint != cfg.text_model_fingerprint:
        raise ConfigError(
            f"the text model {cfg.text_model!r} found at {info.path} is not the one this "
            "encoder was trained with (another fingerprint): its vectors would live in another "
            "space; install the same model files"
        )
    table = items if isinstance(items, ItemTable) else read_items(items, id_column=id_column)
    table.texts(cfg.text_columns)  # names a missing text column before any work
    new = [i for i in dict.fromkeys(table.ids) if i not in vocab]
    vectors = encode_items(
        table,
        cfg.text_columns,
        ids=new,
        text_model=cfg.text_model,
        batch_size=batch_size,
        device=device,
        progress=progress,
        cache_dir=cache_dir,
    )
    has_text = vectors.has_text
    added = [i for i, t in zip(new, has_text) if t]
    categories = _categories(model, table, added)
    if added:
        _grow(model, added, torch.from_numpy(vectors.vectors[has_text]), categories)
    return AddedItems(
        added=len(added),
        known=len(table) - len(new),
        without_text=len(new) - len(added),
        ids=added,
        without_categories=len(added) if categories is None and model.scores_categories else 0,
    )


def _categories(model: UserEncoder, table: ItemTable, ids: list[str]) -> torch.Tensor | None:
    """(n, max_categories) category indices of the new items, for a model whose output
    vectors add their categories: read from the table's column of the name the training log's
    categories had (``config.event_schema``, e.g. ``genres``); None when the model has no use
    for them or the table lacks that column."""
    schema = model.training_schema()
    column = schema.category if schema is not None else None
    if not ids or not model.scores_categories or column not in table.columns:
        return None
    featurizer = model.featurizer()
    values = table.subset(ids).columns[column]
    return torch.from_numpy(np.stack([featurizer.categories_of(v) for v in values]))


@torch.no_grad()
def _grow(
    model: UserEncoder, ids: list[str], vectors: torch.Tensor, categories: torch.Tensor | None
) -> None:
    """Append ``ids`` to the item index space: zero id rows, ``vectors`` (n, text_dim) as
    their text, ``categories`` (n, C) as their categories (PAD when None); the vocabulary and
    ``config.num_items`` follow."""
    emb = model.embeddings
    old, n = model.config.num_items, len(ids)
    if emb.item is not None:
        table = nn.Embedding(old + n, emb.item.embedding_dim, padding_idx=0, sparse=emb.item.sparse)
        table = table.to(device=emb.item.weight.device, dtype=emb.item.weight.dtype)
        table.weight.zero_()
        table.weight[:old] = emb.item.weight
        table.weight.requires_grad_(emb.item.weight.requires_grad)
        emb.item = table
    text = emb.item_text
    emb.item_text = torch.cat([text, vectors.to(device=text.device, dtype=text.dtype)])
    if emb.item_categories is not None:
        rows = emb.item_categories.new_zeros(n, emb.item_categories.shape[1])
        if categories is not None:
            rows.copy_(categories)
        emb.item_categories = torch.cat([emb.item_categories, rows])
    vocab = model.vocabs.items
    counts = None if vocab.counts is None else [*vocab.counts, *([0] * n)]
    model.vocabs.items = Vocab([*vocab.tokens, *ids], vocab.num_hash_buckets, counts)
    model.config.num_items = old + n
