"""Gated cross-attention into a frozen decoder (Flamingo / User-LLM).

Before every N-th decoder layer, the hidden states cross-attend to the K user latents through
a tanh gate initialised to 0, then pass a gated feed-forward layer: at initialisation the
wrapped LLM computes exactly what the frozen LLM computes (a test checks the logits).

The blocks are attached with forward pre-hooks on the decoder layers instead of replacing the
layers: the LLM's own modules, parameter names and state dict stay untouched (peft's LoRA and
``save_pretrained`` see a plain model), and `CrossAttentionHooks.remove` restores it. The
latents are set on a shared `UserContext` before a forward pass or ``generate()``; each
decoding step's new positions attend to the same K latents, so the KV cache needs nothing
extra.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from userfm.errors import ConfigError

#: where decoder layers live in known model families (Llama / Mistral / Qwen / SmolLM, GPT-2,
#: OPT, GPT-NeoX); ``layers_path`` overrides
LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers")


def find_decoder_layers(llm: nn.Module, path: str | None = None) -> nn.ModuleList:
    """The LLM's decoder layers, from ``path`` (dotted attribute path) or `LAYER_PATHS`."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm  # unwrap peft
    for candidate in [path] if path else LAYER_PATHS:
        try:
            layers = operator.attrgetter(candidate)(base)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    tried = path or ", ".join(LAYER_PATHS)
    raise ConfigError(
        f"cannot find the decoder layers of {type(base).__name__} at {tried}; pass "
        "`layers_path` (the dotted path of its nn.ModuleList of decoder layers)"
    )


@dataclass
class UserContext:
    """The K latents the cross-attention blocks read: (B, K, H), set around each call."""

    latents: torch.Tensor | None = None


class GatedCrossAttention(nn.Module):
    """x (B, L, H) attends to latents (B, K, H); tanh-gated attention and feed-forward.

    Args:
        dim: the LLM's hidden size H.
        heads: attention heads.
        dim_head: width of each head.
        ff_mult: feed-forward expansion.
    """

    def __init__(self, *, dim: int, heads: int = 4, dim_head: int = 32, ff_mult: int = 2):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * ff_mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * ff_mult, dim, bias=False),
        )
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(B, L, H) hidden states, (B', K, H) latents -> (B, L, H).

        B may be a multiple of B' (``generate`` with several beams or samples per prompt
        repeats each prompt consecutively); the latents are repeated to match.
        """
        if latents.shape[0] != x.shape[0]:
            assert x.shape[0] % latents.shape[0] == 0, (x.shape, latents.shape)
            latents = latents.repeat_interleave(x.shape[0] // latents.shape[0], dim=0)
        dtype = x.dtype
        h = x.to(self.to_q.weight.dtype)
        latents = latents.to(h.dtype)
        q = rearrange(self.to_q(self.norm(h)), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.to_kv(latents), "b k (two h d) -> two b h k d", two=2, h=self.heads)
        attn = rearrange(F.scaled_dot_product_attention(q, k, v), "b h l d -> b l (h d)")
        h = h + torch.tanh(self.attn_gate) * self.to_out(attn)
        h = h + torch.tanh(self.ff_gate) * self.ff(h)
        return h.to(dtype)


class CrossAttentionHooks:
    """Runs a `GatedCrossAttention` before each chosen decoder layer, via forward pre-hooks.

    Args:
        layers: the LLM's decoder layers (`find_decoder_layers`).
        blocks: one block per chosen layer.
        positions: indices of the chosen layers (same length as ``blocks``).
        context: where the latents are read from.
    """

    def __init__(
        self,
        layers: nn.ModuleList,
        blocks: Sequence[GatedCrossAttention],
        positions: Sequence[int],
        context: UserContext,
    ):
        assert len(blocks) == len(positions)
        self.context = context
        self.handles = [
            layers[i].register_forward_pre_hook(self._hook(block), with_kwargs=True)
            for i, block in zip(positions, blocks, strict=True)
        ]

    def _hook(self, block: GatedCrossAttention):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            latents = self.context.latents
            if latents is None:  # no user context set: the plain LLM
                return None
            if args:  # hidden states passed positionally (GPT-2, Llama)
                return (block(args[0], latents), *args[1:]), kwargs
            kwargs = dict(kwargs, hidden_states=block(kwargs["hidden_states"], latents))
            return args, kwargs

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def cross_attention_positions(num_layers: int, every: int) -> list[int]:
    """Layers that get a block: 0, every, 2 * every, ... (< num_layers)."""
    if every < 1:
        raise ConfigError(f"`cross_attn_every` must be >= 1, got {every}")
    return list(range(0, num_layers, every))
