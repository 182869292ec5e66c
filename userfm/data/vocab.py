"""Vocabularies: raw ids (items, actions, categories) -> contiguous indices.

Indices 0, 1, 2 are reserved for PAD, MASK and OOV in every vocabulary. Known tokens follow,
most frequent first; when ``num_hash_buckets > 0`` unknown tokens are hashed into that many
extra indices after the known ones instead of all sharing OOV (useful for very large or
open catalogues). Saved as JSON beside the model weights.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from userfm.data.log import EventLog
from userfm.data.schema import ACTION, CATEGORY, CATEGORY_SEP, ITEM
from userfm.errors import ConfigError

PAD, MASK, OOV = 0, 1, 2
SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[OOV]")
#: indices 0 .. NUM_SPECIALS - 1 of every vocabulary are the specials, never a real token
NUM_SPECIALS = len(SPECIAL_TOKENS)


@dataclass
class Vocab:
    """An id vocabulary with reserved PAD=0, MASK=1, OOV=2.

    Args:
        tokens: known tokens, in index order (index = position + 3).
        num_hash_buckets: extra indices for unknown tokens (0: unknown -> OOV).
        counts: training-set frequency of each known token (same order), if known.
    """

    tokens: list[str]
    num_hash_buckets: int = 0
    counts: list[int] | None = None
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_hash_buckets < 0:
            raise ConfigError(f"`num_hash_buckets` must be >= 0, got {self.num_hash_buckets}")
        self.tokens = [str(t) for t in self.tokens]
        self._index = {t: i + NUM_SPECIALS for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ConfigError("vocabulary tokens must be unique")
        if self.counts is not None and len(self.counts) != len(self.tokens):
            raise ConfigError("`counts` must have one entry per token")

    @classmethod
    def build(
        cls,
        tokens: Iterable[str] | Counter,
        *,
        min_count: int = 1,
        max_size: int | None = None,
        num_hash_buckets: int = 0,
    ) -> Vocab:
        """Build from a stream of tokens (or a Counter of them).

        Args:
            tokens: every occurrence (e.g. the item column of a training log), or a Counter.
            min_count: tokens seen fewer times map to OOV / a hash bucket.
            max_size: keep at most this many known tokens (the most frequent; ties broken by
                token so the result is deterministic).
            num_hash_buckets: see the class docstring.
        """
        if min_count < 1:
            raise ConfigError(f"`min_count` must be >= 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ConfigError(f"`max_size` must be >= 1 or None, got {max_size}")
        counter = tokens if isinstance(tokens, Counter) else Counter(str(t) for t in tokens)
        kept = sorted(
            ((c, t) for t, c in counter.items() if c >= min_count), key=lambda x: (-x[0], x[1])
        )
        if max_size is not None:
            kept = kept[:max_size]
        return cls([t for _, t in kept], num_hash_buckets, [c for c, _ in kept])

    def __len__(self) -> int:
        """Size of the index space: specials + known tokens + hash buckets."""
        return NUM_SPECIALS + len(self.tokens) + self.num_hash_buckets

    def __contains__(self, token: str) -> bool:
        return str(token) in self._index

    def encode(self, tokens: Iterable[str]) -> tuple[np.ndarray, int]:
        """Map tokens to indices.

        Returns:
            (indices (N,) int64, number of unknown tokens). Unknown tokens go to their hash
            bucket when ``num_hash_buckets > 0``, else to OOV; either way they are counted.
        """
        get = self._index.get
        out = np.fromiter((get(str(t), -1) for t in tokens), dtype=np.int64)
        unknown = out < 0
        n_unknown = int(unknown.sum())
        if n_unknown:
            if self.num_hash_buckets:
                base = NUM_SPECIALS + len(self.tokens)
                toks = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens)
                out[unknown] = [base + self._bucket(str(t)) for t in toks[unknown]]
            else:
                out[unknown] = OOV
        return out, n_unknown

    def _bucket(self, token: str) -> int:
        # crc32 is stable across processes and Python versions (unlike hash()).
        return zlib.crc32(token.encode("utf-8")) % self.num_hash_buckets

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Indices back to tokens (specials and hash buckets as ``[...]`` markers)."""
        out = []
        n_known = len(self.tokens)
        for i in indices:
            i = int(i)
            if i < NUM_SPECIALS:
                out.append(SPECIAL_TOKENS[i])
            elif i < NUM_SPECIALS + n_known:
                out.append(self.tokens[i - NUM_SPECIALS])
            elif i < len(self):
                out.append(f"[HASH_{i - NUM_SPECIALS - n_known}]")
            else:
                raise IndexError(f"index {i} is outside the vocabulary (size {len(self)})")
        return out

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "num_hash_buckets": self.num_hash_buckets,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(list(d["tokens"]), int(d.get("num_hash_buckets", 0)), d.get("counts"))


@dataclass
class VocabSet:
    """The vocabularies an encoder needs: items, and optionally actions and categories."""

    items: Vocab
    actions: Vocab | None = None
    categories: Vocab | None = None

    def to_dict(self) -> dict:
        return {
            "items": self.items.to_dict(),
            "actions": self.actions.to_dict() if self.actions else None,
            "categories": self.categories.to_dict() if self.categories else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> VocabSet:
        def opt(key: str) -> Vocab | None:
            return Vocab.from_dict(d[key]) if d.get(key) else None

        return cls(Vocab.from_dict(d["items"]), opt("actions"), opt("categories"))

    def save(self, path: str | Path) -> None:
        """Write as JSON (UTF-8)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> VocabSet:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def build_vocabs(
    log: EventLog,
    *,
    min_count: int = 1,
    max_size: int | None = None,
    num_hash_buckets: int = 0,
) -> VocabSet:
    """Item (and action / category, when the log has them) vocabularies of an event log.

    ``min_count``, ``max_size`` and ``num_hash_buckets`` apply to items; actions and
    categories keep every value seen. Counting runs in Arrow, not Python.
    """
    table = log.dataset.data.table

    def counts(column: pa.ChunkedArray) -> Counter:
        # a null value is the token "None" (what `Vocab.encode` looks a null up as)
        vc = pc.value_counts(column)
        values = (str(v) for v in vc.field("values").to_pylist())
        return Counter(dict(zip(values, vc.field("counts").to_pylist())))

    items = Vocab.build(
        counts(table.column(ITEM)),
        min_count=min_count,
        max_size=max_size,
        num_hash_buckets=num_hash_buckets,
    )
    actions = Vocab.build(counts(table.column(ACTION))) if log.has(ACTION) else None
    categories = None
    if log.has(CATEGORY):
        split = pc.list_flatten(
            pc.split_pattern(table.column(CATEGORY).combine_chunks(), CATEGORY_SEP)
        )
        cat_counts = counts(split)
        cat_counts.pop("", None)
        categories = Vocab.build(cat_counts)
    return VocabSet(items, actions, categories)
