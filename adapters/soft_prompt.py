"""Soft prompts: K user vectors prepended to the LLM's input embeddings.

The vectors are brought to the scale of the LLM's token embeddings: a freshly initialised
projection has a scale unrelated to them (far smaller for SmolLM2), and a frozen LLM then
treats the prompt as near-silence and learns from it only slowly (our probe: a 4-token soft
prompt barely moved in 250 steps). `SoftPromptScale` normalises each vector and multiplies
it by a learned scalar initialised to the measured RMS of the token embeddings, the same
reason peers multiply soft prompts by a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def token_embedding_rms(embedding: nn.Embedding) -> float:
    """Root mean square of the LLM's token embedding entries (one scalar)."""
    with torch.no_grad():
        return float(embedding.weight.float().pow(2).mean().sqrt())


class SoftPromptScale(nn.Module):
    """(B, K, H) -> (B, K, H) with per-vector RMS ``scale`` (learned, initialised to ``rms``)."""

    def __init__(self, rms: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(rms)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, x.shape[-1:], eps=1e-12) * self.scale


def prepend_soft_prompt(
    prompt: torch.Tensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Put K soft-prompt vectors in front of right-padded token embeddings.

    Args:
        prompt: (B, K, H) soft prompt.
        inputs_embeds: (B, L, H) token embeddings.
        attention_mask: (B, L) 1 at tokens, 0 at padding.
        labels: (B, L) target ids with -100 where there is no loss, or None.

    Returns:
        inputs_embeds (B, K + L, H) in the LLM's dtype, attention_mask (B, K + L) with ones
        over the prompt, labels (B, K + L) with -100 over the prompt (or None).
    """
    B, K, _ = prompt.shape
    embeds = torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)
    ones = attention_mask.new_ones(B, K)
    mask = torch.cat([ones, attention_mask], dim=1)
    if labels is not None:
        labels = torch.cat([labels.new_full((B, K), -100), labels], dim=1)
    return embeds, mask, labels
