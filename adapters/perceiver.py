"""`PerceiverResampler`: a variable-length history of encoder states -> K vectors for an LLM.

K learned latents cross-attend to the encoder states (Flamingo, Alayrac et al. 2022; the
keys are the states and the latents themselves, so a latent always has something to attend
to), ``depth`` times, each followed by a feed-forward layer. Unlike the peer implementations
this one takes a key-padding mask: user histories differ in length, and a padded position
must have no effect on the output (a test checks it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from userfm.errors import ConfigError


class PerceiverAttention(nn.Module):
    """Latents (B, K, D) attend to [states; latents] (B, T + K, D) with a key mask."""

    def __init__(self, *, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_states = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, states: torch.Tensor, latents: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, T, D) states, (B, K, D) latents, (B, T + K) bool key mask -> (B, K, D)."""
        x = self.norm_states(states)
        lat = self.norm_latents(latents)
        kv_in = torch.cat([x, lat], dim=1)  # (B, T + K, D)
        q = rearrange(self.to_q(lat), "b k (h d) -> b h k d", h=self.heads)
        k, v = rearrange(self.to_kv(kv_in), "b n (two h d) -> two b h n d", two=2, h=self.heads)
        mask = key_mask[:, None, None, :]  # (B, 1, 1, T + K): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, K, d)
        return self.to_out(rearrange(out, "b h k d -> b k (h d)"))


class FeedForward(nn.Sequential):
    def __init__(self, *, dim: int, mult: int):
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )


class PerceiverResampler(nn.Module):
    """K learned latents summarise encoder states; output projected to the LLM's width.

    Args:
        dim: width D of the encoder states.
        out_dim: width H of the LLM's hidden states.
        num_latents: K, the number of output vectors.
        depth: cross-attention + feed-forward layers.
        heads: attention heads.
        dim_head: width of each head.
        ff_mult: feed-forward expansion.

    Example:
        >>> r = PerceiverResampler(dim=32, out_dim=64, num_latents=4)
        >>> r(torch.randn(2, 7, 32), torch.ones(2, 7, dtype=torch.bool)).shape
        torch.Size([2, 4, 64])
    """

    def __init__(
        self,
        *,
        dim: int,
        out_dim: int,
        num_latents: int = 8,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 32,
        ff_mult: int = 4,
    ):
        super().__init__()
        for name, value in dict(
            dim=dim,
            out_dim=out_dim,
            num_latents=num_latents,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            ff_mult=ff_mult,
        ).items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{name}` must be an integer > 0, got {value!r}")
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * dim**-0.5)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(dim=dim, heads=heads, dim_head=dim_head),
                    FeedForward(dim=dim, mult=ff_mult),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)

    @property
    def num_latents(self) -> int:
        return self.latents.shape[0]

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Summarise histories.

        Args:
            states: (B, T, D) encoder states.
            mask: (B, T) bool, True at real events (padding: False). A user without events
                gets the latents' own summary.

        Returns:
            (B, K, out_dim).
        """
        B = states.shape[0]
        latents = self.latents.to(states.dtype).expand(B, -1, -1)  # (B, K, D)
        key_mask = torch.cat(  # the latents are always valid keys: (B, T + K)
            [mask.bool(), torch.ones(B, self.num_latents, dtype=torch.bool, device=mask.device)],
            dim=1,
        )
        for attn, ff in self.layers:
            latents = latents + attn(states, latents, key_mask)
            latents = latents + ff(latents)
        return self.proj(self.norm(latents))
