"""`PretrainModule`: a thin LightningModule around `UserEncoder` and the objectives.

One shared step for train / valid / test. The encoder is built in `configure_model` from the
DataModule's vocabularies (so the config's sizes always match the data), before Lightning
restores a checkpoint, which makes resume exact.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from transformers import get_cosine_schedule_with_warmup

from userfm._version import __version__
from userfm.data.vocab import NUM_SPECIALS
from userfm.encoder import UserEncoder, UserEncoderConfig
from userfm.encoder.model import decay_groups
from userfm.encoder.warm_start import warm_start
from userfm.errors import ConfigError, check_fields, check_int
from userfm.eval.ranking import target_ranks
from userfm.eval.retrieval import BUCKET_BY, hit_rate, ndcg
from userfm.pretrain.contrastive import augment, info_nce
from userfm.pretrain.data import PretrainBatch
from userfm.pretrain.dro import (
    CLASS_KINDS,
    DROWeighting,
    class_prior,
    event_classes,
    frequency_buckets,
)
from userfm.pretrain.lazy_adamw import LazyAdamW
from userfm.pretrain.objectives import (
    LOSS_KINDS,
    future_targets,
    next_item_loss,
    proposal_log_q,
    seen_items,
)

logger = logging.getLogger(__name__)

#: `UserEncoderConfig` fields the data sets (or, for the user-text head, `fit_user_text`
#: after training), never `PretrainModule(encoder=...)` nor a warm start's source
FROM_DATA = ("num_items", "num_actions", "num_categories", "text_dim", "text_model",
             "text_model_fingerprint", "text_columns", "max_len", "max_categories",
             "event_schema", "userfm_version", "user_text_dim", "user_text_model",
             "user_text_phrases")  # fmt: skip
#: every `UserEncoderConfig` field (its keyword-only constructor arguments)
ENCODER_FIELDS = frozenset(
    name
    for name, p in inspect.signature(UserEncoderConfig.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)
DRO_LOSS_SOURCES = ("train", "valid")
DRO_APPLY = ("weights", "logits")
#: ``loss="auto"``: the full softmax up to this many items, the sampled one above (at 10^5
#: items the full softmax trained ~100x slower than the sampled one; benchmarks/catalogue_scale.py)
FULL_SOFTMAX_ITEMS = 100_000
#: the losses a module takes: "auto" (by catalogue size) and `userfm.pretrain.objectives`'
LOSS_CHOICES = ("auto", *LOSS_KINDS)
#: ``chunk_size="auto"``: blocks of this many items once a step's logits pass LOGITS_BUDGET bytes
AUTO_CHUNK, LOGITS_BUDGET = 8192, 2**30


class PretrainModule(L.LightningModule):
    """Next-item pretraining (+ DRO weighting, + contrastive) of a `UserEncoder`.

    Args:
        encoder: `UserEncoderConfig` fields of the encoder to train (``hidden_size``,
            ``num_layers``, ``num_heads``, ``dropout``, ``pooling``, ``attn_backend``,
            ``use_time``, ``normalize``, ``output_features``, ...); the config's own defaults
            hold for the rest, and the index-space sizes, ``max_len`` and ``max_categories``
            come from the data. With ``output_features`` the item -> category table is read
            from the log. Checked here: a bad field is a `ConfigError` before any data is read.
        loss: next-item loss: ``full`` softmax, ``sampled`` softmax (logQ-corrected), or
            ``bce`` with one negative (the SASRec paper's loss). ``"auto"`` (default): the full
            softmax up to `FULL_SOFTMAX_ITEMS` (10^5) items or when an option that needs it
            is set (``future_window`` > 1, ``mask_seen``, ``dro_apply: logits``, an integer
            ``chunk_size``); above, the sampled softmax with ``sampler`` and sparse item rows
            (``sparse_items``) where they apply (one process, no ``output_features``, no
            gradient clipping). Measured on 2 CPU cores (benchmarks/catalogue_scale.py): at
            10^5 items the full softmax trained ~100x slower than the sampled one; at 10^6
            the sampled one with sparse rows kept 0.87x its 10^4-item rate in 1.5 GiB, and
            scored 0.97x the full softmax's NDCG@10 where both fit. `loss_kind` is the choice.
        num_negatives: negatives per step for ``sampled``.
        chunk_size: ``full`` softmax (training and validation) over blocks of this many items
            (`userfm.pretrain.objectives.chunked_log_z`): memory grows with batch positions x
            chunk_size rather than x catalogue size, at the cost of recomputing each block's
            logits in the backward pass; the losses and gradients are the same. ``"auto"``
            (default): blocks of `AUTO_CHUNK` items when a step's (positions, items) float32
            logits would pass `LOGITS_BUDGET` (1 GiB: 10^5 items x 6,400 positions needed 7.9
            GiB at once, 1.6 GiB in blocks, at the same speed; below, one block is faster:
            benchmarks/catalogue_scale.py). None: all items at once.
        sparse_items: with ``sampled`` or ``bce``, which read a few rows of the item table per
            step: its gradient is a sparse tensor of those rows and the optimizer is
            `userfm.pretrain.lazy_adamw.LazyAdamW`, which moves those rows only, so a step's
            cost follows the rows it reads rather than the catalogue size (issue 20 §1). A
            row's Adam moments then decay only in the steps that read it. Needs an encoder
            without ``output_features`` and one process (no DDP).
        sampler: proposal of ``sampled``: ``uniform``, ``log_uniform``, ``in_batch``, ``mixed``.
        dro: DRO classes (None = plain mean): ``item`` (target item), ``bucket`` (item
            frequency bucket), ``action`` (target action type).
        dro_temperature: λ of the KL ball's dual (smaller = more robust; inf = plain mean).
        dro_ema: EMA factor of the per-class losses.
        dro_buckets: number of frequency buckets for ``dro="bucket"``.
        dro_bucket_by: how ``dro="bucket"`` splits items head -> tail: ``items`` (equal item
            counts, as `userfm.eval.retrieval` buckets them for macro recall) or ``mass``
            (equal shares of training events); see `userfm.pretrain.dro.frequency_buckets`.
        dro_losses_from: where the per-class losses l_c behind the DRO weights come from:
            ``train``, the training batches (BehaveGPT); ``valid``, the validation split at
            each validation run (the trainer must run validation; the test split stays
            unseen). A model that memorises a rare class's few training events drives its
            training loss down like any other's, so training losses let the weights fall
            back to p; held-out losses keep the head/tail gap unseen users show.
        dro_apply: how the DRO distribution w enters training: ``weights``, each example's
            loss times w_c / p_c; ``logits``, a logit adjustment: every item's training logit
            gets ``-log(w_c / p_c)`` of its class, the loss is the plain mean (needs
            ``loss: full``, ``dro: item`` or ``bucket`` and ``dro_losses_from: valid``: fed
            by training losses, the adjustment would raise the very losses that set it).
            See `userfm.pretrain.dro` for both.
        future_window: train each position on the next ``future_window`` items, not only
            the next one (``loss="full"`` only; see `userfm.pretrain.objectives.future_targets`).
        mask_seen: leave the items already in each position's history out of its softmax,
            as evaluation filters them (``loss="full"`` only; see
            `userfm.pretrain.objectives.seen_items`).
        contrastive_weight: α of the CL4SRec InfoNCE term (0 = off).
        contrastive_temperature: InfoNCE temperature.
        crop_rate, mask_rate, reorder_rate: augmentation rates of the two views.
        lr: AdamW learning rate. weight_decay: on 2-D weight matrices only.
        warmup_steps: linear warmup, then cosine decay to 0 over the run.
        eval_k: K of the HR@K / NDCG@K logged on validation and test.
        init_from: fine-tune a pretrained encoder (a `save_pretrained` / ``userfm pretrain
            export`` folder) on this log: its architecture and settings (``encoder`` fields
            given here override the others; ``item_ids: true`` adds an id table to a
            text-only encoder), and its weights copied by
            `userfm.encoder.warm_start.warm_start` (tables indexed by a vocabulary row by
            row, by token: another catalogue keeps what its text projection learnt).
    """

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        loss: str = "auto",
        num_negatives: int = 256,
        chunk_size: int | Literal["auto"] | None = "auto",
        sparse_items: bool = False,
        sampler: str = "log_uniform",
        dro: str | None = None,
        dro_temperature: float = 1.0,
        dro_ema: float = 0.9,
        dro_buckets: int = 3,
        dro_bucket_by: str = "items",
        dro_losses_from: str = "train",
        dro_apply: str = "weights",
        future_window: int = 1,
        mask_seen: bool = False,
        contrastive_weight: float = 0.0,
        contrastive_temperature: float = 0.5,
        crop_rate: float = 0.6,
        mask_rate: float = 0.3,
        reorder_rate: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        eval_k: int = 10,
        init_from: str | None = None,
    ):
        super().__init__()
        encoder = dict(encoder or {})
        from_data = sorted(set(encoder) & set(FROM_DATA))
        if from_data:
            raise ConfigError(
                f"`encoder` sets {from_data}: these come from the data (the vocabularies, and "
                "`data.max_len` / `data.max_categories`); remove them from `model.encoder`"
            )
        # PretrainedConfig would keep a misspelt field as an attribute, unused
        check_fields("encoder", encoder, ENCODER_FIELDS - set(FROM_DATA), "UserEncoderConfig")
        # names a bad value now; whether the data has text (`item_ids`, `item_id_dropout`
        # need it) is checked when the encoder is built from the data
        UserEncoderConfig(num_items=NUM_SPECIALS + 1, text_dim=1, **encoder)
        if loss not in LOSS_CHOICES:
            raise ConfigError(f"`loss` must be one of {LOSS_CHOICES}, got {loss!r}")
        full_only = {"full", "auto"}  # auto picks the full softmax when these need it
        if dro is not None and dro not in CLASS_KINDS:
            raise ConfigError(f"`dro` must be None or one of {CLASS_KINDS}, got {dro!r}")
        if dro_bucket_by not in BUCKET_BY:
            raise ConfigError(f"`dro_bucket_by` must be one of {BUCKET_BY}, got {dro_bucket_by!r}")
        if dro_losses_from not in DRO_LOSS_SOURCES:
            raise ConfigError(
                f"`dro_losses_from` must be one of {DRO_LOSS_SOURCES}, got {dro_losses_from!r}"
            )
        if dro_apply not in DRO_APPLY:
            raise ConfigError(f"`dro_apply` must be one of {DRO_APPLY}, got {dro_apply!r}")
        if dro_apply == "logits" and (
            loss not in full_only or dro not in ("item", "bucket") or dro_losses_from != "valid"
        ):
            raise ConfigError(
                "`dro_apply: logits` needs `loss: full`, `dro: item` or `bucket` and "
                f"`dro_losses_from: valid`, got loss={loss!r}, dro={dro!r}, "
                f"dro_losses_from={dro_losses_from!r}"
            )
        if future_window < 1:
            raise ConfigError(f"`future_window` must be >= 1, got {future_window}")
        if future_window > 1 and loss not in full_only:
            raise ConfigError(f"`future_window` > 1 needs `loss: full`, got loss={loss!r}")
        if mask_seen and loss not in full_only:
            raise ConfigError(f"`mask_seen: true` needs `loss: full`, got loss={loss!r}")
        if contrastive_weight < 0:
            raise ConfigError(f"`contrastive_weight` must be >= 0, got {contrastive_weight}")
        if chunk_size not in (None, "auto"):
            check_int("chunk_size", chunk_size, minimum=1, why='or "auto", or None')
            if loss not in full_only:
                raise ConfigError(f"`chunk_size` needs `loss: full`, got loss={loss!r}")
        if sparse_items and loss not in ("sampled", "bce"):
            raise ConfigError(
                f"`sparse_items: true` needs `loss: sampled` or `bce` (a loss that reads some "
                f"rows of the item table), got loss={loss!r}"
            )
        if sparse_items and encoder.get("output_features"):
            raise ConfigError(
                "`sparse_items: true` needs `output_features: false`: the output vectors add "
                "every item's attribute features, a dense use of the whole table"
            )
        if lr <= 0:
            raise ConfigError(f"`lr` must be > 0, got {lr}")
        self.save_hyperparameters()  # `encoder` as normalised above: a plain dict
        self.encoder: UserEncoder | None = None
        self.sparse = sparse_items  # item rows sparse (`configure_model`: loss "auto" may too)
        self.dro_weighting: DROWeighting | None = None
        self.contrastive_head: torch.nn.Module | None = None

    # ---- construction ------------------------------------------------------------------
    @property
    def loss_kind(self) -> str:
        """The next-item loss of training: ``loss``, or what ``"auto"`` picks for the
        encoder's catalogue ("full" until the encoder exists)."""
        hp = self.hparams
        if hp.loss != "auto":
            return hp.loss
        needs_full = (
            hp.future_window > 1
            or hp.mask_seen
            or hp.dro_apply == "logits"
            or hp.chunk_size not in (None, "auto")
        )
        small = self.encoder is None or self.encoder.config.num_items <= FULL_SOFTMAX_ITEMS
        return "full" if needs_full or small else "sampled"

    def _sparse_rows_apply(self) -> bool:
        """Whether ``loss: auto`` may make the item rows sparse: the table is read only
        through the rows a step samples, and nothing needs its dense gradient (see
        ``sparse_items``)."""
        return (
            self.encoder.embeddings.scores_by_id_only
            and self.trainer.world_size == 1
            and not self.trainer.gradient_clip_val
        )

    def configure_model(self) -> None:
        """Build the encoder (and DRO state) from the DataModule's vocabularies."""
        if self.encoder is not None:
            return
        dm = self.trainer.datamodule
        vocabs = dm.vocabs
        if vocabs is None:
            dm.setup("fit")
            vocabs = dm.vocabs
        hp = self.hparams
        fields = dict(hp.encoder or {})  # LightningCLI saves `encoder: null` as given
        pretrained = None
        if hp.init_from is not None:  # its settings, then the ones given here
            pretrained = UserEncoder.from_pretrained(hp.init_from)
            own = pretrained.config.to_dict()
            fields = {**{k: own[k] for k in ENCODER_FIELDS - set(FROM_DATA)}, **fields}
        fields["use_time"] = fields.get("use_time", True) and dm.events.has_time
        text = getattr(dm, "item_text", None)
        if text is not None:  # the item table's text vectors (`data.items`)
            fields.update(
                text_dim=text.model.dim,
                text_model=text.model.name,
                text_model_fingerprint=text.model.fingerprint,
                text_columns=text.columns,
            )
        self.encoder = UserEncoder.from_vocabs(
            vocabs,
            max_categories=dm.hparams.max_categories,
            max_len=dm.hparams.max_len,
            event_schema=None if dm.events.schema is None else dm.events.schema.to_dict(),
            **fields,
        )
        if text is not None:
            self.encoder.set_item_text_features(text.vectors)
        if pretrained is not None:
            copied = warm_start(self.encoder, pretrained)
            if self.trainer.is_global_zero:
                logger.info("init_from %s: %s", hp.init_from, copied)
        if self.sparse and not self.encoder.embeddings.scores_by_id_only:
            raise ConfigError(
                "`sparse_items: true` reads the item id table row by row: it needs items "
                "scored by their id embedding alone (no `data.items` text, `item_ids: true`, "
                "no `output_features`)"
            )
        if hp.loss == "auto" and self.loss_kind == "sampled":
            self.sparse = self._sparse_rows_apply()
            if self.trainer.is_global_zero:
                logger.info(
                    "loss: auto: the sampled softmax (%d %s negatives, logQ-corrected) for %s "
                    "items (> %s)%s",
                    hp.num_negatives,
                    hp.sampler,
                    f"{self.encoder.config.num_items:,}",
                    f"{FULL_SOFTMAX_ITEMS:,}",
                    ", sparse item rows" if self.sparse else "",
                )
        # the input lookup's gradient is sparse too (the loss's own read: `sparse_grad`)
        if self.encoder.embeddings.item is not None:
            self.encoder.embeddings.item.sparse = self.sparse
        if self.encoder.embeddings.item_categories is not None:
            self.encoder.set_item_categories(
                self.encoder.featurizer().item_category_table(dm.events)
            )
        if hp.contrastive_weight > 0:  # training only: not exported with the encoder
            D = self.encoder.config.hidden_size
            self.contrastive_head = torch.nn.Sequential(
                torch.nn.Linear(D, D), torch.nn.GELU(), torch.nn.Linear(D, D)
            )
        self.data_stats = dict(dm.stats)
        counts = dm.item_counts.float()  # (V,)
        self.item_counts = counts
        self.register_buffer(
            "item_bucket",
            frequency_buckets(counts, hp.dro_buckets, by=hp.dro_bucket_by),
            persistent=False,
        )
        if hp.dro is not None:
            if hp.dro == "item":  # each item its own class
                groups, num_classes = torch.arange(len(counts)), len(counts)
            elif hp.dro == "bucket":
                groups, num_classes = self.item_bucket, hp.dro_buckets
            else:
                if vocabs.actions is None:
                    raise ConfigError("`dro: action` needs a log with an action column")
                num_classes = len(vocabs.actions)
                counts = torch.tensor(vocabs.actions.counts, dtype=torch.float)
                groups = torch.arange(NUM_SPECIALS, NUM_SPECIALS + len(counts))
            prior = class_prior(groups, num_classes, counts=counts)  # (C,)
            self.dro_weighting = DROWeighting(
                num_classes=num_classes,
                class_prior=prior,
                temperature=hp.dro_temperature,
                ema=hp.dro_ema,
            )

    # ---- the shared step ---------------------------------------------------------------
    def _next_item_losses(
        self,
        h: torch.Tensor,
        targets: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, D) states, (N,) targets -> (N,) per-example losses; (N, K) targets
        (``loss="full"`` only) -> (N, K), 0 in empty slots.

        ``exclude`` (N, S): items that are no negative of their row, 0 = no item: the full
        softmax leaves them out (``mask_seen``), BCE draws its negative elsewhere.
        """
        hp = self.hparams
        item_emb = self.encoder.embeddings.item_vectors()  # (V, D) tied output layer
        kind = self.loss_kind if self.training else "full"  # evaluation: the full softmax
        log_q = None
        if kind == "sampled":
            # logQ correction with the proposal the sampler really draws from (Yi et al. 2019)
            log_q = proposal_log_q(
                hp.sampler,
                item_emb.shape[0],
                counts=self.item_counts.to(h.device),
                num_negatives=hp.num_negatives,
                batch_size=len(targets),
            )
        return next_item_loss(
            h,
            item_emb,
            targets,
            kind=kind,
            num_negatives=hp.num_negatives,
            sampler=hp.sampler,
            item_log_q=log_q,
            exclude=exclude,
            logit_offset=self._logit_offset(),
            chunk_size=self._chunk(len(h), item_emb.shape[0]),
            sparse_grad=self.sparse and self.training,
        )

    def _chunk(self, rows: int, items: int) -> int | None:
        """Items per block of the full softmax / ranking over ``rows`` x ``items`` logits (None:
        all at once), as ``chunk_size`` says."""
        chunk = self.hparams.chunk_size
        if chunk == "auto":
            return AUTO_CHUNK if rows * items * 4 > LOGITS_BUDGET else None
        return chunk

    def _logit_offset(self) -> torch.Tensor | None:
        """(V,) DRO logit adjustment ``-log(w_c / p_c)`` of each item's class while training
        with ``dro_apply="logits"``; None otherwise (evaluation scores the raw logits)."""
        if not self.training or self.dro_weighting is None or self.hparams.dro_apply != "logits":
            return None
        items = torch.arange(len(self.item_bucket), device=self.item_bucket.device)  # (V,)
        return -self.dro_weighting.log_ratio.detach()[self._dro_classes(items, None)]

    def _dro_classes(self, targets: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """(M,) DRO class of each example from its target item (and target action)."""
        return event_classes(
            targets, by=self.hparams.dro, item_buckets=self.item_bucket, actions=actions
        )

    def _step(self, pb: PretrainBatch, stage: str) -> torch.Tensor:
        hp = self.hparams
        out = self.encoder(pb.batch)
        valid = pb.targets > 0  # (B, T)
        h, targets = out.states[valid], pb.targets[valid]  # (N, D), (N,)
        actions = pb.target_actions[valid] if hp.dro == "action" else None  # (N,)
        exclude = None  # (N, T) items that are no negative of their example
        if self.loss_kind == "bce" and stage == "train":
            exclude = pb.batch.items[valid.nonzero()[:, 0]]  # the whole input row, as in SASRec
        elif hp.mask_seen:
            exclude = seen_items(pb.batch.items, valid)  # the history up to each position
        if stage == "train" and hp.future_window > 1:
            # one example per (position, future item) pair: DRO classes follow each pair's item
            window = future_targets(pb.targets, hp.future_window)[valid]  # (N, K)
            filled = window > 0
            losses = self._next_item_losses(h, window, exclude)[filled]  # (M,)
            targets = window[filled]  # (M,)
            if actions is not None:
                actions = future_targets(pb.target_actions, hp.future_window)[valid][filled]
        else:
            losses = self._next_item_losses(h, targets, exclude)  # (N,)
        n = len(targets)
        self.log(f"{stage}/next_item_loss", losses.mean(), batch_size=n, sync_dist=stage != "train")
        dro = self.dro_weighting
        if stage == "train" and dro is not None:
            classes = self._dro_classes(targets, actions)
            from_train = hp.dro_losses_from == "train"
            if hp.dro_apply == "weights":
                loss = dro(losses, classes, update=from_train, reduce_fn=self._sum_over_ranks())
            else:  # logits: w entered through the logit offset
                loss = losses.mean()
            if hp.dro in ("bucket", "action"):
                for c, w in enumerate(dro.weights.tolist()):
                    self.log(f"dro/weight_{hp.dro}_{c}", w, batch_size=n)
        else:
            loss = losses.mean()
            # held-out class losses; the sanity check (rerun on resume) must not move the EMA
            held_out = stage == "valid" and not self.trainer.sanity_checking
            if held_out and dro is not None and hp.dro_losses_from == "valid":
                classes = self._dro_classes(targets, actions)
                dro.update(losses, classes, reduce_fn=self._sum_over_ranks())
        if stage == "train" and hp.contrastive_weight > 0:
            rates = dict(
                crop_rate=hp.crop_rate, mask_rate=hp.mask_rate, reorder_rate=hp.reorder_rate
            )
            view_1, view_2 = (augment(pb.batch, **rates) for _ in range(2))
            # InfoNCE on a projection of the embedding (SimCLR): the contrastive invariances
            # live in the head instead of the embedding that also scores items
            z1 = self.contrastive_head(self.encoder(view_1, return_states=False).embedding)
            z2 = self.contrastive_head(self.encoder(view_2, return_states=False).embedding)
            cl = info_nce(z1, z2, temperature=hp.contrastive_temperature).mean()
            self.log("train/contrastive_loss", cl, batch_size=len(z1))
            loss = loss + hp.contrastive_weight * cl
        self.log(f"{stage}/loss", loss, batch_size=n, prog_bar=True, sync_dist=stage != "train")
        if stage != "train":
            self._log_ranking(pb, out.states, valid, stage)
        return loss

    @torch.no_grad()
    def _log_ranking(
        self, pb: PretrainBatch, states: torch.Tensor, valid: torch.Tensor, stage: str
    ) -> None:
        """HR@K / NDCG@K of the held-out item, full ranking, the user's seen items filtered."""
        rows = valid.nonzero()[:, 0]  # (N,) batch row of each target
        item_vectors = self.encoder.embeddings.item_vectors()  # (V, D)
        block = self._chunk(len(rows), len(item_vectors)) or len(item_vectors)
        rank = (
            target_ranks(
                states[valid], item_vectors, pb.targets[valid], pb.batch.items[rows], block=block
            )
            .cpu()
            .numpy()
        )  # (N,) 1-based, inf = miss (the target was among the seen inputs)
        k, n = self.hparams.eval_k, len(rank)
        # the metrics of userfm.eval.retrieval, as evaluate_retrieval reports them
        for name, value in ((f"hr@{k}", hit_rate(rank, k)), (f"ndcg@{k}", ndcg(rank, k))):
            self.log(f"{stage}/{name}", value, batch_size=n, sync_dist=True,
                     prog_bar=stage == "valid")  # fmt: skip

    def _sum_over_ranks(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Sums the DRO statistics over data-parallel ranks (None on one process), so every
        rank folds the same class losses into its EMA and holds the same weights."""
        if self.trainer.world_size == 1:
            return None
        return lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")

    def on_fit_start(self) -> None:
        hp = self.hparams
        skips_validation = not self.trainer.limit_val_batches
        if hp.dro is not None and hp.dro_losses_from == "valid" and skips_validation:
            raise ConfigError(
                "`dro_losses_from: valid` takes the DRO class losses from the validation "
                "loop, which this trainer skips (limit_val_batches=0): run validation or "
                "set `dro_losses_from: train`"
            )
        num_items = self.encoder.config.num_items
        if (
            self.loss_kind == "full"
            and num_items > FULL_SOFTMAX_ITEMS
            and self.trainer.is_global_zero
        ):
            logger.warning(
                "the full softmax over an item table of %s rows scores every item at every "
                "position: on 2 CPU cores it trained ~100x slower than `loss: sampled` at 10^5 "
                "items and ~700x slower than `loss: sampled` + `sparse_items: true` at 10^6 "
                "(benchmarks/catalogue_scale.py); consider those two",
                f"{num_items:,}",
            )
        if hp.sparse_items and self.trainer.world_size > 1:
            raise ConfigError(
                "`sparse_items: true` runs in one process for now (DDP would all-reduce the "
                f"sparse item gradients; {self.trainer.world_size} processes here): drop it or "
                "train on one device"
            )
        if hp.sparse_items and self.trainer.gradient_clip_val:
            raise ConfigError(
                "`sparse_items: true` and `trainer.gradient_clip_val` do not mix (clipping "
                "reads dense gradients): drop one"
            )

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if callable(getattr(dataset, "set_epoch", None)):  # streamed / length-grouped: reshuffle
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: PretrainBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: PretrainBatch, batch_idx: int) -> None:
        self._step(batch, "valid")

    def test_step(self, batch: PretrainBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    # ---- optimisation ------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = decay_groups(self, hp.weight_decay)  # encoder, then the contrastive head
        optimizer = (LazyAdamW if self.sparse else torch.optim.AdamW)(groups, lr=hp.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = get_cosine_schedule_with_warmup(optimizer, min(hp.warmup_steps, total), total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- checkpoints carry what export needs (no Lightning needed to read them) ---------
    def on_validation_epoch_end(self) -> None:
        # remembered for checkpoints: a step checkpoint is written before that step's validation
        self.last_eval = {
            "step": self.global_step,
            **{
                k: float(v)
                for k, v in self.trainer.callback_metrics.items()
                if k.startswith("valid/")
            },
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = dict(getattr(self, "last_eval", {}))
        checkpoint["userfm"] = {
            "encoder_config": self.encoder.config.to_dict(),
            "vocabs": self.encoder.vocabs.to_dict(),
            "data_stats": self.data_stats,
            "metrics": metrics,
            "global_step": self.global_step,
            "userfm_version": __version__,
        }
