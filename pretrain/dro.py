"""Distributionally robust weighting of per-example losses over classes of examples.

BehaveGPT-style DRO (robust to the head/tail imbalance of behaviours): instead of the mean
loss under the empirical class distribution p, minimise the worst case over class
distributions q in a KL ball around p,

    max_{q : KL(q || p) <= ρ}  Σ_c q_c · l_c,

where l_c is the mean loss of class c. The Lagrangian dual (with multiplier λ, the
temperature) is solved by ``q*_c = w_c ∝ p_c · exp(l_c / λ)``: classes whose loss is high
are up-weighted, more so the smaller λ; λ -> ∞ gives w = p, i.e. plain ERM. Because a batch's
examples are (approximately) drawn from p, each example is weighted by the importance ratio
``w_c / p_c``, so that

    loss = (1 / N) Σ_i  w_{c_i} / p_{c_i} · loss_i

is an estimate of Σ_c w_c l_c and equals the plain mean of the losses when λ = ∞. The class
losses l_c are an exponential moving average across steps (a single batch holds few
examples of a rare class), kept in buffers so that a resumed run continues exactly.

Two refinements for over-parameterised models, chosen in `userfm.pretrain.module`
(``dro_losses_from``, ``dro_apply``): a model that memorises the few training events of a rare
class drives every class's *training* loss down alike, so weights fed by training losses fall
back to p (Sagawa et al. 2020, "Distributionally robust neural networks"); the class losses
can instead come from held-out examples (:meth:`DROWeighting.update` from a validation loop,
``forward(..., update=False)`` in training). And reweighting the losses barely moves such a
model's decision boundary, while a logit adjustment does (Menon et al. 2021, "Long-tail
learning via logit adjustment"): adding ``-log(w_c / p_c)`` (:attr:`DROWeighting.log_ratio`)
to the training logit of every class-c item fits the raw logits to the same target
distribution w.

Classes are configurable: the target item itself (``torch.arange(V)``), a frequency bucket
of the target item (:func:`frequency_buckets`), or the target's action type; see
:func:`event_classes` and :func:`class_prior`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from userfm.data.vocab import NUM_SPECIALS
from userfm.errors import ConfigError
from userfm.eval.retrieval import frequency_buckets as rank_buckets

ClassKind = Literal["item", "bucket", "action"]
CLASS_KINDS = ("item", "bucket", "action")


class DROWeighting(nn.Module):
    """Class-level KL-DRO weights on per-example losses, smoothed across steps.

    Args:
        num_classes: C, the number of classes.
        class_prior: (C,) empirical class distribution p (non-negative; normalised here).
            Classes with p_c = 0 get weight 0 in ``weights`` but still a finite importance
            ratio ``exp(l_c / λ) / Z`` if they occur.
        temperature: λ > 0 of the dual; smaller = more robust; ``math.inf`` = plain mean.
        ema: EMA factor in [0, 1) of the class losses across steps (0 = this batch only).

    Example:
        >>> dro = DROWeighting(num_classes=3, class_prior=torch.tensor([0.7, 0.2, 0.1]),
        ...                    temperature=1.0, ema=0.9)
        >>> loss = dro(per_example_losses, classes)  # scalar; dro.weights: (3,)
    """

    prior: torch.Tensor
    class_loss: torch.Tensor
    seen: torch.Tensor

    def __init__(
        self,
        *,
        num_classes: int,
        class_prior: torch.Tensor,
        temperature: float = 1.0,
        ema: float = 0.9,
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"`num_classes` must be an int >= 1, got {num_classes!r}")
        prior = torch.as_tensor(class_prior, dtype=torch.float32)
        if prior.shape != (num_classes,):
            raise ConfigError(
                f"`class_prior` must have shape (num_classes,) = ({num_classes},), "
                f"got {tuple(prior.shape)}"
            )
        if not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()) or prior.sum() <= 0:
            raise ConfigError("`class_prior` must be finite, >= 0 and have a positive sum")
        temperature = float(temperature)
        if math.isnan(temperature) or temperature <= 0:
            raise ConfigError(f"`temperature` must be > 0 (math.inf allowed), got {temperature}")
        if not 0.0 <= float(ema) < 1.0:
            raise ConfigError(f"`ema` must be in [0, 1), got {ema}")
        self.num_classes = num_classes
        self.temperature = temperature
        self.ema = float(ema)
        self.register_buffer("prior", prior / prior.sum())  # (C,) p
        self.register_buffer("class_loss", torch.zeros(num_classes))  # (C,) EMA of l_c
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))  # (C,)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, temperature={self.temperature}, ema={self.ema}"

    # ---- state -------------------------------------------------------------------------
    @property
    def effective_class_loss(self) -> torch.Tensor:
        """(C,) the l_c the weights use: the EMA of seen classes; classes never seen yet get
        the prior-weighted mean EMA of the seen ones (neither up- nor down-weighted)."""
        seen = self.seen
        p_seen = (self.prior * seen).sum()
        neutral = (self.prior * self.class_loss * seen).sum() / p_seen.clamp(min=1e-12)
        return torch.where(seen, self.class_loss, neutral)

    @property
    def log_ratio(self) -> torch.Tensor:
        """(C,) log(w_c / p_c) = l_c / λ - log Σ_c p_c exp(l_c / λ), stable for p_c = 0;
        0 everywhere for λ = ∞."""
        if math.isinf(self.temperature):
            return torch.zeros_like(self.prior)
        scaled = self.effective_class_loss / self.temperature  # (C,)
        return scaled - torch.logsumexp(self.prior.log() + scaled, dim=0)

    @property
    def weights(self) -> torch.Tensor:
        """(C,) current class weights w ∝ p · exp(l / λ), summing to 1 (for logging)."""
        return self.prior * self.log_ratio.exp()

    @torch.no_grad()
    def update(
        self,
        losses: torch.Tensor,
        classes: torch.Tensor,
        *,
        reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Fold one batch's per-class mean losses into the EMA (classes absent: unchanged).

        A class seen for the first time takes its batch mean directly; after that
        ``l_c <- ema · l_c + (1 - ema) · batch_mean_c``.

        Args:
            losses: (N,) per-example losses.
            classes: (N,) int64 class of each example, in [0, C).
            reduce_fn: sums a tensor over data-parallel ranks (e.g. an all-reduce passed in
                by the caller) so every rank keeps the same EMA; None: this process only.
        """
        stats = torch.zeros(2, self.num_classes, device=losses.device, dtype=torch.float32)
        stats[0].index_add_(0, classes, losses.detach().float())  # per-class loss sums
        stats[1].index_add_(0, classes, torch.ones_like(losses, dtype=torch.float32))  # counts
        if reduce_fn is not None:
            stats = reduce_fn(stats)
        sums, counts = stats[0], stats[1]
        present = counts > 0
        batch_mean = sums / counts.clamp(min=1)
        blended = self.ema * self.class_loss + (1.0 - self.ema) * batch_mean
        new = torch.where(self.seen, blended, batch_mean)
        self.class_loss.copy_(torch.where(present, new, self.class_loss))
        self.seen |= present

    def forward(
        self,
        losses: torch.Tensor,
        classes: torch.Tensor,
        *,
        update: bool = True,
        reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """DRO-weighted mean of per-example losses.

        In training mode the EMA is updated with this batch first (so the weights see it),
        unless ``update`` is False; in eval mode the state is left unchanged. The weights
        carry no gradient.

        Args:
            losses: (N,) per-example losses.
            classes: (N,) int64 class of each example, in [0, C).
            update: fold this batch into the EMA (training mode only). False: the class
                losses are fed elsewhere, e.g. held-out examples passed to :meth:`update`.
            reduce_fn: see :meth:`update`.

        Returns:
            Scalar ``(1 / N) Σ_i w_{c_i} / p_{c_i} · losses_i``; exactly ``losses.mean()``
            when the temperature is ``math.inf``.
        """
        if losses.dim() != 1 or classes.shape != losses.shape:
            raise ConfigError(
                f"`losses` and `classes` must both be (N,), got {tuple(losses.shape)} and "
                f"{tuple(classes.shape)}"
            )
        if self.training and update:
            self.update(losses, classes, reduce_fn=reduce_fn)
        ratio = self.log_ratio.exp().detach()  # (C,) w_c / p_c; exactly 1 at λ = ∞
        return (ratio[classes].to(losses.dtype) * losses).mean()


# ---- class assignment -----------------------------------------------------------------------
def frequency_buckets(
    item_counts: torch.Tensor,
    num_buckets: int,
    *,
    by: Literal["mass", "items"] = "mass",
) -> torch.Tensor:
    """Bucket every item by popularity: 0 = head, ``num_buckets - 1`` = tail.

    The ranking is `userfm.eval.retrieval.frequency_buckets` over the real items, the one
    evaluation's macro recall uses: items ranked by count (ties: lower index first, which is
    the vocabulary's frequency order). ``by="mass"``: each bucket holds about the same share
    of all events (the head is a few very popular items, the tail many rare ones); an item
    goes to bucket ``floor(K · (events of the items ranked before it) / total)``, so a bucket
    may be empty when a single item holds more than 1/K of the events; zero-count items go to
    the tail. ``by="items"``: each bucket holds the same number of items (within one). The
    specials (indices 0..2) always go to the tail bucket.

    Args:
        item_counts: (V,) training frequency of each item index.
        num_buckets: K >= 1.
        by: ``"mass"`` or ``"items"``, see above.

    Returns:
        (V,) int64 bucket of each item index, in [0, K), on ``item_counts``' device.
    """
    if not isinstance(num_buckets, int) or num_buckets < 1:
        raise ConfigError(f"`num_buckets` must be an int >= 1, got {num_buckets!r}")
    if item_counts.dim() != 1 or len(item_counts) <= NUM_SPECIALS:
        raise ConfigError(
            f"`item_counts` must be (V,) with V > {NUM_SPECIALS}, got shape "
            f"{tuple(item_counts.shape)}"
        )
    counts = item_counts[NUM_SPECIALS:].detach().double().cpu()
    if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
        raise ConfigError("`item_counts` must be finite and >= 0")
    if by == "mass" and counts.sum() <= 0:
        raise ConfigError("`item_counts` sum to 0: cannot bucket by frequency mass")
    buckets = torch.full((len(item_counts),), num_buckets - 1, dtype=torch.long)
    buckets[NUM_SPECIALS:] = torch.from_numpy(rank_buckets(counts.numpy(), num_buckets, by=by))
    return buckets.to(item_counts.device)


def event_classes(
    targets: torch.Tensor,
    *,
    by: ClassKind,
    item_buckets: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DRO class of each example.

    Args:
        targets: (N,) int64 target item indices.
        by: ``"item"``: the target item itself (C = V); ``"bucket"``: the target's frequency
            bucket (``item_buckets``, C = K); ``"action"``: the target event's action index
            (``actions``, C = number of actions).
        item_buckets: (V,) bucket of each item (:func:`frequency_buckets`), for ``"bucket"``.
        actions: (N,) int64 action index of each target event, for ``"action"``.

    Returns:
        (N,) int64 classes.
    """
    if by == "item":
        return targets
    if by == "bucket":
        if item_buckets is None:
            raise ConfigError("`item_buckets` is required for classes by='bucket'")
        return item_buckets[targets]
    if by == "action":
        if actions is None or actions.shape != targets.shape:
            raise ConfigError("`actions` (N,), one per target, is required for by='action'")
        return actions
    raise ConfigError(f"`by` must be one of {CLASS_KINDS}, got {by!r}")


def class_prior(
    labels: torch.Tensor, num_classes: int, *, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Empirical class distribution p (C,) for :class:`DROWeighting`.

    Args:
        labels: (M,) int64 class of each training event; or, with ``counts``, the class of
            each of M groups (e.g. ``item_buckets`` (V,) with the item counts).
        num_classes: C.
        counts: (M,) number of events of each group, or None (each label counts once).

    Returns:
        (C,) float32 probabilities summing to 1.
    """
    if counts is not None and counts.shape != labels.shape:
        raise ConfigError(
            f"`counts` must have the shape of `labels` {tuple(labels.shape)}, "
            f"got {tuple(counts.shape)}"
        )
    mass = torch.bincount(
        labels, weights=None if counts is None else counts.double(), minlength=num_classes
    )
    if len(mass) != num_classes:
        raise ConfigError(f"`labels` hold classes >= num_classes = {num_classes}")
    if mass.sum() <= 0:
        raise ConfigError("`labels` / `counts` hold no events")
    return (mass.double() / mass.sum()).float()
