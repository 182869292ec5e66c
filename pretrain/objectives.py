"""Next-item losses with the item embedding table as a tied output layer.

Every loss takes the hidden states at the target positions ``h`` (N, D), the item table
``item_emb`` (V, D) (``UserEncoder.embeddings.item_vectors()``) and the target item indices
``targets`` (N,), and returns PER-EXAMPLE losses (N,) so that a weighting (DRO) can be applied
on top. Indices 0, 1, 2 are PAD / MASK / OOV (``userfm.data.vocab``): they are never
predicted and never drawn as negatives; callers remove positions whose target is one of them
before calling (a special target gets an infinite full-softmax loss).

- :func:`full_softmax_loss`: exact cross-entropy over every real item (small catalogues);
  with :func:`future_targets`, over each of the next few items.
- :func:`sampled_softmax_loss`: softmax over the target and shared sampled negatives
  (uniform, log-uniform, in-batch or mixed), logQ-corrected, accidental hits masked
  (large catalogues).
- :func:`bce_loss`: SASRec's binary cross-entropy with one negative per position.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from userfm.data.vocab import NUM_SPECIALS
from userfm.errors import ConfigError, check_int
from userfm.item_blocks import block_positions, fill_positions

Sampler = Literal["uniform", "log_uniform", "all", "in_batch", "mixed"]
SAMPLERS = ("uniform", "log_uniform", "all", "in_batch", "mixed")
LossKind = Literal["full", "sampled", "bce"]
LOSS_KINDS = ("full", "sampled", "bce")


def _check_inputs(h: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor) -> None:
    if h.dim() != 2:
        raise ConfigError(f"`h` must be (N, D), got shape {tuple(h.shape)}")
    if item_emb.dim() != 2 or item_emb.shape[1] != h.shape[1]:
        raise ConfigError(
            f"`item_emb` must be (V, D) with D = h.shape[1] = {h.shape[1]}, "
            f"got shape {tuple(item_emb.shape)}"
        )
    if item_emb.shape[0] <= NUM_SPECIALS:
        raise ConfigError(
            f"`item_emb` has {item_emb.shape[0]} rows: at least one real item is needed after "
            f"the {NUM_SPECIALS} specials (PAD, MASK, OOV)"
        )
    if targets.shape != h.shape[:1]:
        raise ConfigError(
            f"`targets` must be (N,) with N = h.shape[0] = {h.shape[0]}, "
            f"got shape {tuple(targets.shape)}"
        )


def _num_real(num_items: int) -> int:
    if num_items <= NUM_SPECIALS:
        raise ConfigError(
            f"`num_items` must be > {NUM_SPECIALS} (the specials PAD, MASK, OOV), got {num_items}"
        )
    return num_items - NUM_SPECIALS


# ---- exact softmax -------------------------------------------------------------------------
def item_rows(item_emb: torch.Tensor, index: torch.Tensor, sparse_grad: bool) -> torch.Tensor:
    """``item_emb[index]`` (index shape + (D,)); with ``sparse_grad`` the gradient that reaches
    ``item_emb`` is a sparse tensor of the rows read, not a dense (V, D) one (a step at 10^6
    items then costs the rows it reads; see `userfm.pretrain.lazy_adamw`)."""
    return F.embedding(index, item_emb, sparse=sparse_grad)


def full_softmax_loss(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
    logit_offset: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of the target(s) over every real item.

    Args:
        h: (N, D) hidden states at the target positions.
        item_emb: (V, D) item embeddings (tied output layer).
        targets: (N,) int64 target item indices, each >= 3; or (N, K) several targets per
            position (see :func:`future_targets`), 0 where a slot is empty.
        exclude: optional (N, S) int64 item indices each row leaves out of its softmax (e.g.
            the items already in its history, see :func:`seen_items`), 0 in unused slots; a
            row's own targets are never left out.
        logit_offset: optional (V,) added to every row's logits (a logit adjustment, e.g.
            DRO's ``-log(w_c / p_c)`` of each item's class: training under the adjusted
            logits fits the raw logits to the reweighted class distribution; Menon et al.
            2021, "Long-tail learning via logit adjustment").
        chunk_size: compute the softmax over blocks of this many items (`chunked_log_z`):
            the (N, V) logits are never held whole, in the forward or the backward pass, so
            memory grows with N x chunk_size instead of N x V (issue 20: catalogues of 10^5
            to 10^7 items). None, or a catalogue no larger than one block: one block.

    Returns:
        (N,) float32 ``-log softmax(h @ item_emb.T)[target]``, the specials (indices 0..2)
        and the excluded items left out of the softmax; (N, K) with (N, K) targets, 0 in the
        empty slots (the logits are computed once per position, not once per target).
    """
    multi = targets.dim() == 2
    _check_inputs(h, item_emb, targets[:, 0] if multi else targets)
    if logit_offset is not None:
        if logit_offset.shape != (item_emb.shape[0],):
            raise ConfigError(
                f"`logit_offset` must be (V,) = ({item_emb.shape[0]},), got "
                f"{tuple(logit_offset.shape)}"
            )
        logit_offset = logit_offset.float()
    if exclude is not None and (exclude.dim() != 2 or exclude.shape[0] != len(h)):
        raise ConfigError(
            f"`exclude` must be (N, S) with N = {len(h)}, got shape {tuple(exclude.shape)}"
        )
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        if chunk_size < item_emb.shape[0]:
            slots = targets if multi else targets[:, None]  # (N, K)
            target_logits = torch.einsum("nd,nkd->nk", h, item_emb[slots]).float()  # (N, K)
            if logit_offset is not None:
                target_logits = target_logits + logit_offset[slots]
            log_z = chunked_log_z(h, item_emb, slots, exclude, logit_offset, chunk_size)  # (N,)
            # a special target (OOV) is outside the softmax: an infinite loss, as unchunked
            target_logits = target_logits.masked_fill(slots < NUM_SPECIALS, -math.inf)
            loss = log_z[:, None] - target_logits  # (N, K)
            return torch.where(slots > 0, loss, torch.zeros_like(loss)) if multi else loss[:, 0]
    logits = (h @ item_emb.T).float()  # (N, V); float32 even under bf16 autocast
    if logit_offset is not None:
        logits = logits + logit_offset
    if exclude is not None:
        # (N, V) masks, not a scatter of the target logits back into place: with a target
        # repeated in a row (future window, repeat events) that scatter sent the target's
        # gradient to each copy, doubling it (found by the chunked softmax's test, issue 20)
        slots = targets if multi else targets[:, None]  # (N, K)
        left_out = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, exclude, True)
        left_out.scatter_(1, slots, False)  # a target is never left out (repeat events)
        logits = logits.masked_fill(left_out, -math.inf)
    logits[:, :NUM_SPECIALS] = -math.inf
    if not multi:
        return F.cross_entropy(logits, targets, reduction="none")  # (N,)
    log_p = logits.log_softmax(-1).gather(1, targets)  # (N, K); empty slots gather -inf
    return torch.where(targets > 0, -log_p, torch.zeros_like(log_p))  # (N, K)


#: the logit of an item left out of a chunked softmax (exp() of it is exactly 0 in float32)
LEFT_OUT = -1e30


def chunked_log_z(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None,
    logit_offset: torch.Tensor | None,
    chunk_size: int,
) -> torch.Tensor:
    """``log sum_v exp(logit[n, v])`` over the real items, one block of ``chunk_size`` items
    at a time: each block's (N, chunk) logits reduce to an (N,) log-sum-exp and are freed;
    the backward pass recomputes them block by block (activation checkpointing), so neither
    pass holds the (N, V) logits. Exactly the normaliser `full_softmax_loss` uses.

    Args:
        h: (N, D) states. item_emb: (V, D). targets: (N, K) items never excluded, 0 = none.
        exclude: (N, S) items each row leaves out (0 = none), or None.
        logit_offset: (V,) float32 added to the logits, or None.
        chunk_size: items per block.

    Returns:
        (N,) float32.
    """
    from torch.utils.checkpoint import checkpoint

    # split once (the specials are never in the softmax): a slice per block would give each
    # block's backward a zero (V, D) gradient of its own, O(V^2 D / chunk) work in all
    blocks = item_emb[NUM_SPECIALS:].split(chunk_size)
    offsets = (
        [None] * len(blocks)
        if logit_offset is None
        else logit_offset[NUM_SPECIALS:].split(chunk_size)
    )
    a_target = None if exclude is None else (exclude[:, :, None] == targets[:, None]).any(-1)
    parts, lo = [], NUM_SPECIALS
    for block, offset in zip(blocks, offsets, strict=True):
        size = len(block)
        # (N, S) in-block positions to leave out, size = none
        skip = None if exclude is None else block_positions(exclude, lo, size, spare=a_target)
        parts.append(
            checkpoint(
                _block_log_z, h, block, offset, skip, use_reentrant=False, preserve_rng_state=False
            )
        )
        lo += size
    return torch.logsumexp(torch.stack(parts, dim=1), dim=1)  # (N,)


def _block_log_z(
    h: torch.Tensor, block: torch.Tensor, offset: torch.Tensor | None, skip: torch.Tensor | None
) -> torch.Tensor:
    """(N,) log-sum-exp of one block's logits (N, b), the ``skip`` (N, S) positions (b =
    none) left out. They get a huge finite negative logit rather than -inf: exp() gives them 0
    all the same, and a block whose every item is left out still has a finite log-sum-exp,
    whose gradient is 0 instead of NaN."""
    logits = (h @ block.T).float()  # (N, b)
    if offset is not None:
        logits = logits + offset
    if skip is not None:
        logits = fill_positions(logits, skip, LEFT_OUT)
    return torch.logsumexp(logits, dim=1)


def seen_items(items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T) input items, (B, T) bool positions with a target -> (N, T) int64: row n (the
    n-th True of ``valid``, row-major) lists the items at or before its position, 0 after.

    Evaluation filters the items a user has already seen, so a softmax that also ranks them
    while training spends capacity on pushing them down; leaving them out of the training
    softmax trains the ranking the evaluation scores. PAD (index 0) counts as seen; the
    softmax drops the specials anyway. The lists feed ``full_softmax_loss(exclude=...)``, which
    scatters them into the logits: cheaper than an (N, V) mask.
    """
    rows, cols = valid.nonzero(as_tuple=True)  # (N,), (N,)
    position = torch.arange(items.shape[1], device=items.device)  # (T,)
    return items[rows] * (position <= cols[:, None])  # (N, T)


def future_targets(targets: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T) next-item targets -> (B, T, window): slot j holds the target of position t + j,
    i.e. the (j+1)-th item after position t (0 past the row's end).

    Training every position on the next ``window`` items instead of the next one only suits
    logs whose order within a session is arbitrary: in MovieLens half of the consecutive
    ratings of a user share one timestamp, so which of them comes "next" is noise (the dense
    all-action loss of PinnerFormer, Pancha et al. 2022, trains on a future window the same
    way). ``window=1`` gives ``targets[..., None]``.
    """
    if window < 1:
        raise ConfigError(f"`window` must be >= 1, got {window}")
    if targets.dim() != 2:
        raise ConfigError(f"`targets` must be (B, T), got shape {tuple(targets.shape)}")
    padded = F.pad(targets, (0, window - 1))  # (B, T + window - 1)
    out = padded.unfold(1, window, 1)  # (B, T, window)
    return out * (targets > 0)[..., None]  # no slots where the position has no target


# ---- proposal distributions and their log q -------------------------------------------------
def uniform_log_q(num_items: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(V,) log-probabilities of the uniform proposal over real items (-inf at the specials)."""
    num_real = _num_real(num_items)
    log_q = torch.full((num_items,), -math.log(num_real), device=device)
    log_q[:NUM_SPECIALS] = -math.inf
    return log_q


def log_uniform_log_q(num_items: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(V,) log-probabilities of the log-uniform (Zipf) proposal over real items.

    Items are ranked by index (vocabularies put the most frequent first): the item of rank
    ``r = index - 3`` has ``q(r) = log((r + 2) / (r + 1)) / log(R + 1)`` for R real items, the
    proposal of TensorFlow's ``log_uniform_candidate_sampler``. -inf at the specials.
    """
    num_real = _num_real(num_items)
    r = torch.arange(num_real, dtype=torch.float64, device=device)
    q = torch.log1p(1.0 / (r + 1.0)) / math.log(num_real + 1.0)  # log((r+2)/(r+1)) / log(R+1)
    log_q = torch.full((num_items,), -math.inf, dtype=torch.float64, device=device)
    log_q[NUM_SPECIALS:] = q.log()
    return log_q.float()


def log_q_from_counts(counts: torch.Tensor, *, smoothing: float = 1.0) -> torch.Tensor:
    """(V,) log unigram (popularity) probabilities of the items, for in-batch negatives.

    In-batch negatives are the batch's own targets, so an item is drawn in proportion to its
    frequency; Yi et al. (2019, "Sampling-bias-corrected neural modeling") subtract this
    log q from the logits so that popular items are not over-penalised.

    Args:
        counts: (V,) training frequency of each item index (the specials' entries are ignored;
            ``Vocab.counts`` lists only known tokens: prepend 3 zeros).
        smoothing: added to every real item's count, so items unseen in training (count 0)
            get a finite log q instead of -inf.

    Returns:
        (V,) float32 ``log((counts + smoothing) / sum)`` over real items, -inf at the specials.
    """
    if counts.dim() != 1:
        raise ConfigError(f"`counts` must be (V,), got shape {tuple(counts.shape)}")
    _num_real(len(counts))
    if smoothing < 0:
        raise ConfigError(f"`smoothing` must be >= 0, got {smoothing}")
    real = counts[NUM_SPECIALS:].double() + smoothing
    if bool((real < 0).any()) or not bool(torch.isfinite(real).all()):
        raise ConfigError("`counts` must be finite and >= 0")
    total = real.sum()
    if total <= 0:
        raise ConfigError("`counts` of the real items sum to 0: pass smoothing > 0")
    log_q = torch.full((len(counts),), -math.inf, dtype=torch.float64, device=counts.device)
    log_q[NUM_SPECIALS:] = (real / total).log()
    return log_q.float()


def proposal_log_q(
    sampler: Sampler,
    num_items: int,
    *,
    counts: torch.Tensor | None = None,
    num_negatives: int = 0,
    batch_size: int = 0,
) -> torch.Tensor:
    """(V,) the log q that matches ``sampler`` in :func:`sampled_softmax_loss`.

    Up to a constant (which the softmax ignores), log q of an item is the log of the expected
    number of times it appears among the negatives: ``"uniform"`` / ``"all"``:
    :func:`uniform_log_q`; ``"log_uniform"``: :func:`log_uniform_log_q`; ``"in_batch"``:
    :func:`log_q_from_counts` (popularity); ``"mixed"``: ``log(M / R + N · pop)`` for M
    uniform draws over R real items and N in-batch targets (pass ``num_negatives`` = M and
    ``batch_size`` = N, the number of targets of the step).

    Args:
        sampler: as in :func:`sampled_softmax_loss`.
        num_items: V.
        counts: (V,) item training counts, for ``"in_batch"`` and ``"mixed"``.
        num_negatives: M, for ``"mixed"``.
        batch_size: N, for ``"mixed"``.
    """
    if sampler in ("uniform", "all"):
        return uniform_log_q(num_items)
    if sampler == "log_uniform":
        return log_uniform_log_q(num_items)
    if sampler not in SAMPLERS:
        raise ConfigError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
    if counts is None:
        raise ConfigError(f"`counts` (V,) is required for sampler={sampler!r}")
    popularity = log_q_from_counts(counts)
    if sampler == "in_batch":
        return popularity
    if num_negatives < 1 or batch_size < 1:
        raise ConfigError(
            "`num_negatives` and `batch_size` must be >= 1 for sampler='mixed', "
            f"got {num_negatives} and {batch_size}"
        )
    expected = (
        num_negatives * uniform_log_q(num_items, device=counts.device).exp()
        + batch_size * popularity.exp()
    )
    return expected.log()  # -inf at the specials (both terms are 0 there)


def draw_negatives(
    num_items: int,
    num_negatives: int,
    *,
    sampler: Literal["uniform", "log_uniform", "all"] = "uniform",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw negatives shared by every row of a batch, with replacement.

    Args:
        num_items: V, the size of the item index space (specials included).
        num_negatives: M, the number of draws (ignored by ``"all"``).
        sampler: ``"uniform"`` over real items; ``"log_uniform"`` over the popularity rank
            (= index order, see :func:`log_uniform_log_q`); ``"all"``: every real item once
            (deterministic; makes the sampled softmax exact).
        generator: random generator on ``device`` (None: torch's default one).
        device: where to draw.

    Returns:
        (M,) int64 item indices in [3, V) (``(V - 3,)`` for ``"all"``).
    """
    num_real = _num_real(num_items)
    if sampler == "all":
        return torch.arange(NUM_SPECIALS, num_items, device=device)
    if num_negatives < 1:
        raise ConfigError(f"`num_negatives` must be >= 1, got {num_negatives}")
    if sampler == "uniform":
        ranks = torch.randint(
            num_real, (num_negatives,), generator=generator, device=device
        )  # (M,)
    elif sampler == "log_uniform":
        # inverse CDF: P(rank <= k) = log(k + 2) / log(R + 1)
        u = torch.rand(num_negatives, generator=generator, device=device, dtype=torch.float64)
        ranks = (torch.exp(u * math.log(num_real + 1.0)).floor().long() - 1).clamp(0, num_real - 1)
    else:
        raise ConfigError(
            f"`sampler` must be 'uniform', 'log_uniform' or 'all' here, got {sampler!r}"
        )
    return ranks + NUM_SPECIALS


# ---- sampled softmax ------------------------------------------------------------------------
def candidate_softmax_loss(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    *,
    item_log_q: torch.Tensor | None = None,
    sparse_grad: bool = False,
) -> torch.Tensor:
    """Softmax over each row's target and a set of negatives shared by all rows.

    A negative equal to the row's target (an accidental hit) is masked out, so the target is
    counted exactly once. With ``item_log_q``, ``log q`` of each candidate (the target
    included) is subtracted from its logit (logQ correction, Yi et al. 2019), which makes the
    sampled softmax a consistent estimate of the full one.

    Args:
        h: (N, D) hidden states at the target positions.
        item_emb: (V, D) item embeddings.
        targets: (N,) int64 target item indices (>= 3).
        negatives: (M,) int64 item indices (>= 3), shared by all rows; duplicates allowed.
        item_log_q: (V,) log-probability of drawing each item as a negative, or None (no
            correction).
        sparse_grad: ``item_emb``'s gradient as a sparse tensor of the rows read
            (`item_rows`; for `userfm.pretrain.lazy_adamw.LazyAdamW`).

    Returns:
        (N,) float32 ``-log softmax([s_target, s_neg_1, ..., s_neg_M])[0]``.
    """
    _check_inputs(h, item_emb, targets)
    if negatives.dim() != 1:
        raise ConfigError(f"`negatives` must be (M,), got shape {tuple(negatives.shape)}")
    pos = (h * item_rows(item_emb, targets, sparse_grad)).sum(-1).float()  # (N,)
    neg = (h @ item_rows(item_emb, negatives, sparse_grad).T).float()  # (N, M)
    if item_log_q is not None:
        if item_log_q.shape != item_emb.shape[:1]:
            raise ConfigError(
                f"`item_log_q` must be (V,) with V = {item_emb.shape[0]}, "
                f"got shape {tuple(item_log_q.shape)}"
            )
        log_q = item_log_q.float()
        pos = pos - log_q[targets]
        neg = neg - log_q[negatives][None, :]
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], -math.inf)  # accidental hits
    logits = torch.cat([pos[:, None], neg], dim=1)  # (N, 1 + M)
    return torch.logsumexp(logits, dim=1) - pos  # (N,)


def sampled_softmax_loss(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_negatives: int = 256,
    sampler: Sampler = "uniform",
    item_log_q: torch.Tensor | None = None,
    in_batch: bool = False,
    generator: torch.Generator | None = None,
    sparse_grad: bool = False,
) -> torch.Tensor:
    """Sampled softmax with negatives shared across the batch.

    Negatives: ``num_negatives`` draws from ``sampler`` (``"uniform"``, ``"log_uniform"``,
    ``"all"``: every real item, exact), plus the batch's own targets when ``in_batch``.
    Shorthands: ``"in_batch"`` = the batch's targets only (``num_negatives`` ignored);
    ``"mixed"`` = uniform draws + the batch's targets (mixed negative sampling, Yang et al.
    2020). Accidental hits (a negative equal to the row's target, including the row's own
    target among the in-batch ones) are masked.

    ``item_log_q`` should be the log-probability of the proposal that produced the negatives:
    :func:`uniform_log_q` (a constant: no effect), :func:`log_uniform_log_q`, or
    :func:`log_q_from_counts` for in-batch negatives (whose proposal is item popularity).

    Args:
        h: (N, D) hidden states at the target positions.
        item_emb: (V, D) item embeddings.
        targets: (N,) int64 target item indices (>= 3).
        num_negatives: number of drawn negatives (M).
        sampler: see above.
        item_log_q: (V,) log q for the logQ correction, or None (no correction).
        in_batch: also use the batch's targets as negatives.
        generator: random generator on ``h.device`` (None: torch's default one).
        sparse_grad: ``item_emb``'s gradient as a sparse tensor of the rows read.

    Returns:
        (N,) float32 per-example losses.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
    _check_inputs(h, item_emb, targets)
    parts = []
    if sampler != "in_batch":
        proposal = "uniform" if sampler == "mixed" else sampler
        parts.append(
            draw_negatives(
                item_emb.shape[0],
                num_negatives,
                sampler=proposal,
                generator=generator,
                device=h.device,
            )
        )
    if in_batch or sampler in ("in_batch", "mixed"):
        parts.append(targets)
    negatives = torch.cat(parts) if len(parts) > 1 else parts[0]  # (M,)
    return candidate_softmax_loss(
        h, item_emb, targets, negatives, item_log_q=item_log_q, sparse_grad=sparse_grad
    )


# ---- binary cross-entropy (SASRec) ----------------------------------------------------------
def sample_negatives(
    targets: torch.Tensor,
    num_items: int,
    *,
    exclude: torch.Tensor | Sequence[Collection[int]] | None = None,
    generator: torch.Generator | None = None,
    max_rounds: int = 16,
) -> torch.Tensor:
    """One negative per row, uniform over the real items other than the row's target.

    Args:
        targets: (N,) int64 target item indices (>= 3).
        num_items: V, the size of the item index space (specials included).
        exclude: items each row must not get either (e.g. the user's seen items, as SASRec
            does): an (N, S) int64 tensor padded with 0 (e.g. ``batch.items[rows]``), or N
            collections of item indices; None: only the target is excluded.
        generator: random generator on ``targets.device`` (None: torch's default one).
        max_rounds: rejection-sampling rounds before the remaining rows are drawn exactly
            from their allowed items (only matters when a row excludes most of the catalogue).

    Returns:
        (N,) int64 negatives in [3, V), each != its row's target and not in its row's
        ``exclude``.

    Raises:
        ConfigError: a row excludes every real item.
    """
    num_real = _num_real(num_items)
    if targets.dim() != 1:
        raise ConfigError(f"`targets` must be (N,), got shape {tuple(targets.shape)}")
    device = targets.device
    if exclude is None:
        if num_real < 2:
            raise ConfigError("only one real item: there is no negative to sample")
        # uniform over the R - 1 real items != target: draw a rank in [0, R - 1), skip the target
        r = torch.randint(num_real - 1, targets.shape, generator=generator, device=device)
        neg = r + NUM_SPECIALS
        return neg + (neg >= targets).long()
    if not isinstance(exclude, torch.Tensor):
        width = max((len(e) for e in exclude), default=0)
        padded = torch.zeros(len(exclude), max(width, 1), dtype=torch.long)
        for i, e in enumerate(exclude):
            padded[i, : len(e)] = torch.as_tensor(list(e), dtype=torch.long)
        exclude = padded.to(device)
    if exclude.dim() != 2 or exclude.shape[0] != targets.shape[0]:
        raise ConfigError(
            f"`exclude` must be (N, S) with N = {targets.shape[0]}, got shape {tuple(exclude.shape)}"
        )
    banned = torch.cat([targets[:, None], exclude], dim=1)  # (N, 1 + S)

    def is_banned(cand: torch.Tensor) -> torch.Tensor:
        return (cand[:, None] == banned).any(dim=1)  # (N,)

    neg = torch.randint(num_real, targets.shape, generator=generator, device=device) + NUM_SPECIALS
    todo = is_banned(neg)
    for _ in range(max_rounds):
        if not bool(todo.any()):
            return neg
        redraw = torch.randint(num_real, targets.shape, generator=generator, device=device)
        neg = torch.where(todo, redraw + NUM_SPECIALS, neg)
        todo = todo & is_banned(neg)
    for i in todo.nonzero()[:, 0].tolist():  # rows that exclude most items: draw exactly
        allowed = torch.ones(num_items, dtype=torch.bool, device=device)
        allowed[:NUM_SPECIALS] = False
        allowed[banned[i]] = False
        choices = allowed.nonzero()[:, 0]
        if len(choices) == 0:
            raise ConfigError(f"`exclude` row {i} (with its target) bans every real item")
        pick = torch.randint(len(choices), (1,), generator=generator, device=device)
        neg[i] = choices[pick[0]]
    return neg


def bce_loss(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    *,
    sparse_grad: bool = False,
) -> torch.Tensor:
    """SASRec's loss: ``-log σ(s_pos) - log(1 - σ(s_neg))`` (Kang & McAuley, 2018).

    Args:
        h: (N, D) hidden states at the target positions.
        item_emb: (V, D) item embeddings.
        targets: (N,) int64 target item indices (>= 3).
        negatives: (N,) one negative per row (see :func:`sample_negatives`), or (N, K): the
            K negative terms are summed.
        sparse_grad: ``item_emb``'s gradient as a sparse tensor of the rows read.

    Returns:
        (N,) float32 per-example losses (computed with softplus, stable for any score).
    """
    _check_inputs(h, item_emb, targets)
    if negatives.shape[:1] != targets.shape or negatives.dim() not in (1, 2):
        raise ConfigError(
            f"`negatives` must be (N,) or (N, K) with N = {targets.shape[0]}, "
            f"got shape {tuple(negatives.shape)}"
        )
    s_pos = (h * item_rows(item_emb, targets, sparse_grad)).sum(-1).float()  # (N,)
    neg = negatives if negatives.dim() == 2 else negatives[:, None]  # (N, K)
    s_neg = torch.einsum("nd,nkd->nk", h, item_rows(item_emb, neg, sparse_grad)).float()
    # -log σ(x) = softplus(-x); -log(1 - σ(x)) = softplus(x)
    return F.softplus(-s_pos) + F.softplus(s_neg).sum(dim=1)


# ---- dispatcher -----------------------------------------------------------------------------
def next_item_loss(
    h: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: LossKind = "full",
    num_negatives: int = 256,
    sampler: Sampler = "uniform",
    item_log_q: torch.Tensor | None = None,
    in_batch: bool = False,
    exclude: torch.Tensor | Sequence[Collection[int]] | None = None,
    logit_offset: torch.Tensor | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    sparse_grad: bool = False,
) -> torch.Tensor:
    """Per-example next-item losses (N,) of the chosen ``kind``; the one entry point the
    pretraining module calls.

    ``"full"``: :func:`full_softmax_loss` (``exclude`` (N, S) left out of each softmax,
    ``logit_offset``, ``chunk_size``; (N, K) ``targets`` give (N, K) losses); ``"sampled"``:
    :func:`sampled_softmax_loss` with ``num_negatives``, ``sampler``, ``item_log_q``,
    ``in_batch``; ``"bce"``: :func:`bce_loss` with one negative per row from
    :func:`sample_negatives` (``exclude``: items that are no negative of their row). Shapes
    as there. ``sparse_grad`` (``sampled`` / ``bce``, which read a few rows of ``item_emb``):
    its gradient as a sparse tensor of those rows (`item_rows`).
    """
    if kind == "full":
        if sparse_grad:
            raise ConfigError("`sparse_grad` needs a loss that reads some rows: sampled or bce")
        return full_softmax_loss(h, item_emb, targets, exclude, logit_offset, chunk_size)
    if kind == "sampled":
        return sampled_softmax_loss(
            h,
            item_emb,
            targets,
            num_negatives=num_negatives,
            sampler=sampler,
            item_log_q=item_log_q,
            in_batch=in_batch,
            generator=generator,
            sparse_grad=sparse_grad,
        )
    if kind == "bce":
        negatives = sample_negatives(
            targets, item_emb.shape[0], exclude=exclude, generator=generator
        )
        return bce_loss(h, item_emb, targets, negatives, sparse_grad=sparse_grad)
    raise ConfigError(f"`kind` must be one of {LOSS_KINDS}, got {kind!r}")
