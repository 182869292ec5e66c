"""Model cards: every `save_pretrained` writes README.md, the card text filled from
model_cards/<template> under the Hugging Face Hub's metadata header (`huggingface_hub`'s
`ModelCard` / `ModelCardData`: library, tags, base model, metrics as the hub reads them)."""

from __future__ import annotations

import datetime as _dt
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

import torch
import transformers
from huggingface_hub import ModelCard, ModelCardData

from userfm._version import __version__

if TYPE_CHECKING:
    from userfm.encoder.model import UserEncoder


def markdown_table(rows: dict[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows.items()
    ]
    return "\n".join(lines)


def fill_card(
    template: str, values: dict[str, Any], card_data: dict[str, Any], metadata: ModelCardData
) -> str:
    """Fill ``model_cards/<template>`` with ``values`` plus what every card carries: the
    training-data and metrics tables from ``card_data`` and the version / date stamp; the
    text goes under ``metadata`` as the hub's YAML header (`ModelCard`)."""
    training = card_data.get("training_data") or {}
    metrics = card_data.get("metrics") or {}
    values = {
        **values,
        "training_data": markdown_table(training, ("fact", "value"))
        if training
        else "Not recorded.",
        "metrics": markdown_table(metrics, ("metric", "value"))
        if metrics
        else "No metrics recorded.",
        "userfm_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "date": _dt.date.today().isoformat(),
    }
    text = resources.files("userfm.model_cards").joinpath(template).read_text(encoding="utf-8")
    body = Template(text).substitute(values)
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}"))


def render_model_card(model: UserEncoder, card_data: dict[str, Any] | None = None) -> str:
    """Fill the card template for ``model``.

    Args:
        model: the encoder being saved.
        card_data: optional keys ``name`` (str), ``trained`` (bool, default True),
            ``training_data`` (dict of facts, e.g. the reader's stats), ``metrics`` (dict
            metric name -> value, with the protocol in the name or a ``protocol`` key).
    """
    card_data = card_data or {}
    cfg = model.config
    vocabs = model.vocabs
    trained = card_data.get("trained", True)
    values = {
        "name": card_data.get("name", "userfm behaviour encoder"),
        "num_layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "num_heads": cfg.num_heads,
        "max_len": cfg.max_len,
        "pooling": cfg.pooling,
        "normalized": ", L2-normalised" if cfg.normalize else "",
        "trained_note": (
            ""
            if trained
            else "**This encoder is untrained (random weights)**: its embeddings only reflect "
            "item identity overlap, not learned behaviour. Pretrain it with `userfm pretrain`."
        ),
        "num_items": cfg.num_items,
        "num_actions": cfg.num_actions or "not used",
        "num_categories": cfg.num_categories or "not used",
        "text_features": _text_features(cfg),
        "user_text": _user_text(cfg),
        "output_layer": _output_layer(cfg),
        "time_features": "gap to previous event (log buckets), hour, weekday"
        if cfg.use_time
        else "not used",
    }
    assert vocabs is None or len(vocabs.items) == cfg.num_items
    metadata = ModelCardData(
        library_name="userfm",
        pipeline_tag="feature-extraction",
        tags=["user-embedding", "recommender-systems", "userfm"],
    )
    return fill_card("template.md", values, card_data, metadata)


def _text_features(cfg: Any) -> str:
    """The card's line on item text: which text model, of which columns, how wide."""
    if not cfg.text_dim:
        return "not used"
    model = f"`{cfg.text_model}`" if cfg.text_model else "an unnamed text model"
    columns = ", ".join(f"`{c}`" for c in cfg.text_columns or []) or "unnamed columns"
    line = f"{cfg.text_dim}-d vectors of {columns} by {model}, projected"
    if not cfg.item_ids:
        return line + " (inductive: no id table, items are read from their text only)"
    if cfg.item_id_dropout:
        line += f" (ID dropout {cfg.item_id_dropout:g}: trained to read items from text alone)"
    return line + "; `add_items` gives new items a vector from their text"


def _user_text(cfg: Any) -> str:
    """The card's line on the user-text head (`userfm.encoder.user_text`)."""
    if not cfg.user_text_dim:
        return "none (`userfm.encoder.user_text.fit_user_text` trains one)"
    phrases = len(cfg.user_text_phrases or [])
    return (
        f"user embeddings mapped into the {cfg.user_text_dim}-d space of "
        f"`{cfg.user_text_model}`: `UserEmbeddings.search` ranks users by a text query, "
        f"`describe` names each user's nearest of {phrases} attribute phrases"
    )


def _output_layer(cfg: Any) -> str:
    """What an item's output vector is made of (the parts of its input token)."""
    features = (["category"] if cfg.output_features and cfg.num_categories else []) + (
        ["text"] if cfg.text_dim else []
    )
    if not features:
        return "their id embedding (the input item embedding, tied)"
    named = f"their {' and '.join(features)} features"
    return f"their id embedding plus {named}" if cfg.item_ids else f"{named} (no id table)"
