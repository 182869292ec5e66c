"""Causal self-attention over right-padded histories: a PyTorch SDPA path and an xformers path.

Both paths take ``(B, T, H, d)`` queries/keys/values and a ``(B, T)`` validity mask and return
``(B, T, H, d)`` with exact zeros at padded query positions, so they can be compared directly
(tests/gpu/test_xformers.py). SDPA is the reference; xformers packs the valid tokens of every
user into one sequence and runs a block-diagonal causal kernel, so no compute is spent on pads.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch
import torch.nn.functional as F
from einops import rearrange

from userfm.errors import ConfigError

XFORMERS_HINT = (
    "attn_backend='xformers' needs CUDA and the `xformers` extra "
    "(pip install 'userfm[xformers]'); use 'sdpa'"
)


@functools.lru_cache(maxsize=1)
def _load_xformers() -> ModuleType | Exception:
    """Import ``xformers.ops`` once, lazily; return the exception instead of raising it.

    An xformers wheel built for another torch / CUDA imports fine but has no kernels
    (``xformers._has_cpp_library`` is False; seen on an H200 with torch 2.11+cu130 and
    xformers 0.0.35, built for torch 2.10+cu128): every call would then fail, so that counts
    as unusable too, and ``auto`` falls back to sdpa.
    """
    try:
        import xformers
        import xformers.ops as xops
    except Exception as err:  # a broken build raises more than ImportError (e.g. OSError)
        return err
    if not getattr(xformers, "_has_cpp_library", True):
        return ImportError(
            f"xformers {getattr(xformers, '__version__', '?')} has no CUDA kernels for torch "
            f"{torch.__version__} (built for another torch/CUDA); reinstall a matching xformers"
        )
    return xops


def resolve_backend(backend: str, device: torch.device) -> str:
    """The attention path to run for ``backend`` on ``device``: ``"sdpa"`` or ``"xformers"``.

    Raises:
        ConfigError: ``backend="xformers"`` on a non-CUDA device or without xformers, or an
            unknown backend name.
    """
    if backend == "sdpa":
        return "sdpa"
    if backend not in ("xformers", "auto"):
        raise ConfigError(f"`attn_backend` must be 'sdpa', 'xformers' or 'auto', got {backend!r}")
    on_cuda = device.type == "cuda"
    xops = _load_xformers() if on_cuda else None
    usable = isinstance(xops, ModuleType)
    if backend == "auto":
        return "xformers" if usable else "sdpa"
    if not on_cuda:
        raise ConfigError(f"{XFORMERS_HINT} (the tensors are on {device.type!r})")
    if not usable:
        raise ConfigError(f"{XFORMERS_HINT} (importing xformers failed: {xops!r})") from xops
    return "xformers"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    *,
    backend: str = "sdpa",
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Causal multi-head attention restricted to each user's valid events.

    Args:
        q, k, v: (B, T, H, d) projections of the token states.
        mask: (B, T) bool, True at real events (right padding, as in ``Batch.mask``).
        backend: ``"sdpa"``, ``"xformers"`` or ``"auto"`` (see :func:`resolve_backend`).
        dropout_p: dropout on the attention probabilities, applied only when ``training``.
        training: whether the calling module is in training mode.

    Returns:
        (B, T, H, d) attention outputs; exactly zero at padded query positions, never NaN
        (a history of length 0 or 1 included).
    """
    p = dropout_p if training else 0.0
    if resolve_backend(backend, q.device) == "xformers":
        return _xformers_attention(q, k, v, mask, p)
    return _sdpa_attention(q, k, v, mask, p)


def _sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout_p: float
) -> torch.Tensor:
    # With right padding the causal mask alone is exact: a valid query at position t sees
    # keys 0..t, which are all valid because every pad sits after the user's last event. So
    # no (B, T, T) mask is built, and SDPA can use its fused (flash) kernel, which never
    # materialises the T x T scores. Padded queries see key 0 at least (never an empty row,
    # so never NaN); their outputs are zeroed below and no valid query ever reads them.
    out = F.scaled_dot_product_attention(
        rearrange(q, "b t h d -> b h t d"),
        rearrange(k, "b t h d -> b h t d"),
        rearrange(v, "b t h d -> b h t d"),
        dropout_p=dropout_p,
        is_causal=True,
    )  # (B, H, T, d)
    out = rearrange(out, "b h t d -> b t h d")
    return out * mask[:, :, None, None].to(out.dtype)  # zeros at padded queries


def _xformers_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout_p: float
) -> torch.Tensor:
    xops = _load_xformers()
    assert isinstance(xops, ModuleType), "resolve_backend checked xformers"
    out = torch.zeros_like(q)  # (B, T, H, d), pads stay zero
    lengths = mask.sum(dim=1)  # (B,)
    seqlens = [int(n) for n in lengths.tolist() if n > 0]  # empty histories add no block
    if not seqlens:
        return out
    # Pack the valid tokens of all users, in order, into one sequence: (1, N, H, d), N = sum L.
    # Boolean indexing keeps each user's events contiguous and chronological, which is what
    # the block-diagonal mask assumes.
    q_packed, k_packed, v_packed = (x[mask].unsqueeze(0) for x in (q, k, v))
    bias = xops.fmha.attn_bias.BlockDiagonalCausalMask.from_seqlens(seqlens)
    packed = xops.memory_efficient_attention(
        q_packed, k_packed, v_packed, attn_bias=bias, p=dropout_p
    )  # (1, N, H, d)
    out[mask] = packed.squeeze(0).to(out.dtype)
    return out
