"""`UserEncoderConfig`: every hyper-parameter of the behaviour encoder, checked and JSON-safe."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from userfm._version import __version__
from userfm.data.schema import EventSchema
from userfm.errors import ConfigError, check_int, field_error, is_number

POOLINGS = ("last", "mean", "attention")
ATTN_BACKENDS = ("sdpa", "xformers", "auto")
TEXT_ADAPTORS = ("linear", "mlp")


class UserEncoderConfig(PretrainedConfig):
    """Configuration of a :class:`~userfm.encoder.UserEncoder`.

    The config checks itself when built and names the bad field; it round-trips through
    ``to_json_string`` / ``save_pretrained`` / ``from_pretrained`` and is registered with
    ``AutoConfig`` as ``"userfm-encoder"``. Unknown keys (e.g. from a config written by a newer
    userfm) are kept as attributes, as transformers does.

    Args:
        num_items: size of the item index space, specials included (``len(vocabs.items)``);
            indices 0/1/2 are PAD/MASK/OOV, so it must be > 3.
        num_actions: size of the action index space; 0 = the log has no actions.
        num_categories: size of the category index space; 0 = no category features.
        max_categories: C, categories kept per event (the first C listed), summed as a bag.
        text_dim: width of precomputed item text vectors (e.g. 384 for all-MiniLM-L6-v2);
            0 = no text features. An item's text vector is projected and added to its id
            embedding, in its input token and in its output vector alike.
        text_model: the sentence encoder that made the text vectors (an alias such as
            ``"all-MiniLM-L6-v2"`` or a folder, `userfm.encoder.text_model`); `add_items`
            loads it to embed new items' text. None: no text features.
        text_model_fingerprint: the text model's `TextModelInfo.fingerprint`: `add_items`
            refuses a model of another fingerprint (its vectors live in another space).
        text_adaptor: how a text vector becomes a D-wide item feature: ``"linear"`` (one
            projection) or ``"mlp"`` (Linear(text_dim, 4D) -> GELU -> Linear(4D, D): the
            adaptor between a frozen text space and the recommender matters more than the
            text model's size, UniSRec).
        text_columns: the item-table columns an item's text is made of, in order
            (`userfm.data.items.item_text`), e.g. ``["title", "genres"]``.
        item_ids: learn an id embedding per item. False: the **inductive** mode, no id table
            at all: an item is its text (and side features) only, so the model reads items
            it has never seen as well as known ones (needs ``text_dim`` > 0).
        item_id_dropout: in training, the probability that an item occurrence (an input
            event, or an item's output vector in a step) is read without its id embedding,
            from its text and side features alone: teaches the model to read items it has
            no id for (new items added with `add_items`). 0 = off; needs ``text_dim`` > 0.
        user_text_dim: width of the user-text head's output (`userfm.encoder.user_text`,
            set by `fit_user_text`): user embeddings mapped into a text model's space for
            `UserEmbeddings.search` and `UserEncoder.describe`; 0 = no head.
        user_text_model: the text model of that space (queries are embedded with it).
        user_text_phrases: the attribute phrases `describe` picks from.
        output_features: score items with their attribute features too: an item's output
            vector is its id embedding + the embeddings of its categories + its projected
            text vector (the features of its input token), not the id embedding alone, so a
            rare item shares what its genre or title has learned (needs the item -> category
            table, `UserEncoder.set_item_categories`, when categories are used).
        hidden_size: D, the width of every token state and of the user embedding.
        num_layers: number of transformer blocks.
        num_heads: attention heads; must divide ``hidden_size``.
        intermediate_size: MLP width; ``None`` means ``4 * hidden_size`` (stored resolved).
        dropout: dropout on the input tokens, residual branches and MLP.
        attn_dropout: dropout on the attention probabilities.
        max_len: longest history the position embedding covers.
        num_time_gap_buckets: size of the log-bucketed time-gap index space (0 = pad,
            1 = first event); must match the featurizer's value.
        use_time: add time-gap, hour and weekday embeddings to each token.
        pooling: how ``states`` become the user ``embedding``: ``"last"`` valid position,
            masked ``"mean"``, or ``"attention"`` (one learned query over valid positions).
        normalize: L2-normalise the pooled embedding.
        attn_backend: ``"sdpa"`` (PyTorch, any device), ``"xformers"`` (CUDA + the ``xformers``
            extra) or ``"auto"`` (xformers when usable, else sdpa).
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: std of the normal init of every weight matrix and embedding.
        event_schema: the `EventSchema` (as a dict) of the log the model was trained on, with
            its timestamp unit resolved: `embed` / `recommend` / ``userfm embed`` read
            DataFrames and files with it unless given another, so the columns that trained the
            model (actions, categories) are read again. None: the default schema.
        userfm_version: the userfm version that wrote this config (re-stamped on every save).
    """

    model_type = "userfm-encoder"
    # transformers 4.x builds `self.__class__()` when writing a diff dict unless this is set;
    # `num_items` has no sensible default, so that call would fail.
    has_no_defaults_at_init = True

    def __init__(
        self,
        *,
        num_items: int | None = None,
        num_actions: int = 0,
        num_categories: int = 0,
        max_categories: int = 4,
        text_dim: int = 0,
        text_model: str | None = None,
        text_model_fingerprint: str | None = None,
        text_columns: list[str] | None = None,
        text_adaptor: str = "linear",
        item_ids: bool = True,
        item_id_dropout: float = 0.0,
        user_text_dim: int = 0,
        user_text_model: str | None = None,
        user_text_phrases: list[str] | None = None,
        output_features: bool = False,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        intermediate_size: int | None = None,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        max_len: int = 200,
        num_time_gap_buckets: int = 32,
        use_time: bool = True,
        pooling: str = "last",
        normalize: bool = False,
        attn_backend: str = "sdpa",
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        event_schema: dict[str, Any] | None = None,
        userfm_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Plain attributes set before the base __init__ (the custom-config pattern that works in
        # transformers 4.x and 5.x); the base class takes the generic keys (dtype, ...) from kwargs.
        self.num_items = num_items
        self.num_actions = num_actions
        self.num_categories = num_categories
        self.max_categories = max_categories
        self.text_dim = text_dim
        self.text_model = text_model
        self.text_model_fingerprint = text_model_fingerprint
        # a tuple (from YAML / JSON as a list) is kept as a list; anything else is checked
        self.text_columns = list(text_columns) if isinstance(text_columns, tuple) else text_columns
        self.text_adaptor = text_adaptor
        self.item_ids = item_ids
        self.item_id_dropout = item_id_dropout
        self.user_text_dim = user_text_dim
        self.user_text_model = user_text_model
        self.user_text_phrases = user_text_phrases
        self.output_features = output_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = (
            4 * hidden_size
            if intermediate_size is None and is_number(hidden_size)
            else intermediate_size
        )
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.max_len = max_len
        self.num_time_gap_buckets = num_time_gap_buckets
        self.use_time = use_time
        self.pooling = pooling
        self.normalize = normalize
        self.attn_backend = attn_backend
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.event_schema = event_schema
        self.userfm_version = userfm_version or __version__
        super().__init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Raise :class:`~userfm.errors.ConfigError` naming the first invalid field.

        Called by ``__init__`` and again by the model, which catches fields changed after
        construction (``config.num_heads = 3``).
        """
        if self.num_items is None:
            raise ConfigError(
                "`num_items` is required: the item index space size, specials included "
                "(e.g. `len(vocabs.items)`)"
            )
        # Stored back as Python numbers: numpy ones are accepted but JSON cannot write them.
        self.num_items = check_int(
            "num_items", self.num_items, minimum=4, why="indices 0-2 are PAD/MASK/OOV"
        )
        for name in ("num_actions", "num_categories", "text_dim", "user_text_dim"):
            value = check_int(name, getattr(self, name), minimum=0, why="0 turns the feature off")
            setattr(self, name, value)
        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_len",
            "max_categories",
        ):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"`num_heads` must divide `hidden_size`, got num_heads={self.num_heads} "
                f"and hidden_size={self.hidden_size}"
            )
        self.num_time_gap_buckets = check_int(
            "num_time_gap_buckets",
            self.num_time_gap_buckets,
            minimum=2,
            why="0 is padding and 1 the first event",
        )
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if not is_number(value) or not 0.0 <= value < 1.0:
                raise field_error(name, value, "a float in [0, 1)")
            setattr(self, name, float(value))
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise field_error(name, value, "a float > 0")
            setattr(self, name, float(value))
        for name in ("use_time", "normalize", "output_features", "item_ids"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"`{name}` must be true or false, got {getattr(self, name)!r}")
        self._check_text()
        if self.event_schema is not None:
            try:
                EventSchema.from_dict(self.event_schema)
            except (TypeError, AttributeError, ConfigError) as e:
                raise ConfigError(
                    f"`event_schema` must be an EventSchema dict (EventSchema.to_dict()): {e}"
                ) from e
        if self.pooling not in POOLINGS:
            raise ConfigError(f"`pooling` must be one of {POOLINGS}, got {self.pooling!r}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ConfigError(
                f"`attn_backend` must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}"
            )

    def _check_text(self) -> None:
        """The text fields: a model without an id table or with id dropout reads text."""
        value = self.item_id_dropout
        if not is_number(value) or not 0.0 <= value <= 1.0:
            raise field_error("item_id_dropout", value, "a probability in [0, 1]")
        self.item_id_dropout = float(value)
        if not self.text_dim and not self.item_ids:
            raise ConfigError(
                "`item_ids: false` (the inductive mode) reads items from their text only: it "
                "needs text features (`text_dim` > 0; pretraining sets it from `data.items`)"
            )
        if not self.text_dim and self.item_id_dropout:
            raise ConfigError(
                f"`item_id_dropout`={self.item_id_dropout} hides item ids to teach the model "
                "to read their text: it needs text features (`text_dim` > 0; pretraining sets "
                "it from `data.items`)"
            )
        if self.text_adaptor not in TEXT_ADAPTORS:
            raise field_error("text_adaptor", self.text_adaptor, f"one of {TEXT_ADAPTORS}")
        columns = self.text_columns
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns)
        ):
            raise field_error("text_columns", columns, "a list of column names")
        for name in ("text_model", "text_model_fingerprint"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise field_error(name, getattr(self, name), "a string or None")

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a dict, stamping the current userfm version (like ``transformers_version``)."""
        output = super().to_dict()
        output["userfm_version"] = __version__
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        """Diff dict against the base config; every userfm field is always written."""
        output = super().to_diff_dict()
        output["userfm_version"] = __version__
        return output
