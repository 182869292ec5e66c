"""Top-k item recommendation from user histories with the encoder's tied item table.

A user's score for item i is ``embedding · item_embedding[i]`` (`UserEncoder.item_scores`), the
same dot product the next-item objective trains. Specials (PAD/MASK/OOV) and hash buckets are
never recommended; with ``exclude_seen`` every item of the user's full history is removed too.
Batching (chunks, length sorting, no grad) is shared with the embedding API (`run_chunks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from userfm.api.embed import HistoriesLike, run_chunks
from userfm.api.embeddings import sum_stats
from userfm.data.log import UserHistory
from userfm.data.schema import EventSchema
from userfm.data.vocab import NUM_SPECIALS, Vocab
from userfm.errors import ConfigError, DataError, check_int, check_k
from userfm.item_blocks import block_positions, fill_positions_

if TYPE_CHECKING:
    import pandas as pd

    from userfm.encoder.model import UserEncoder

#: items `recommend` scores at a time (a (256, 65,536) float32 block is 64 MiB)
ITEM_BLOCK = 65_536


@dataclass
class Recommendations:
    """Top-k items of N users, best first.

    Attributes:
        user_ids: (N,) user ids, row order of ``item_ids`` / ``scores``.
        item_ids: (N, k) object array of item ids (str). A user with fewer than k
            recommendable items (after removing seen ones) has ``None`` in the last slots.
        scores: (N, k) float32 scores, descending along each row; ``-inf`` where the item
            is ``None``. Equal scores keep the model's item order (stable sort by index).
        stats: what recommending did (users, events, oov_items, truncated_users), if known.
    """

    user_ids: list[str]
    item_ids: np.ndarray
    scores: np.ndarray
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user_ids = [str(u) for u in self.user_ids]
        self.item_ids = np.asarray(self.item_ids, dtype=object)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        n = len(self.user_ids)
        if self.item_ids.ndim != 2 or self.item_ids.shape[0] != n:
            raise ValueError(
                f"item_ids must be (N, k) with N = {n} user ids, got {self.item_ids.shape}"
            )
        if self.scores.shape != self.item_ids.shape:
            raise ValueError(
                f"scores {self.scores.shape} and item_ids {self.item_ids.shape} must match"
            )
        self._row: dict[str, int] | None = None  # user -> row, built by the first lookup

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def k(self) -> int:
        """Slots per user (the requested k, capped at the number of real items)."""
        return self.item_ids.shape[1]

    def __getitem__(self, user: str) -> list[str]:
        """The recommended item ids of one user, best first (``None`` slots dropped)."""
        if self._row is None:  # O(N) once, then O(1) per lookup; a repeated user: first row
            self._row = {}
            for i, u in enumerate(self.user_ids):
                self._row.setdefault(u, i)
        try:
            row = self._row[str(user)]
        except KeyError:
            raise KeyError(f"user {user!r} has no recommendations here") from None
        return [i for i in self.item_ids[row] if i is not None]

    def to_pandas(self) -> pd.DataFrame:
        """Long format: one row per (user, recommended item) with columns ``user``, ``rank``
        (1 = best), ``item`` and ``score``; empty (``None``) slots are left out."""
        import pandas as pd

        n, k = self.item_ids.shape
        keep = (self.item_ids != None).ravel()  # noqa: E711 (elementwise on an object array)
        return pd.DataFrame(
            {
                "user": np.repeat(np.asarray(self.user_ids, dtype=object), k)[keep],
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n)[keep],
                "item": self.item_ids.ravel()[keep],
                "score": self.scores.ravel()[keep],
            }
        )

    @classmethod
    def concat(cls, parts: Sequence[Recommendations]) -> Recommendations:
        """Stack parts with the same k; stats are summed."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(
            [u for p in parts for u in p.user_ids],
            np.concatenate([p.item_ids for p in parts]),
            np.concatenate([p.scores for p in parts]),
            sum_stats(p.stats for p in parts),
        )


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best columns of each row, best first; equal scores by ascending column.

    `torch.topk` picks arbitrarily among ties (and may differ across devices), so its result
    is re-sorted by (score desc, column asc), and rows whose k-th score also occurs outside
    the selection (the (k+1)-th best equals the k-th) are redone with a stable full sort.

    Args:
        scores: (B, V) float scores (``-inf`` for excluded columns).
        k: 1 <= k <= V.

    Returns:
        (values (B, k), columns (B, k) int64).
    """
    V = scores.shape[1]
    if 2 * k >= V:  # a full sort is about as cheap
        values, cols = torch.sort(scores, dim=1, descending=True, stable=True)
        return values[:, :k], cols[:, :k]
    top, cols = torch.topk(scores, k + 1, dim=1)  # (B, k + 1): one past the cut
    ambiguous = top[:, k] == top[:, k - 1]  # (B,) ties across the cut
    values, cols = top[:, :k], cols[:, :k]
    cols, perm = torch.sort(cols, dim=1)  # ascending column ...
    values = values.gather(1, perm)
    values, perm = torch.sort(values, dim=1, descending=True, stable=True)  # ... within ties
    cols = cols.gather(1, perm)
    if ambiguous.any():
        rows = ambiguous.nonzero().squeeze(1)
        v, c = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows], cols[rows] = v[:, :k], c[:, :k]
    return values, cols


def _seen_items(batch: list[UserHistory], vocab: Vocab, device: torch.device) -> torch.Tensor:
    """(B, S) item indices of each user's full history (not only the ``max_len`` the encoder
    reads), 0-padded; unknown items are OOV / hash buckets, outside every block of real
    items, so `block_positions` leaves them out as it leaves the padding."""
    codes = [vocab.encode(h.items)[0] for h in batch]
    seen = np.zeros((len(batch), max(1, max(len(c) for c in codes))), dtype=np.int64)
    for row, c in enumerate(codes):
        seen[row, : len(c)] = c
    return torch.from_numpy(seen).to(device)


def _candidate_rows(vocab: Vocab, candidates: Iterable[str]) -> np.ndarray:
    """(n,) rows among the real items (index - NUM_SPECIALS) of the distinct candidate ids,
    ascending: equal scores keep the model's item order, as in the full ranking.

    Raises:
        ConfigError: ``candidates`` is a single string, or empty.
        DataError: an id the vocabulary does not know (the first few are named).
    """
    if isinstance(candidates, str):
        raise ConfigError(
            f"`candidates` must be a collection of item ids, got the string {candidates!r} "
            "(write [id] for one item)"
        )
    ids = list(dict.fromkeys(str(c) for c in candidates))
    if not ids:
        raise ConfigError("`candidates` is empty: give at least one item id to rank")
    unknown = [i for i in ids if i not in vocab]
    if unknown:
        raise DataError(
            f"{len(unknown)} candidate item id(s) are not in the model's vocabulary (first: "
            f"{unknown[:5]}); add new items with model.add_items(table) first"
        )
    return np.sort(vocab.encode(ids)[0] - NUM_SPECIALS)


def _candidate_index_map(rows: np.ndarray, num_items: int, device: torch.device) -> torch.Tensor:
    """(V,) item index -> the same item's index in the candidates' own index space
    (NUM_SPECIALS + its position among them), 0 for items that are no candidate."""
    remap = torch.zeros(num_items, dtype=torch.long, device=device)  # (V,)
    remap[torch.from_numpy(rows + NUM_SPECIALS).to(device)] = torch.arange(
        NUM_SPECIALS, NUM_SPECIALS + len(rows), device=device
    )
    return remap


def _blockwise_topk(
    model: UserEncoder,
    emb: torch.Tensor,
    item_vectors: torch.Tensor,
    seen: torch.Tensor | None,
    k: int,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` real items per user, scoring ``block`` items at a time.

    Args:
        emb: (B, D) user embeddings.
        item_vectors: (V, D') the real items' output vectors (item index NUM_SPECIALS + j
            is row j).
        seen: (B, S) item indices to leave out per user, 0-padded (`_seen_items`), or None.

    Returns:
        (B, k) scores (-inf where an excluded item fills a slot) and (B, k) row indices of
        ``item_vectors``, best first; ties in ascending item order, as one top-k over all
        items would give.
    """
    num_real = item_vectors.shape[0]
    best: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, k) values, columns
    for start in range(0, num_real, block):  # (B, block) scores at a time, not (B, V)
        stop = min(start + block, num_real)
        scores = model.item_scores(emb, item_vectors[start:stop]).float()  # (B, n)
        if seen is not None:  # the block holds item indices NUM_SPECIALS + [start, stop)
            where = block_positions(seen, NUM_SPECIALS + start, stop - start)
            fill_positions_(scores, where, -torch.inf)
        # the block's own top k: the overall top k is among the blocks' (a column left out
        # of its block's has k better ones in that block alone)
        values, cols = stable_topk(scores, min(k, scores.shape[1]))  # (B, <= k)
        cols = cols + start
        if best is not None:  # earlier blocks first: ties keep ascending item order
            values, cols = torch.cat([best[0], values], 1), torch.cat([best[1], cols], 1)
            values, pick = stable_topk(values, min(k, values.shape[1]))
            cols = cols.gather(1, pick)
        best = values, cols
    assert best is not None, "no real items"  # recommend checks num_real > 0
    return best


def recommend(
    model: UserEncoder,
    histories: HistoriesLike,
    *,
    k: int | None = 10,
    exclude_seen: bool = True,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    schema: EventSchema | None = None,
    item_block: int | None = None,
    candidates: Iterable[str] | None = None,
) -> Recommendations:
    """Recommend the k highest-scoring items to each user.

    Score of item i for a user = last-state embedding · item_embedding[i]
    (``model.item_scores``). Specials (PAD/MASK/OOV) and hash buckets are never
    recommended. The encoder reads at most ``max_len`` recent events, but ``exclude_seen``
    removes every item of the full history given.

    Args:
        model: a `UserEncoder` with vocabularies.
        histories: anything `as_histories` accepts (EventLog, DataFrame, mapping
            ``user -> item ids``, iterable of UserHistory, ...).
        k: items per user; capped at the number of real items. ``None``: the full ranking
            of every real item (seen ones, when excluded, become ``None`` slots at the end).
        exclude_seen: never recommend an item the user already has in ``histories``.
        batch_size: users per forward pass.
        device: where to run (default: CUDA when available, else CPU).
        progress: show a progress bar (users); None: only when stderr is a terminal.
        chunk_size: users read and length-sorted together (default 32 batches).
        schema: column mapping for DataFrame / file / event-dict inputs (default: the
            model's `UserEncoder.training_schema`, else `EventSchema()`).
        item_block: items scored at a time (default `ITEM_BLOCK`, 65,536): memory holds
            (batch_size, item_block + k) scores, not (batch_size, num_items), and a running
            top-k is merged block by block (the same result, ties included). ``k=None`` (the
            full ranking) scores every item at once.
        candidates: rank only these item ids (each must be in the model's vocabulary:
            `UserEncoder.add_items` adds new ones), e.g. today's new items; repeated ids count
            once. None: every real item.

    Returns:
        `Recommendations`: N user ids in input order, (N, k) item ids and scores.

    Raises:
        ConfigError: ``k`` < 1, ``item_block`` < 1, the model has no vocabularies or no
            real items, or ``candidates`` is empty.
        DataError: a candidate id the model does not know.
    """
    k = check_k(k, allow_none=True)
    vocab = model._require_vocabs().items
    rows = None if candidates is None else _candidate_rows(vocab, candidates)
    num_real = len(vocab.tokens) if rows is None else len(rows)  # items ranked
    if num_real == 0:
        raise ConfigError("the item vocabulary has no items to recommend")
    k_eff = num_real if k is None else min(k, num_real)

    item_block = check_int(
        "item_block", ITEM_BLOCK if item_block is None else item_block, minimum=1
    )
    block = num_real if k is None else max(item_block, k_eff)  # items scored at a time
    item_vectors: list[torch.Tensor] = []  # built by the first batch, reused by the rest
    index_map: list[torch.Tensor] = []  # with candidates: likewise

    def head(emb: torch.Tensor, batch: list[UserHistory]) -> tuple[np.ndarray, np.ndarray]:
        if not item_vectors:  # the ranked items' output vectors
            table = model.embeddings.item_vectors()  # (V, D)
            if rows is None:
                item_vectors.append(table[NUM_SPECIALS : NUM_SPECIALS + num_real])
            else:
                item_vectors.append(table[torch.from_numpy(rows + NUM_SPECIALS).to(table.device)])
        seen = _seen_items(batch, vocab, emb.device) if exclude_seen else None
        if seen is not None and rows is not None:  # item index -> its place among candidates
            if not index_map:
                index_map.append(_candidate_index_map(rows, len(vocab), emb.device))
            seen = index_map[0][seen]
        values, cols = _blockwise_topk(model, emb, item_vectors[0], seen, k_eff, block)
        return cols.cpu().numpy(), values.cpu().numpy()

    tokens = np.asarray(vocab.tokens, dtype=object)
    if rows is not None:
        tokens = tokens[rows]
    parts = []
    for chunk in run_chunks(
        model,
        histories,
        head,
        batch_size=batch_size,
        device=device,
        progress=progress,
        chunk_size=chunk_size,
        schema=schema,
        desc="recommending",
    ):
        n = len(chunk.histories)
        cols = np.empty((n, k_eff), dtype=np.int64)
        scores = np.empty((n, k_eff), dtype=np.float32)
        for idx, (c, s) in chunk.outputs:
            cols[idx], scores[idx] = c, s
        item_ids = tokens[cols]
        item_ids[np.isneginf(scores)] = None  # excluded (seen) items fill the tail
        parts.append(
            Recommendations([h.user for h in chunk.histories], item_ids, scores, chunk.stats)
        )
    if not parts:
        raise DataError("no user histories to recommend for")
    return Recommendations.concat(parts)
