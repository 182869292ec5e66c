"""The README.md card every `UserConditionedLM.save_pretrained` writes (model_cards/adapter_template.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCardData

from userfm.api.model_card import fill_card

if TYPE_CHECKING:
    from userfm.adapters.model import UserConditionedLM

#: the hub tag of each mode
MODE_TAG = {
    "soft_prompt": "soft-prompt",
    "cross_attn": "cross-attention",
    "text": "text-prompt",
    "none": "no-user-context",
}
MODE_TEXT = {
    "soft_prompt": "a soft prompt in the user turn of the LLM's chat template",
    "cross_attn": "the inputs of tanh-gated cross-attention blocks inside the LLM's decoder",
}


def _summary(cfg) -> str:
    if cfg.mode == "text":
        return (
            f"A **userfm text-prompt baseline** for the frozen LLM `{cfg.llm}`: the user's "
            f"history written as text before each question (at most {cfg.text_tokens} tokens "
            "of it, most recent events first); no behaviour encoder."
        )
    if cfg.mode == "none":
        return (
            f"A **userfm no-user baseline** for the frozen LLM `{cfg.llm}`: the question alone, "
            "no user context; it measures what the question format and answer priors give away."
        )
    return (
        "A **userfm adapter**: a Perceiver resampler turns a user's behaviour-encoder states "
        f"into {cfg.num_latents} vectors"
        + (
            f", and its {cfg.recent_events} most recent events into one each"
            + (" (with each event's item text vector)" if cfg.recent_text else "")
            + ","
            if cfg.recent_events
            else ""
        )
        + f" for the frozen LLM `{cfg.llm}`, as {MODE_TEXT[cfg.mode]}."
    )


def render_adapter_card(model: UserConditionedLM, card_data: dict[str, Any] | None = None) -> str:
    """Fill the adapter card; ``card_data`` may hold ``name``, ``metrics`` and ``training_data``
    (dicts of name -> value)."""
    card_data = card_data or {}
    cfg = model.config
    counts = model.trainable_parameters()
    values = {
        "name": card_data.get("name", f"userfm {cfg.mode} adapter"),
        "mode": cfg.mode,
        "summary": _summary(cfg),
        "num_latents": cfg.num_latents,
        "recent_events": cfg.recent_events,
        "depth": cfg.depth,
        "heads": cfg.heads,
        "lora": f"r={cfg.lora_r}, alpha={cfg.lora_alpha}" if cfg.lora else "no",
        "encoder": (cfg.encoder or "not recorded") if cfg.reads_encoder else "none",
        "encoder_trained": "fine-tuned with the adapter" if cfg.train_encoder else "frozen",
        "llm": cfg.llm or "not recorded",
        "trainable": f"{counts['trainable']:,} of {counts['trainable'] + counts['frozen']:,}",
    }
    metadata = ModelCardData(
        library_name="userfm",
        base_model=cfg.llm if cfg.llm and "/" in cfg.llm and not Path(cfg.llm).exists() else None,
        tags=["user-embedding", "llm-personalisation", MODE_TAG[cfg.mode], "userfm"]
        + (["lora", "peft"] if cfg.lora else []),
    )  # base_model: only a hub id; a local path or alias names no hub model
    return fill_card("adapter_template.md", values, card_data, metadata)
