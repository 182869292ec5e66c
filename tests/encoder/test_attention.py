"""The SDPA attention path against a naive reference, and backend selection on CPU."""

from __future__ import annotations

import math

import pytest
import torch

import userfm.encoder.attention as attention_module
from userfm.encoder.attention import XFORMERS_HINT, attention, resolve_backend
from userfm.errors import ConfigError

H, D_HEAD = 2, 4


def _mask(lengths: list[int], T: int | None = None) -> torch.Tensor:
    T = T or max(lengths)
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) right padding


def _qkv(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, T, H, D_HEAD, generator=g) for _ in range(3))


def _reference(q, k, v, mask):
    """Loop over users and queries: softmax over keys 0..t of the user's valid events."""
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        n = int(mask[b].sum())
        for t in range(n):
            scores = torch.einsum("hd,khd->hk", q[b, t], k[b, : t + 1]) / math.sqrt(D_HEAD)
            out[b, t] = torch.einsum("hk,khd->hd", scores.softmax(-1), v[b, : t + 1])
    return out


def test_sdpa_matches_reference_and_zeros_pads():
    mask = _mask([5, 3, 1, 4])
    q, k, v = _qkv(4, 5)
    out = attention(q, k, v, mask, backend="sdpa")
    assert out.shape == q.shape
    torch.testing.assert_close(out, _reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
    assert out[~mask].abs().max() == 0


def test_no_nan_for_length_one_and_empty_rows():
    mask = _mask([1, 0, 3], T=4)
    q, k, v = _qkv(3, 4)
    out = attention(q, k, v, mask, backend="sdpa")
    assert torch.isfinite(out).all()
    assert out[1].abs().max() == 0  # an empty history gives zeros, not NaN
    torch.testing.assert_close(out[0, 0], v[0, 0])  # one event attends only to itself


def test_future_keys_do_not_change_earlier_outputs():
    mask = _mask([6, 6])
    q, k, v = _qkv(2, 6)
    out = attention(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[:, 3:] += 5.0
    v2[:, 3:] -= 5.0
    out2 = attention(q, k2, v2, mask)
    torch.testing.assert_close(out[:, :3], out2[:, :3])
    assert not torch.allclose(out[:, 3:], out2[:, 3:])


def test_padded_keys_are_ignored():
    mask = _mask([2, 4])
    q, k, v = _qkv(2, 4)
    k2, v2 = k.clone(), v.clone()
    k2[0, 2:] = 100.0  # garbage in the pad slots of user 0
    v2[0, 2:] = 100.0
    torch.testing.assert_close(attention(q, k, v, mask), attention(q, k2, v2, mask))


def test_dropout_only_in_training():
    mask = _mask([4, 4])
    q, k, v = _qkv(2, 4)
    base = attention(q, k, v, mask)
    torch.testing.assert_close(attention(q, k, v, mask, dropout_p=0.5, training=False), base)
    torch.manual_seed(0)
    assert not torch.allclose(attention(q, k, v, mask, dropout_p=0.5, training=True), base)


def test_xformers_on_cpu_raises_a_clear_error():
    mask = _mask([2])
    q, k, v = _qkv(1, 2)
    with pytest.raises(ConfigError) as info:
        attention(q, k, v, mask, backend="xformers")
    assert XFORMERS_HINT in str(info.value)
    assert "pip install 'userfm[xformers]'" in str(info.value)


def test_auto_on_cpu_is_sdpa():
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    assert resolve_backend("sdpa", torch.device("cpu")) == "sdpa"
    mask = _mask([3, 1])
    q, k, v = _qkv(2, 3)
    torch.testing.assert_close(attention(q, k, v, mask, backend="auto"), attention(q, k, v, mask))


def test_cuda_without_xformers(monkeypatch):
    """On CUDA with xformers missing: 'auto' falls back to sdpa, 'xformers' names the fix."""
    monkeypatch.setattr(attention_module, "_load_xformers", lambda: ImportError("no xformers"))
    cuda = torch.device("cuda")
    assert resolve_backend("auto", cuda) == "sdpa"
    with pytest.raises(ConfigError, match="importing xformers failed"):
        resolve_backend("xformers", cuda)


def test_unknown_backend():
    with pytest.raises(ConfigError, match="`attn_backend`"):
        resolve_backend("flash", torch.device("cpu"))


def test_xformers_without_kernels_counts_as_unusable(monkeypatch):
    """A wheel built for another torch imports but has no kernels: auto must not pick it."""
    import sys
    import types

    fake = types.ModuleType("xformers")
    fake._has_cpp_library = False
    fake.__version__ = "0.0.0-test"
    fake_ops = types.ModuleType("xformers.ops")
    fake.ops = fake_ops
    monkeypatch.setitem(sys.modules, "xformers", fake)
    monkeypatch.setitem(sys.modules, "xformers.ops", fake_ops)
    attention_module._load_xformers.cache_clear()
    try:
        cuda = torch.device("cuda")
        assert resolve_backend("auto", cuda) == "sdpa"
        with pytest.raises(ConfigError, match="no CUDA kernels"):
            resolve_backend("xformers", cuda)
    finally:
        attention_module._load_xformers.cache_clear()
