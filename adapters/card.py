"""The README.md card every `UserConditionedLM.save_adapter` writes (model_cards/adapter_template.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from userfm.api.model_card import fill_card

if TYPE_CHECKING:
    from userfm.adapters.model import UserConditionedLM

MODE_TEXT = {
    "soft_prompt": "a soft prompt prepended to the LLM's input embeddings",
    "cross_attn": "the inputs of tanh-gated cross-attention blocks inside the LLM's decoder",
}


def render_adapter_card(model: UserConditionedLM, card_data: dict[str, Any] | None = None) -> str:
    """Fill the adapter card; ``card_data`` may hold ``name``, ``metrics`` and ``training_data``
    (dicts of name -> value)."""
    card_data = card_data or {}
    cfg = model.config
    counts = model.trainable_parameters()
    values = {
        "name": card_data.get("name", f"userfm {cfg.mode} adapter"),
        "mode": cfg.mode,
        "mode_text": MODE_TEXT[cfg.mode],
        "num_latents": cfg.num_latents,
        "depth": cfg.depth,
        "heads": cfg.heads,
        "lora": f"r={cfg.lora_r}, alpha={cfg.lora_alpha}" if cfg.lora else "no",
        "encoder": cfg.encoder or "not recorded",
        "encoder_trained": "fine-tuned with the adapter" if cfg.train_encoder else "frozen",
        "llm": cfg.llm or "not recorded",
        "trainable": f"{counts['trainable']:,} of {counts['trainable'] + counts['frozen']:,}",
    }
    return fill_card("adapter_template.md", values, card_data)
