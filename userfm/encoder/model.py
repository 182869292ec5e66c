"""`UserEncoder`: a causal Pre-LN transformer over a user's events -> states and an embedding.

Read top to bottom: token features (`EventEmbedding`) -> blocks (`Block` = `SelfAttention` +
`MLP`) -> final LayerNorm -> pooling. Shapes: B users, T events (right padded), D hidden size,
H heads, d = D / H, C categories per event.

The model has no per-user parameters: any user, new ones included, is embedded from their
history alone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from userfm.data.batch import Batch
from userfm.data.features import Featurizer
from userfm.data.log import EventLog
from userfm.data.schema import EventSchema
from userfm.data.vocab import NUM_SPECIALS, VocabSet, build_vocabs
from userfm.encoder.attention import attention
from userfm.encoder.config import UserEncoderConfig
from userfm.encoder.text_model import DEFAULT_TEXT_MODEL, TextModelInfo
from userfm.encoder.user_text import UserTextHead, check_head
from userfm.errors import ConfigError, FileFormatError, UserfmError, check_k
from userfm.quiet import transformers_output

if TYPE_CHECKING:
    import pandas as pd

    from userfm.api.embed import HistoriesLike
    from userfm.api.embeddings import UserEmbeddings
    from userfm.api.recommend import Recommendations
    from userfm.data.items import ItemTable
    from userfm.encoder.open_catalogue import AddedItems

logger = logging.getLogger("userfm.encoder")
VOCAB_FILE = "vocab.json"
CARD_FILE = "README.md"
#: what `from_pretrained` refuses in a saved folder (transformers would re-initialise them)
LOAD_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys")

try:  # transformers 5: init functions that skip tensors already loaded by from_pretrained
    from transformers import initialization as _init
except ImportError:  # transformers 4.x: weights are initialised before loading
    _init = nn.init

NUM_HOURS = 24 + 1  # hour of day + 1, 0 = pad / unknown
NUM_WEEKDAYS = 7 + 1  # weekday + 1, 0 = pad / unknown


@dataclass
class EncoderOutput(ModelOutput):
    """Output of :meth:`UserEncoder.forward`.

    Attributes:
        states: (B, T, D) contextual state of every event (state t has seen events 0..t);
            zero at padded positions.
        embedding: (B, D) pooled user embedding (L2-normalised when ``config.normalize``).
    """

    states: torch.Tensor | None = None
    embedding: torch.Tensor | None = None


def _sum(parts: list[torch.Tensor]) -> torch.Tensor:
    """``parts[0] + parts[1] + ...`` in order (the order the features were always added in)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


class EventEmbedding(nn.Module):
    """Sum of the per-event features and the position embedding: Batch -> (B, T, D)."""

    def __init__(self, config: UserEncoderConfig):
        super().__init__()
        D = config.hidden_size
        # the inductive mode has no id table: an item is its text (and side features) only
        self.item = nn.Embedding(config.num_items, D, padding_idx=0) if config.item_ids else None
        self.item_id_dropout = config.item_id_dropout
        self.action = (
            nn.Embedding(config.num_actions, D, padding_idx=0) if config.num_actions else None
        )
        self.category = (
            nn.Embedding(config.num_categories, D, padding_idx=0) if config.num_categories else None
        )
        if config.text_dim:
            # Frozen sentence-encoder vectors of each item (zeros until set, and for items
            # without text): saved with the weights, never trained; only their projection is.
            # Items known only by their text (new ones, other catalogues) share what it learnt.
            self.register_buffer("item_text", torch.zeros(config.num_items, config.text_dim))
            if config.text_adaptor == "mlp":
                self.text_proj = nn.Sequential(
                    nn.Linear(config.text_dim, 4 * D), nn.GELU(), nn.Linear(4 * D, D)
                )
            else:
                self.text_proj = nn.Linear(config.text_dim, D, bias=False)
        else:
            self.item_text = None
            self.text_proj = None
        if config.output_features and config.num_categories:
            # Each item's categories (PAD-filled), for its output vector; set from the log.
            self.register_buffer(
                "item_categories",
                torch.zeros(config.num_items, config.max_categories, dtype=torch.long),
            )
        else:
            self.item_categories = None
        self.output_features = config.output_features
        if config.use_time:
            self.time_gap = nn.Embedding(config.num_time_gap_buckets, D, padding_idx=0)
            self.hour = nn.Embedding(NUM_HOURS, D, padding_idx=0)
            self.weekday = nn.Embedding(NUM_WEEKDAYS, D, padding_idx=0)
        else:
            self.time_gap = self.hour = self.weekday = None
        self.position = nn.Embedding(config.max_len, D)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.item_inputs(batch.items)  # (B, T, D)
        if self.action is not None:
            if batch.actions is None:
                raise ConfigError(
                    "the encoder was built with `num_actions` > 0 but the batch has no actions; "
                    "build it with num_actions=0 for logs without an action column"
                )
            x = x + self.action(batch.actions)
        if self.category is not None:
            if batch.categories is None:
                raise ConfigError(
                    "the encoder was built with `num_categories` > 0 but the batch has no "
                    "categories; build it with num_categories=0 for logs without categories"
                )
            x = x + self.category(batch.categories).sum(dim=2)  # (B, T, C, D) -> (B, T, D)
        if self.time_gap is not None:
            x = x + self.time_gap(batch.time_gaps) + self.hour(batch.hours)
            x = x + self.weekday(batch.weekdays)
        positions = torch.arange(batch.items.shape[1], device=x.device)  # (T,)
        x = x + self.position(positions)  # (T, D) broadcast over B
        return self.dropout(x)

    @property
    def scores_by_id_only(self) -> bool:
        """Whether an item's output vector is its id embedding alone: `item_vectors` is then
        the id table itself, whose rows a sampled loss can read sparsely."""
        return self.item is not None and self.text_proj is None and not self.output_features

    def _ids_kept(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
        """ID dropout: a (shape + (1,)) 0/1 mask of the occurrences that read their id
        embedding in this training step; None when every one does (evaluation, or off)."""
        if not self.training or not self.item_id_dropout:
            return None
        keep = torch.rand(shape, device=device) >= self.item_id_dropout
        return keep[..., None].to(self.position.weight.dtype)

    def item_inputs(self, items: torch.Tensor) -> torch.Tensor:
        """The item part of each input token: (B, T) item indices -> (B, T, D), the id
        embedding (none in the inductive mode; hidden by ID dropout in training) plus the
        projected text vector. The output vectors (`item_vectors`) read the same parts."""
        parts = []
        if self.item is not None:
            ids = self.item(items)  # (B, T, D)
            keep = self._ids_kept(tuple(items.shape), items.device)
            parts.append(ids if keep is None else ids * keep)
        if self.text_proj is not None:
            parts.append(self.text_proj(self.item_text[items]))  # (B, T, text_dim) -> (B, T, D)
        return _sum(parts)

    def item_vectors(self) -> torch.Tensor:
        """(V, D) output vector of every item index, from the same parts as its input token
        (`item_inputs`): the id embedding (hidden by ID dropout for a random share of the
        items in a training step) plus the projected text vector, plus (with
        ``output_features``) the sum of its category embeddings."""
        if self.scores_by_id_only:
            return self.item.weight  # (V, D) the table itself (sparse rows read it directly)
        parts = []
        if self.item is not None:
            keep = self._ids_kept((self.item.num_embeddings,), self.item.weight.device)
            parts.append(self.item.weight if keep is None else self.item.weight * keep)
        if self.text_proj is not None:
            parts.append(self.text_proj(self.item_text))  # (V, text_dim) -> (V, D)
        if self.output_features and self.item_categories is not None:
            parts.append(self.category(self.item_categories).sum(dim=1))  # (V, C, D) -> (V, D)
        return _sum(parts)


class SelfAttention(nn.Module):
    """Multi-head causal self-attention over valid events (see `userfm.encoder.attention`)."""

    def __init__(self, config: UserEncoderConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.backend = config.attn_backend
        self.attn_dropout = config.attn_dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(
            self.qkv(x), "b t (three h d) -> three b t h d", three=3, h=self.num_heads
        )  # each (B, T, H, d)
        y = attention(
            q,
            k,
            v,
            mask,
            backend=self.backend,
            dropout_p=self.attn_dropout,
            training=self.training,
        )  # (B, T, H, d)
        return self.dropout(self.proj(rearrange(y, "b t h d -> b t (h d)")))  # (B, T, D)

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Attention output at each user's last valid position only: (B, T, D) -> (B, 1, D).

        Keys and values still cover every event; only one query per user is computed, which
        is all the "last" pooling of the final block needs (see `UserEncoder.forward`).
        """
        B = x.shape[0]
        kv = self.qkv(x)  # (B, T, 3D)
        x_last = x[torch.arange(B, device=x.device), last][:, None]  # (B, 1, D)
        q = self.qkv(x_last)  # (B, 1, 3D), only its query third is used
        q, _, _ = rearrange(q, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        _, k, v = rearrange(kv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        # the query sits at `last`, so it may see keys 0..last (its causal past, all valid)
        visible = mask[:, None, None, :]  # (B, 1, 1, T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=visible, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, 1, d)
        return self.dropout(self.proj(rearrange(y, "b h t d -> b t (h d)")))  # (B, 1, D)


class MLP(nn.Module):
    def __init__(self, config: UserEncoderConfig):
        super().__init__()
        self.fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (B, T, D)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: UserEncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)  # (B, T, D)
        return x + self.mlp(self.ln_2(x))  # (B, T, D)

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The block's output at each user's last valid position: (B, T, D) -> (B, 1, D)."""
        x_last = x[torch.arange(x.shape[0], device=x.device), last][:, None]  # (B, 1, D)
        x_last = x_last + self.attn.forward_last(self.ln_1(x), mask, last)  # (B, 1, D)
        return x_last + self.mlp(self.ln_2(x_last))  # (B, 1, D)


class AttentionPooling(nn.Module):
    """One learned query attends over the valid states of each user: (B, T, D) -> (B, D)."""

    def __init__(self, config: UserEncoderConfig):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(config.hidden_size))  # (D,), set by _init_weights

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = states @ self.query / math.sqrt(states.shape[-1])  # (B, T)
        # finfo.min, not -inf: an empty history then gets uniform weights over zero states
        # (a zero embedding) instead of NaN.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1) * mask  # (B, T)
        return torch.einsum("bt,btd->bd", weights, states)  # (B, D)


def decay_groups(
    module: nn.Module, weight_decay: float, *, params: list[nn.Parameter] | None = None
) -> list[dict]:
    """AdamW groups with decay on 2-D weight matrices only: embedding tables (of any
    `nn.Embedding` in ``module``), gains, biases and other vectors get none. The one rule of
    every optimizer in userfm (`UserEncoder.optimizer_groups` says why).

    Args:
        module: where the embedding tables are found.
        weight_decay: decay of the weight-matrix group.
        params: the parameters to group (default: ``module``'s trainable ones), in order.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": others,
        "weight_decay": 0.0}]``.
    """
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    chosen = [p for p in module.parameters() if p.requires_grad] if params is None else params
    decay = [p for p in chosen if p.dim() >= 2 and id(p) not in embeddings]
    taken = {id(p) for p in decay}
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": [p for p in chosen if id(p) not in taken], "weight_decay": 0.0},
    ]


class UserEncoder(PreTrainedModel):
    """Behaviour encoder: a user's event history -> per-event states and one user embedding.

    Args:
        config: the :class:`UserEncoderConfig` (checked again here).
        vocabs: the item / action / category vocabularies that map raw ids to the indices
            this model was built for; needed by `embed` and saved as vocab.json.

    Example:
        >>> model = UserEncoder.from_log(log)          # untrained, vocabularies from the log
        >>> out = model(batch)                          # batch: userfm.data.Batch
        >>> out.embedding.shape                         # (B, config.hidden_size)
        >>> model.embed(log).to_numpy().shape           # (num_users, config.hidden_size)
    """

    config_class = UserEncoderConfig
    base_model_prefix = "encoder"
    main_input_name = "batch"

    def __init__(self, config: UserEncoderConfig, vocabs: VocabSet | None = None):
        config.check()
        super().__init__(config)
        self.vocabs = None
        if vocabs is not None:
            self.set_vocabs(vocabs)
        self.embeddings = EventEmbedding(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pool = AttentionPooling(config) if config.pooling == "attention" else None
        self.user_text = (  # users in words (`userfm.encoder.user_text`), once trained
            UserTextHead(
                dim=config.hidden_size,
                text_dim=config.user_text_dim,
                num_phrases=len(config.user_text_phrases or []),
            )
            if config.user_text_dim
            else None
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """normal(0, initializer_range) weights and embeddings (pad rows zero), zero biases,
        LayerNorm gains 1; the pooling query like any weight."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    # pad rows are not trained (padding_idx), so this zero is kept for good
                    if not getattr(module.weight, "_is_hf_initialized", False):
                        module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
        elif isinstance(module, AttentionPooling):
            _init.normal_(module.query, mean=0.0, std=std)

    def forward(self, batch: Batch, *, return_states: bool = True) -> EncoderOutput:
        """Encode a batch of histories.

        Args:
            batch: right-padded histories (see :class:`userfm.data.batch.Batch`).
            return_states: False when only the embedding is needed (the embedding API). With
                "last" pooling the final block then runs its query, projection and MLP at the
                last valid position only (same embedding, about a third less compute for
                2 blocks); ``states`` is None.

        Returns:
            :class:`EncoderOutput` with ``states`` (B, T, D), zero at pads (or None), and
            ``embedding`` (B, D).

        Raises:
            ConfigError: T > ``config.max_len``, or the batch lacks a feature the config uses.
        """
        seq_len = batch.items.shape[1]  # T
        if seq_len > self.config.max_len:
            raise ConfigError(
                f"histories of {seq_len} events are longer than `max_len`={self.config.max_len}; "
                "truncate them (the featurizer's max_len) or build the encoder with a larger max_len"
            )
        mask = batch.mask  # (B, T)
        x = self.embeddings(batch)  # (B, T, D)
        if not return_states and self.config.pooling == "last":
            lengths = mask.sum(dim=1)  # (B,)
            for block in self.blocks[:-1]:
                x = block(x, mask)  # (B, T, D)
            x = self.blocks[-1].forward_last(x, mask, (lengths - 1).clamp(min=0))  # (B, 1, D)
            emb = self.ln_f(x[:, 0]) * (lengths > 0)[:, None].to(x.dtype)  # (B, D), 0 if empty
            if self.config.normalize:
                emb = F.normalize(emb, dim=-1)
            return EncoderOutput(states=None, embedding=emb)
        for block in self.blocks:
            x = block(x, mask)  # (B, T, D)
        states = self.ln_f(x) * mask[..., None].to(x.dtype)  # (B, T, D), zeros at pads
        return EncoderOutput(states=states, embedding=self.pool_states(states, mask))

    def pool_states(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool (B, T, D) states (zero at pads) into (B, D) embeddings with ``config.pooling``.

        An empty history (all-pad row) pools to a zero vector, never NaN.
        """
        lengths = mask.sum(dim=1)  # (B,)
        if self.config.pooling == "last":
            last = (lengths - 1).clamp(min=0)  # (B,) right padding: last valid index
            emb = states[torch.arange(states.shape[0], device=states.device), last]  # (B, D)
        elif self.config.pooling == "mean":
            emb = states.sum(dim=1) / lengths.clamp(min=1)[:, None].to(states.dtype)  # (B, D)
        else:
            emb = self.pool(states, mask)  # (B, D)
        if self.config.normalize:
            emb = F.normalize(emb, dim=-1)
        return emb

    def item_scores(
        self, x: torch.Tensor, item_vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits over all items with the item vectors as a tied output layer.

        Args:
            x: (..., D) states or embeddings.
            item_vectors: (V, D) ``self.embeddings.item_vectors()`` when the caller already
                has it (it depends on the weights only: build it once per scoring pass).

        Returns:
            (..., num_items) scores ``x @ item_vectors.T`` (`EventEmbedding.item_vectors`: the
            item embedding, plus its attribute features with ``config.output_features``).
            Index 0 (PAD) and the other specials are included; mask them in the loss if they
            must never be predicted.
        """
        if item_vectors is None:
            item_vectors = self.embeddings.item_vectors()
        return x @ item_vectors.T

    @property
    def scores_categories(self) -> bool:
        """Whether an item's output vector adds its category embeddings (``output_features``
        with categories): the item -> category table is then part of the model."""
        return self.embeddings.item_categories is not None

    @torch.no_grad()
    def set_item_categories(self, table: torch.Tensor | np.ndarray) -> None:
        """Store each item's category indices, used by its output vector.

        Args:
            table: (num_items, max_categories) integer category indices of each item index
                (`Featurizer.item_category_table`), PAD (0) where it has fewer or none.

        Raises:
            ConfigError: the encoder does not score with categories (``output_features``
                off or ``num_categories`` 0), or the shape / indices do not match.
        """
        if self.embeddings.item_categories is None:
            raise ConfigError(
                "this encoder does not score items with their categories: build it with "
                "output_features=True and num_categories > 0"
            )
        table = torch.as_tensor(np.asarray(table), dtype=torch.long)
        expected = tuple(self.embeddings.item_categories.shape)
        if tuple(table.shape) != expected:
            raise ConfigError(
                f"item categories must have shape (num_items, max_categories) = {expected}, "
                f"got {tuple(table.shape)}"
            )
        if len(table) and (int(table.min()) < 0 or int(table.max()) >= self.config.num_categories):
            raise ConfigError(
                f"item categories must be indices in [0, {self.config.num_categories}), got "
                f"[{int(table.min())}, {int(table.max())}]"
            )
        self.embeddings.item_categories.copy_(table)

    @torch.no_grad()
    def set_item_text_features(self, vectors: torch.Tensor | np.ndarray) -> None:
        """Store precomputed item text vectors (e.g. sentence-encoder embeddings of titles).

        Args:
            vectors: (num_items, text_dim) float tensor, row i for item index i (rows of
                specials / items without text are zero).

        Raises:
            ConfigError: the encoder has ``text_dim`` 0, or the shape does not match.
        """
        if self.embeddings.item_text is None:
            raise ConfigError(
                "`text_dim` is 0: build the encoder with text_dim > 0 to use text features"
            )
        vectors = torch.as_tensor(vectors)
        expected = tuple(self.embeddings.item_text.shape)
        if tuple(vectors.shape) != expected:
            raise ConfigError(
                f"item text features must have shape (num_items, text_dim) = {expected}, "
                f"got {tuple(vectors.shape)}"
            )
        self.embeddings.item_text.copy_(vectors)

    def item_text_features(self, items: torch.Tensor) -> torch.Tensor:
        """The saved sentence-encoder vectors of items, as the encoder reads them (unprojected).

        Args:
            items: (...) long item indices (a `Batch`'s ``items``, (B, T)).

        Returns:
            (..., text_dim) float: row of each index; zero for specials and items without text.

        Raises:
            ConfigError: the encoder has no item text (``text_dim`` 0).
        """
        if self.embeddings.item_text is None:
            raise ConfigError(
                "this encoder has no item text vectors (`text_dim` 0): pretrain it with an "
                "items table (`data.items`) to read items by their text"
            )
        return self.embeddings.item_text[items]

    def add_items(
        self,
        items: ItemTable | pd.DataFrame | str | Path,
        *,
        id_column: str = "item",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        progress: bool | None = None,
        cache_dir: str | Path | None = None,
    ) -> AddedItems:
        """Open the catalogue: give every item of ``items`` the model does not know a vector
        from its text (the text model is loaded for this), no retraining. Afterwards `embed`
        reads the new items in histories, `recommend` ranks them, and `save_pretrained`
        keeps them. An item without text stays OOV and is counted.

        Args:
            items: an `ItemTable`, or a DataFrame / file with ``id_column`` and the text
                columns the model was trained with (``config.text_columns``); a model that
                scores items with their categories (`scores_categories`) also reads the
                column named as the training log's categories were (e.g. ``genres``).
            id_column: the id column of a DataFrame / file.
            batch_size, device, progress, cache_dir: text-model options
                (`userfm.encoder.text_model.encode_texts`).

        Returns:
            `AddedItems`: how many were added, already known, and without text.

        Example:
            >>> model.add_items("new_movies.csv")
            AddedItems(added=12, known=0, without_text=1)
            >>> model.recommend(log, candidates=new_ids)   # rank only today's new items
        """
        from userfm.encoder.open_catalogue import add_items

        return add_items(
            self,
            items,
            id_column=id_column,
            batch_size=batch_size,
            device=device,
            progress=progress,
            cache_dir=cache_dir,
        )

    def set_user_text_head(
        self, head: UserTextHead, *, text_model: TextModelInfo, phrases: list[str]
    ) -> None:
        """Attach a trained user-text head (`userfm.encoder.user_text.fit_user_text` calls
        this); the config records its width, text model and phrases, so it is saved."""
        self.user_text = head
        self.config.user_text_dim = text_model.dim
        self.config.user_text_model = text_model.name
        self.config.user_text_phrases = list(phrases)

    @torch.no_grad()
    def describe(
        self, histories: HistoriesLike, *, k: int = 5, **embed: Any
    ) -> dict[str, list[tuple[str, float]]]:
        """Each user's ``k`` nearest attribute phrases (e.g. genres) in the text space the
        user-text head maps embeddings into (`userfm.encoder.user_text`).

        Args:
            histories: as in `embed`.
            k: phrases per user.
            **embed: `embed` options (batch_size, device, progress, ...).

        Returns:
            user id -> [(phrase, cosine), ...], best first.

        Raises:
            ConfigError: the model has no user-text head, or it holds no phrases.
        """
        k = check_k(k)
        head = check_head(self)
        emb = self.embed(histories, **embed)
        phrases = self.config.user_text_phrases or []
        if not phrases:
            raise ConfigError("the user-text head holds no phrases to describe users with")
        table = head.phrase_vectors.float().cpu().numpy()  # (P, text_dim)
        sims = emb.text_vectors @ table.T  # (N, P)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return {
            user: [(phrases[j], float(sims[i, j])) for j in top[i]]
            for i, user in enumerate(emb.user_ids)
        }

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for ``torch.optim.AdamW``: decay only on 2-D weight matrices.

        Embeddings (items, actions, categories, time, positions), LayerNorm gains, biases and
        the pooling query get no decay. Decay on an embedding table shrinks every row each
        step while a rare item's row only gets gradient when that item appears, so tail items
        are pulled to zero (the head/tail imbalance DRO tries to fix); gains and biases set
        scale and offset, not capacity, so decaying them only biases them (as in nanoGPT/BERT).

        Args:
            weight_decay: decay of the weight-matrix group.

        Returns:
            ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...],
            "weight_decay": 0.0}]`` covering every trainable parameter exactly once.
        """
        return decay_groups(self, weight_decay)

    # ---- vocabularies, embedding API, save / load -------------------------------------
    def set_vocabs(self, vocabs: VocabSet) -> None:
        """Attach vocabularies; their sizes must match the config's index spaces."""
        cfg = self.config
        sizes = {
            "num_items": len(vocabs.items),
            "num_actions": len(vocabs.actions)
            if vocabs.actions is not None and cfg.num_actions
            else 0,
            "num_categories": (
                len(vocabs.categories)
                if vocabs.categories is not None and cfg.num_categories
                else 0
            ),
        }
        for name, size in sizes.items():
            if size != getattr(cfg, name):
                raise ConfigError(
                    f"vocabulary size {size} does not match `{name}`={getattr(cfg, name)}"
                )
        self.vocabs = vocabs

    @classmethod
    def from_log(
        cls,
        log: EventLog,
        *,
        min_count: int = 1,
        max_size: int | None = None,
        num_hash_buckets: int = 0,
        seed: int | None = None,
        items: ItemTable | None = None,
        item_text: list[str] | None = None,
        text_model: str | Path = DEFAULT_TEXT_MODEL,
        text_cache_dir: str | Path | None = None,
        **config_kwargs: Any,
    ) -> UserEncoder:
        """A new (untrained) encoder sized for ``log``: vocabularies built from it, actions and
        categories used when the log has them, and item text features when ``items`` is given.

        Args:
            log: the training log.
            min_count, max_size, num_hash_buckets: item vocabulary options (`build_vocabs`).
            seed: seed the weight initialisation.
            items: an item table (`userfm.data.items`) that describes items in words: each
                item's text is embedded by ``text_model`` and stored with the model.
            item_text: the table's columns an item's text is made of (default: all).
            text_model: the sentence encoder (`userfm.encoder.text_model`).
            text_cache_dir: where text vectors are cached (`encode_texts`).
            **config_kwargs: any `UserEncoderConfig` field (hidden_size, num_layers, ...).
        """
        vocabs = build_vocabs(
            log, min_count=min_count, max_size=max_size, num_hash_buckets=num_hash_buckets
        )
        text = None
        if items is not None:
            from userfm.encoder.item_vectors import vocab_text_vectors

            text, found = vocab_text_vectors(
                vocabs.items, items, item_text, text_model=text_model, cache_dir=text_cache_dir
            )
            config_kwargs.update(
                text_dim=found.model.dim,
                text_model=found.model.name,
                text_model_fingerprint=found.model.fingerprint,
                text_columns=found.columns,
            )
        if not log.has_time:
            config_kwargs.setdefault("use_time", False)
        if log.schema is not None:
            config_kwargs.setdefault("event_schema", log.schema.to_dict())
        if seed is not None:
            torch.manual_seed(seed)
        model = cls.from_vocabs(vocabs, **config_kwargs)
        if model.embeddings.item_categories is not None:
            model.set_item_categories(model.featurizer().item_category_table(log))
        if text is not None:
            model.set_item_text_features(text)
        return model

    @classmethod
    def from_vocabs(cls, vocabs: VocabSet, **config_kwargs: Any) -> UserEncoder:
        """A new (untrained) encoder whose index spaces match ``vocabs`` (actions and
        categories used when the vocabularies have them); ``config_kwargs`` set the other
        `UserEncoderConfig` fields."""
        sizes = {
            "num_items": len(vocabs.items),
            "num_actions": len(vocabs.actions) if vocabs.actions is not None else 0,
            "num_categories": len(vocabs.categories) if vocabs.categories is not None else 0,
        }
        return cls(UserEncoderConfig(**{**sizes, **config_kwargs}), vocabs=vocabs)

    def _require_vocabs(self) -> VocabSet:
        """The vocabularies, which every raw-id API (embed, recommend, item tables) needs.

        Raises:
            ConfigError: the encoder has none (built from a bare config).
        """
        if self.vocabs is None:
            raise ConfigError(
                "this encoder has no vocabularies; build it with UserEncoder.from_log(log) or "
                "load a saved model with UserEncoder.from_pretrained(dir)"
            )
        return self.vocabs

    def featurizer(self) -> Featurizer:
        """A `Featurizer` that encodes histories the way this model reads them."""
        vocabs = self._require_vocabs()
        cfg = self.config
        return Featurizer(
            vocabs,
            max_len=cfg.max_len,
            num_time_gap_buckets=cfg.num_time_gap_buckets,
            max_categories=cfg.max_categories,
        )

    def training_schema(self) -> EventSchema | None:
        """The `EventSchema` of the log this model was trained on (``config.event_schema``),
        which the embedding API reads DataFrames and files with by default; None when unknown
        (a model saved before userfm recorded it, or built without a log)."""
        d = self.config.event_schema
        return None if d is None else EventSchema.from_dict(d)

    def embed(
        self,
        histories: HistoriesLike,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        progress: bool | None = None,
        chunk_size: int | None = None,
        schema: EventSchema | None = None,
    ) -> UserEmbeddings:
        """Embed users; batched, length-sorted, no grad (`userfm.api.embed.embed`).

        Args:
            histories: an EventLog, DataFrame, datasets.Dataset, file path, mapping
                ``user -> item ids``, list of event dicts, or iterable of UserHistory.
            batch_size: users per forward pass.
            device: where to run (default: CUDA when available, else CPU).
            progress: show a progress bar (users); None: only when stderr is a terminal.
            chunk_size: users read and length-sorted together (default 32 batches).
            schema: column mapping for DataFrame / file / event-dict inputs (default:
                `training_schema`, else `EventSchema()`).

        Returns:
            `UserEmbeddings`: N user ids in input order and a (N, D) float32 matrix, with
            ``stats``.
        """
        from userfm.api.embed import embed  # the API depends on the encoder, not vice versa

        return embed(
            self,
            histories,
            batch_size=batch_size,
            device=device,
            progress=progress,
            chunk_size=chunk_size,
            schema=schema,
        )

    def iter_embed(
        self,
        histories: HistoriesLike,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        progress: bool | None = None,
        chunk_size: int | None = None,
        schema: EventSchema | None = None,
    ) -> Iterator[UserEmbeddings]:
        """Like `embed`, but yields one `UserEmbeddings` per chunk (constant memory).

        Args:
            histories, batch_size, device, progress, chunk_size, schema: as in `embed`.

        Yields:
            `UserEmbeddings` of up to ``chunk_size`` users, (n, D) float32, input order.
        """
        from userfm.api.embed import iter_embed

        return iter_embed(
            self,
            histories,
            batch_size=batch_size,
            device=device,
            progress=progress,
            chunk_size=chunk_size,
            schema=schema,
        )

    def item_embeddings(self) -> tuple[list[str], np.ndarray]:
        """The real items and their output embeddings (rows of the tied item table).

        Returns:
            (item ids in vocabulary order, (V_real, D) float32 matrix); specials
            (PAD/MASK/OOV) and hash buckets are left out.

        Raises:
            ConfigError: the encoder has no vocabularies.
        """
        tokens = list(self._require_vocabs().items.tokens)
        start = NUM_SPECIALS
        table = self.embeddings.item_vectors()[start : start + len(tokens)]  # (V_real, D)
        return tokens, table.detach().float().cpu().numpy()

    def recommend(
        self,
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
        """Top-k items per user by embedding · item embedding (`userfm.api.recommend`).

        Args:
            histories: as in `embed`.
            k: items per user, capped at the number of real items; ``None`` ranks every
                real item.
            exclude_seen: never recommend an item already in the user's (full) history.
            batch_size: users per forward pass.
            device: where to run (default: CUDA when available, else CPU).
            progress: show a progress bar (users); None: only when stderr is a terminal.
            chunk_size: users read and length-sorted together (default 32 batches).
            schema: column mapping for DataFrame / file / event-dict inputs (default:
                `training_schema`, else `EventSchema()`).
            item_block: items scored at a time (default 65,536): memory holds
                (batch_size, item_block + k) scores, not (batch_size, num_items).
            candidates: rank only these item ids (e.g. today's new items, after
                `add_items`); None: every real item.

        Returns:
            `Recommendations`: N user ids in input order, (N, k) item ids and scores.
        """
        from userfm.api.recommend import recommend

        return recommend(
            self,
            histories,
            k=k,
            exclude_seen=exclude_seen,
            batch_size=batch_size,
            device=device,
            progress=progress,
            chunk_size=chunk_size,
            schema=schema,
            item_block=item_block,
            candidates=candidates,
        )

    def export(self, directory: str | Path, *, format: str = "onnx") -> Path:
        """Export the user tower for serving (`userfm.api.onnx_export.export_onnx`): a padded
        batch of histories -> (B, D) embeddings, with the vocabularies and config beside it,
        read by `userfm.api.onnx_tower.OnnxUserTower` (onnxruntime).

        Args:
            directory: the output folder (written whole, then moved in).
            format: ``"onnx"`` (the only one).

        Returns:
            The folder.

        Raises:
            ConfigError: another format, the onnx extra missing, or no vocabularies.
        """
        if format != "onnx":
            raise ConfigError(f'`format` must be "onnx", got {format!r}')
        from userfm.api.onnx_export import export_onnx

        return export_onnx(self, directory)

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        card_data: dict | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **kwargs: Any,
    ) -> Path:
        """Write config.json (with the userfm version), model.safetensors, vocab.json and
        README.md (a model card; ``card_data`` as in `userfm.api.model_card.render_model_card`).
        The folder is written beside ``save_directory`` and moved in when complete; files of
        other names already there are kept.

        With ``push_to_hub=True`` the finished folder, card and vocabularies included, is then
        uploaded to the Hub repository ``repo_id`` (default: the folder's name, as in
        transformers), with the options of `userfm.api.hub.upload_to_hub` (``token``,
        ``private``, ``revision``, ``create_pr``, ``commit_message``...).

        Returns:
            The directory.
        """
        from userfm.api.hub import HUB_OPTIONS, upload_to_hub
        from userfm.api.model_card import render_model_card
        from userfm.outputs import staged_output_dir

        hub = {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs} if push_to_hub else {}
        if repo_id is not None and not push_to_hub:
            raise ConfigError("`repo_id` is for uploading: pass push_to_hub=True with it")
        with staged_output_dir(save_directory) as stage:  # a kill never leaves half a model
            with transformers_output(progress=False):  # one small file: no "shards" bar
                super().save_pretrained(stage, safe_serialization=True, **kwargs)
            if self.vocabs is not None:
                self.vocabs.save(stage / VOCAB_FILE)
            else:
                logger.warning(
                    "saving an encoder without vocabularies: it can run on Batch tensors, but "
                    "embed() needs vocab.json (attach vocabularies with set_vocabs())"
                )
            (stage / CARD_FILE).write_text(render_model_card(self, card_data), encoding="utf-8")
        if push_to_hub:  # the finished folder, not the staging one transformers would name
            upload_to_hub(save_directory, repo_id or Path(save_directory).resolve().name, **hub)
        return Path(save_directory)

    def push_to_hub(  # type: ignore[override]
        self, repo_id: str, *, card_data: dict | None = None, **hub: Any
    ) -> Any:
        """Upload the encoder to the Hub repository ``repo_id`` as `save_pretrained` writes it
        (transformers' own would replace the model card and leave out vocab.json).

        Args:
            repo_id: ``"name"`` or ``"owner/name"``.
            card_data: as in `save_pretrained`.
            **hub: `userfm.api.hub.upload_to_hub`'s options (``token``, ``private``...).

        Returns:
            huggingface_hub's ``CommitInfo`` of the upload.
        """
        import tempfile

        from userfm.api.hub import upload_to_hub

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / repo_id.split("/")[-1], card_data=card_data)
            return upload_to_hub(folder, repo_id, **hub)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any
    ) -> UserEncoder:
        """Load a directory written by `save_pretrained` (safetensors only, no pickle).

        Raises:
            FileNotFoundError: the folder has no ``config.json``.
            FileFormatError: ``config.json``, ``model.safetensors`` or ``vocab.json`` is
                damaged (not JSON, truncated, weights missing, extra or of other shapes than
                the config's); the message names the file.
            ConfigError: ``config.json`` holds an invalid field.
        """
        path = Path(pretrained_model_name_or_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a saved userfm encoder (no config.json there)")
        damaged = "the model folder is damaged; save or export the model again"
        try:
            json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FileFormatError(
                f"{path / 'config.json'} is not valid JSON ({e}); {damaged}"
            ) from e
        kwargs.setdefault("use_safetensors", True)
        with_info = kwargs.pop("output_loading_info", False)
        try:  # transformers' bar and load report: a damaged folder is one line, below
            with transformers_output(progress=False, reports=False):
                model, info = super().from_pretrained(
                    path, *args, output_loading_info=True, **kwargs
                )
        except SafetensorError as e:
            raise FileFormatError(
                f"{path / 'model.safetensors'} cannot be read ({e}); {damaged}"
            ) from e
        except RuntimeError as e:
            if "size mismatch" not in str(e) and "ignore_mismatched_sizes" not in str(e):
                raise
            raise FileFormatError(
                f"{path / 'model.safetensors'} holds weights of other shapes than "
                f"{path / 'config.json'} describes; {damaged}"
            ) from e
        # transformers initialises what the file lacks at random: a silently different model
        wrong = {k: sorted(info[k]) for k in LOAD_PROBLEMS if info.get(k)}
        if wrong:
            found = "; ".join(
                f"{k.replace('_', ' ')}: {', '.join(map(str, v))}" for k, v in wrong.items()
            )
            raise FileFormatError(
                f"{path / 'model.safetensors'} does not hold the weights {path / 'config.json'} "
                f"describes ({found}); {damaged}"
            )
        if (path / VOCAB_FILE).is_file():
            try:
                model.set_vocabs(VocabSet.load(path / VOCAB_FILE))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
                if isinstance(e, UserfmError):
                    raise
                raise FileFormatError(
                    f"{path / VOCAB_FILE} is not a userfm vocabulary ({type(e).__name__}: {e}); "
                    f"{damaged}"
                ) from e
        return (model, info) if with_info else model
