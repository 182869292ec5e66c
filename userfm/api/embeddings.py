"""`UserEmbeddings`: user ids + a float32 matrix, with export and cosine nearest neighbours."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from userfm.errors import ConfigError, DataError, UnknownUserError, check_k


def sum_stats(stats: Iterable[dict]) -> dict:
    """Key-wise sum of per-chunk counters (users, events, oov_items, ...)."""
    total: dict = {}
    for part in stats:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass
class UserEmbeddings:
    """Embeddings of N users.

    Attributes:
        user_ids: (N,) user ids, row order of ``vectors``.
        vectors: (N, D) float32.
        stats: what embedding did (users, events, oov_items, truncated_users).
        text_vectors: (N, text_dim) float32 unit rows: the users in the text space of a
            model with a user-text head (`userfm.encoder.user_text`), for `search`; or None.
        text_model: the text model of that space (queries are embedded with it).
    """

    user_ids: list[str]
    vectors: np.ndarray
    stats: dict = field(default_factory=dict)
    text_vectors: np.ndarray | None = None
    text_model: str | None = None

    def __post_init__(self) -> None:
        self.user_ids = [str(u) for u in self.user_ids]
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.user_ids):
            raise ValueError(
                f"vectors must be (N, D) with N = {len(self.user_ids)} user ids, got {self.vectors.shape}"
            )
        if self.text_vectors is not None:
            self.text_vectors = np.ascontiguousarray(self.text_vectors, dtype=np.float32)
            if len(self.text_vectors) != len(self.user_ids):
                raise ValueError(
                    f"text_vectors must have one row per user ({len(self.user_ids)}), got "
                    f"{len(self.text_vectors)}"
                )
        self._row: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __getitem__(self, user: str) -> np.ndarray:
        """(D,) embedding of one user."""
        return self.vectors[self._index_of(user)]

    def _index_of(self, user: str) -> int:
        if self._row is None:
            self._row = {u: i for i, u in enumerate(self.user_ids)}
        try:
            return self._row[str(user)]
        except KeyError:
            raise UnknownUserError(f"user {user!r} has no embedding here") from None

    def to_numpy(self) -> np.ndarray:
        """(N, D) float32 matrix (no copy)."""
        return self.vectors

    def to_pandas(self):
        """DataFrame with columns ``user`` and ``embedding`` (a float32 array per row)."""
        import pandas as pd

        return pd.DataFrame({"user": self.user_ids, "embedding": list(self.vectors)})

    def to_arrow(self) -> pa.Table:
        """Arrow table: ``user`` string, ``embedding`` fixed-size list<float32>[D], and with
        text vectors ``text_embedding`` (fixed-size list<float32>) and the text model in the
        schema metadata (``userfm.text_model``)."""
        columns = {
            "user": pa.array(self.user_ids, pa.string()),
            "embedding": _fixed_lists(self.vectors),
        }
        if self.text_vectors is None:
            return pa.table(columns)
        columns["text_embedding"] = _fixed_lists(self.text_vectors)
        return pa.table(columns).replace_schema_metadata(
            {"userfm.text_model": self.text_model or ""}
        )

    def to_parquet(self, path: str | Path) -> Path:
        """Write to parquet (columns as in `to_arrow`), through a temporary file renamed at
        the end, so a kill never leaves a file without its footer. Returns the path."""
        from userfm.outputs import atomic_output

        path = Path(path)
        with atomic_output(path) as tmp:
            pq.write_table(self.to_arrow(), tmp)
        return path

    @classmethod
    def from_parquet(cls, path: str | Path) -> UserEmbeddings:
        """Read a file written by `to_parquet` (or by `userfm embed`)."""
        t = pq.read_table(path)
        if "user" not in t.column_names or "embedding" not in t.column_names:
            raise DataError(
                f"{path} is not a userfm embeddings file (needs columns user, embedding)"
            )
        vectors = _matrix(t.column("embedding"))
        if "text_embedding" not in t.column_names:
            return cls(t.column("user").to_pylist(), vectors)
        model = (t.schema.metadata or {}).get(b"userfm.text_model", b"").decode() or None
        return cls(
            t.column("user").to_pylist(), vectors, {}, _matrix(t.column("text_embedding")), model
        )

    @classmethod
    def concat(cls, parts: Sequence[UserEmbeddings]) -> UserEmbeddings:
        """Stack parts (e.g. the chunks of `UserEncoder.iter_embed`); stats are summed."""
        if not parts:
            raise ValueError("nothing to concatenate")
        texts = [p.text_vectors for p in parts]
        return cls(
            [u for p in parts for u in p.user_ids],
            np.concatenate([p.vectors for p in parts]),
            sum_stats(p.stats for p in parts),
            None if any(t is None for t in texts) else np.concatenate(texts),
            parts[0].text_model,
        )

    def search(self, query: str, k: int = 10, **encode: Any) -> list[tuple[str, float]]:
        """The ``k`` users whose vectors in the text space are nearest a text query (e.g.
        ``"sci-fi and animation"``), best first, with their cosine.

        Args:
            query: the words.
            k: users returned.
            **encode: `userfm.encoder.text_model.encode_texts` options (cache_dir, ...).

        Raises:
            ConfigError: these embeddings carry no text vectors (the model had no user-text
                head: `userfm.encoder.user_text.fit_user_text`), or ``k`` < 1.
        """
        from userfm.encoder.text_model import encode_texts

        k = check_k(k)
        if self.text_vectors is None or self.text_model is None:
            raise ConfigError(
                "these embeddings have no text vectors: embed with a model that has a "
                "user-text head (userfm.encoder.user_text.fit_user_text)"
            )
        q = encode_texts([query], model=self.text_model, progress=False, **encode)[0]
        sims = self.text_vectors @ q  # (N,) both unit vectors: cosines
        top = np.argsort(-sims, kind="stable")[: min(k, len(sims))]
        return [(self.user_ids[i], float(sims[i])) for i in top]

    def nearest(self, query: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` users with the highest cosine similarity to a user id or a (D,) vector.

        A user id query excludes that user from its own neighbours.

        Raises:
            UnknownUserError: a user id that has no embedding here.
            ConfigError: ``k`` is not an integer >= 1.
            ValueError: a vector of another shape than (D,).
        """
        k = check_k(k)
        exclude = None
        if isinstance(query, str):
            exclude = self._index_of(query)
            query = self.vectors[exclude]
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self.dim,):
            raise ValueError(f"query vector must have shape ({self.dim},), got {q.shape}")
        norms = np.linalg.norm(self.vectors, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
        sims = self.vectors @ q / np.maximum(norms, 1e-12)
        if exclude is not None:
            sims[exclude] = -np.inf
        k = min(k, len(sims) - (exclude is not None))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")][:k]
        return [(self.user_ids[i], float(sims[i])) for i in top]


def _fixed_lists(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 -> N fixed-size lists of D float32."""
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A column of equal-length float lists -> (N, D) float32."""
    arr = column.combine_chunks()
    dim = arr.type.list_size if pa.types.is_fixed_size_list(arr.type) else len(arr[0])
    return np.asarray(arr.flatten().to_numpy(), dtype=np.float32).reshape(len(arr), dim)
