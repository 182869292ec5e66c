"""Soft prompts: K user vectors among the LLM's input embeddings (inside the user turn; see
`userfm.adapters.text`).

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
