"""xformers path vs the SDPA reference on CUDA (skipped without CUDA or xformers)."""

from __future__ import annotations

import pytest
import torch

from userfm.data.batch import Batch
from userfm.encoder import UserEncoder, UserEncoderConfig
from userfm.encoder.attention import attention, resolve_backend

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
xformers_ops = pytest.importorskip("xformers.ops")

# (atol, rtol) per dtype: fp32 kernels differ only in summation order; bf16 keeps 8 bits.
TOLERANCES = {torch.float32: (2e-5, 1e-4), torch.bfloat16: (2e-2, 2e-2)}
LENGTHS = [1, 37, 5, 64, 0, 12, 2, 63]  # mixed, with a length-1 and an empty history


def _mask(lengths: list[int], T: int = 70) -> torch.Tensor:
    lengths_t = torch.tensor(lengths, device="cuda")
    return torch.arange(T, device="cuda")[None, :] < lengths_t[:, None]  # (B, T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_xformers_matches_sdpa(dtype):
    torch.manual_seed(0)
    mask = _mask(LENGTHS)
    B, T, H, d = len(LENGTHS), mask.shape[1], 4, 32
    q, k, v = (torch.randn(B, T, H, d, device="cuda", dtype=dtype) for _ in range(3))
    ref = attention(q, k, v, mask, backend="sdpa")
    got = attention(q, k, v, mask, backend="xformers")
    atol, rtol = TOLERANCES[dtype]
    assert torch.isfinite(got).all()
    assert got[~mask].abs().max() == 0
    torch.testing.assert_close(got.float(), ref.float(), atol=atol, rtol=rtol)


def test_auto_picks_xformers_on_cuda():
    assert resolve_backend("auto", torch.device("cuda")) == "xformers"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encoder_xformers_matches_sdpa(dtype):
    config = dict(num_items=100, num_actions=4, hidden_size=64, num_heads=4, max_len=70)
    torch.manual_seed(0)
    sdpa = UserEncoder(UserEncoderConfig(**config, attn_backend="sdpa"))
    xf = UserEncoder(UserEncoderConfig(**config, attn_backend="xformers"))
    xf.load_state_dict(sdpa.state_dict())
    sdpa, xf = (m.to("cuda", dtype).eval() for m in (sdpa, xf))
    mask = _mask([n for n in LENGTHS if n > 0])
    B, T = mask.shape

    def ids(high: int) -> torch.Tensor:
        return torch.randint(1, high, (B, T), device="cuda") * mask

    batch = Batch(
        items=ids(100),
        mask=mask,
        time_gaps=ids(32),
        hours=ids(25),
        weekdays=ids(8),
        actions=ids(4),
    )
    with torch.no_grad():
        ref, got = sdpa(batch), xf(batch)
    atol, rtol = TOLERANCES[dtype]
    scale = 5 if dtype == torch.bfloat16 else 1  # bf16 errors add up over two blocks
    torch.testing.assert_close(
        got.states.float(), ref.states.float(), atol=atol * scale, rtol=rtol * scale
    )
    torch.testing.assert_close(
        got.embedding.float(), ref.embedding.float(), atol=atol * scale, rtol=rtol * scale
    )
