"""Item text vectors: an item table's texts -> sentence-encoder vectors, one row per item.

`encode_items` is what ``userfm items encode`` runs and what pretraining (``data.items``) and
`UserEncoder.add_items` call: each item's text is made from the chosen columns
(`userfm.data.items.item_text`), embedded by the text model (`encode_texts`, cached on disk),
and items without text get a zero vector and are counted, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from userfm.data.items import ItemTable
from userfm.data.vocab import Vocab
from userfm.encoder.text_model import (
    DEFAULT_TEXT_MODEL,
    TextModelInfo,
    encode_texts,
    text_model_info,
)

__all__ = ["ItemVectors", "encode_items", "vocab_text_vectors"]


@dataclass(frozen=True)
class ItemVectors:
    """The text vectors of a list of items.

    Attributes:
        ids: N item ids.
        texts: (N,) the text each vector was made from; None for an item without text.
        vectors: (N, dim) float32, L2-normalised; zero rows for items without text.
        model: the text model that made them.
        columns: the item-table columns the texts were made of.
    """

    ids: list[str]
    texts: list[str | None]
    vectors: np.ndarray
    model: TextModelInfo
    columns: list[str]

    @property
    def has_text(self) -> np.ndarray:
        """(N,) bool: True where the item has text (and a real vector)."""
        return np.array([t is not None for t in self.texts], dtype=bool)

    def to_arrow(self) -> pa.Table:
        """Columns ``item`` (string), ``text`` (string, null without text) and ``vector``
        (fixed-size list of float32, null without text); the text model's name, fingerprint
        and the text columns in the schema metadata."""
        dim = self.vectors.shape[1]
        flat = pa.array(self.vectors.reshape(-1), type=pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~self.has_text))
        table = pa.table(
            {
                "item": pa.array(self.ids, type=pa.string()),
                "text": pa.array(self.texts, type=pa.string()),
                "vector": vectors,
            }
        )
        return table.replace_schema_metadata(
            {
                "userfm.text_model": self.model.name,
                "userfm.text_model_fingerprint": self.model.fingerprint,
                "userfm.text_columns": ",".join(self.columns),
            }
        )


def encode_items(
    table: ItemTable,
    columns: Sequence[str] | None = None,
    *,
    ids: Sequence[str] | None = None,
    text_model: str | os.PathLike = DEFAULT_TEXT_MODEL,
    **encode: Any,
) -> ItemVectors:
    """The text vector of every item of ``table`` (or of ``ids``, in that order).

    Args:
        table: the item table.
        columns: the text columns, in order (default: all of the table's).
        ids: the items wanted (each must be in ``table``); default: all, in table order.
        text_model: alias or folder of the sentence encoder (`resolve_text_model`).
        **encode: `encode_texts` options: ``batch_size``, ``device``, ``progress``,
            ``cache_dir``, ``max_length``.

    Returns:
        `ItemVectors`, zero vectors where an item has no text.

    Raises:
        SchemaError: a column the table lacks. UnknownItemError: an id not in the table.
        ConfigError: the text model cannot be found.
    """
    columns = list(table.columns if columns is None else columns)
    rows = table if ids is None else table.subset(ids)
    texts = rows.texts(columns)
    info = text_model_info(text_model)
    vectors = np.zeros((len(texts), info.dim), dtype=np.float32)
    present = [i for i, t in enumerate(texts) if t is not None]
    if present:
        vectors[present] = encode_texts([texts[i] for i in present], model=text_model, **encode)
    return ItemVectors(list(rows.ids), texts, vectors, info, columns)


def vocab_text_vectors(
    vocab: Vocab,
    table: ItemTable,
    columns: Sequence[str] | None = None,
    *,
    text_model: str | os.PathLike = DEFAULT_TEXT_MODEL,
    **encode: Any,
) -> tuple[np.ndarray, ItemVectors]:
    """The text vector of every index of an item vocabulary, as the encoder stores them.

    Args:
        vocab: the item vocabulary.
        table: the item table; vocabulary items it lacks get no text.
        columns, text_model, **encode: as in `encode_items`.

    Returns:
        ((len(vocab), dim) float32, row i the text vector of item index i: zero for the
        specials, hash buckets and items without text; the `ItemVectors` of the vocabulary's
        items found in the table, in vocabulary order).
    """
    listed = set(table.ids)
    ids = [t for t in vocab.tokens if t in listed]
    found = encode_items(table, columns, ids=ids, text_model=text_model, **encode)
    matrix = np.zeros((len(vocab), found.model.dim), dtype=np.float32)
    matrix[vocab.encode(ids)[0]] = found.vectors
    return matrix, found
