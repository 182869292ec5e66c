"""Full-ranking ranks of target items over a catalogue, one block of items at a time.

Scoring every item for N queries at once holds an (N, V) matrix: 6,400 validation positions
x 10^6 items is 25 GB. `target_ranks` holds (N, block) at a time, so memory stays bounded
whatever the catalogue size (issue 20); with ``block >= V`` it is the one-matrix computation.
The ranks feed `userfm.eval.retrieval.hit_rate` / `ndcg`.
"""

from __future__ import annotations

import math

import torch

from userfm.data.vocab import NUM_SPECIALS
from userfm.errors import check_int
from userfm.item_blocks import block_positions, fill_positions_


@torch.no_grad()
def target_ranks(
    queries: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    seen: torch.Tensor | None = None,
    *,
    block: int = 65536,
) -> torch.Tensor:
    """1-based rank of each query's target among the real items (specials never ranked).

    Args:
        queries: (N, D) user states.
        item_vectors: (V, D) the output layer (``UserEncoder.embeddings.item_vectors()``).
        targets: (N,) int64 target items.
        seen: optional (N, S) int64 items filtered from each query's ranking (its history;
            0 = none); a target among them counts as a miss.
        block: items scored at a time.

    Returns:
        (N,) float64 ranks, ``inf`` for a miss (a seen or special target): the number of
        unfiltered items scoring strictly above the target, plus 1, as the (N, V)
        computation gives them.
    """
    block = check_int("block", block, minimum=1)
    V = item_vectors.shape[0]
    spans = [(lo, min(lo + block, V)) for lo in range(NUM_SPECIALS, V, block)]
    # pass 1: each target's score, from the very matmul pass 2 repeats (same shapes, same
    # rounding), so an item's score is compared with the target's exactly as in one matrix
    target_score = torch.full((len(targets),), -math.inf, device=queries.device)
    for lo, hi in spans:
        inside = (targets >= lo) & (targets < hi)
        if inside.any():
            scores = (queries @ item_vectors[lo:hi].T).float()  # (N, b)
            target_score[inside] = scores[inside].gather(1, (targets[inside] - lo)[:, None])[:, 0]
    above = torch.zeros(len(targets), dtype=torch.long, device=queries.device)
    for lo, hi in spans:  # pass 2: how many unfiltered items score above the target
        scores = (queries @ item_vectors[lo:hi].T).float()  # (N, b)
        if seen is not None:
            fill_positions_(scores, block_positions(seen, lo, hi - lo), -math.inf)
        above += (scores > target_score[:, None]).sum(1)
    rank = (above + 1).double()
    rank[targets < NUM_SPECIALS] = math.inf  # OOV (a rare item mapped away): never ranked
    if seen is not None:
        rank[(seen == targets[:, None]).any(1)] = math.inf
    return rank
