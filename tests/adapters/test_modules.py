"""Perceiver resampler, recent events, soft prompt scale and gated cross-attention as
modules."""

from __future__ import annotations

import pytest
import torch

from userfm.adapters.cross_attn import (
    GatedCrossAttention,
    cross_attention_positions,
    find_decoder_layers,
)
from userfm.adapters.perceiver import PerceiverResampler
from userfm.adapters.recent_events import RecentEvents
from userfm.adapters.soft_prompt import SoftPromptScale
from userfm.errors import ConfigError

from .conftest import make_llm


def test_resampler_shapes():
    r = PerceiverResampler(dim=16, out_dim=24, num_latents=5, depth=2, heads=2, dim_head=8)
    out = r(torch.randn(3, 7, 16), torch.ones(3, 7, dtype=torch.bool))
    assert out.shape == (3, 5, 24)


def test_padded_positions_have_no_effect():
    torch.manual_seed(0)
    r = PerceiverResampler(dim=16, out_dim=24, num_latents=4).eval()
    states = torch.randn(1, 5, 16)
    alone = r(states, torch.ones(1, 5, dtype=torch.bool))
    # the same history padded to 9 positions, with garbage in the padding
    padded = torch.cat([states, 100 * torch.randn(1, 4, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 4])
    torch.testing.assert_close(r(padded, mask), alone, rtol=1e-5, atol=1e-5)
    # and next to a longer user in a batch
    other = torch.randn(1, 9, 16)
    both = r(torch.cat([padded, other]), torch.cat([mask, torch.ones(1, 9, dtype=torch.bool)]))
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)


def test_a_user_without_events_gets_a_finite_summary():
    r = PerceiverResampler(dim=8, out_dim=8, num_latents=2)
    out = r(torch.randn(2, 3, 8), torch.tensor([[False] * 3, [True, True, False]]))
    assert torch.isfinite(out).all()


def test_resampler_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="num_latents"):
        PerceiverResampler(dim=8, out_dim=8, num_latents=0)


def test_soft_prompt_scale_matches_the_requested_rms():
    x = torch.randn(2, 4, 64) * 1e-3  # a fresh projection's tiny scale
    out = SoftPromptScale(rms=0.7)(x)
    torch.testing.assert_close(
        out.pow(2).mean(-1).sqrt(), torch.full((2, 4), 0.7), rtol=1e-3, atol=1e-3
    )


def test_recent_events_are_the_last_real_events_oldest_first():
    torch.manual_seed(0)
    r = RecentEvents(dim=8, out_dim=12, count=3)
    states = torch.randn(3, 6, 8)
    lengths = [6, 4, 2]  # the last user has fewer events than R
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    out = r(states, mask)
    assert out.shape == (3, 3, 12)
    want = r.proj(r.norm(states))  # (3, 6, 12): every position projected
    torch.testing.assert_close(out[0], want[0, 3:6])
    torch.testing.assert_close(out[1], want[1, 1:4])
    torch.testing.assert_close(out[2, 1:], want[2, 0:2])
    torch.testing.assert_close(out[2, 0], r.empty.detach())
    garbage = states.clone()
    garbage[1, 4:] = 1e3  # padding has no effect
    torch.testing.assert_close(r(garbage, mask), out)


def test_recent_events_refuse_left_padding():
    r = RecentEvents(dim=4, out_dim=4, count=2)
    with pytest.raises(ConfigError, match="right-padded"):
        r(torch.randn(1, 3, 4), torch.tensor([[False, True, True]]))
    with pytest.raises(ConfigError, match="count"):
        RecentEvents(dim=4, out_dim=4, count=0)


def test_recent_events_carry_each_events_item_text():
    """With text_dim E, each recent-event vector adds its own event's projected text; text of
    older events and of padding has no effect."""
    torch.manual_seed(0)
    r = RecentEvents(dim=8, out_dim=12, count=3, text_dim=5)
    states, text = torch.randn(2, 6, 8), torch.randn(2, 6, 5)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2])[:, None]
    out = r(states, mask, text)
    want = r.proj(r.norm(states)) + r.text_proj(r.text_norm(text))  # (2, 6, 12)
    torch.testing.assert_close(out[0], want[0, 3:6])
    torch.testing.assert_close(out[1, 1:], want[1, 0:2])
    torch.testing.assert_close(out[1, 0], r.empty.detach())
    other = text.clone()
    other[0, :3] = 9.0  # older than the last R
    other[1, 2:] = 9.0  # padding
    torch.testing.assert_close(r(states, mask, other), out)
    other[0, 5] = -9.0  # the most recent event's text moves the last vector only
    moved = r(states, mask, other)
    assert not torch.allclose(moved[0, 2], out[0, 2])
    torch.testing.assert_close(moved[0, :2], out[0, :2])


def test_recent_events_refuse_missing_or_unexpected_text():
    states, mask = torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ConfigError, match="text vectors of shape"):
        RecentEvents(dim=4, out_dim=4, count=2, text_dim=3)(states, mask)
    with pytest.raises(ConfigError, match="text vectors of shape"):
        RecentEvents(dim=4, out_dim=4, count=2, text_dim=3)(states, mask, torch.randn(1, 3, 2))
    with pytest.raises(ConfigError, match="without text_dim"):
        RecentEvents(dim=4, out_dim=4, count=2)(states, mask, torch.randn(1, 3, 3))


def test_gated_cross_attention_is_the_identity_at_init():
    block = GatedCrossAttention(dim=16, heads=2, dim_head=8)
    x = torch.randn(2, 5, 16)
    assert torch.equal(block(x, torch.randn(2, 3, 16)), x)


def test_gated_cross_attention_repeats_latents_for_beams():
    block = GatedCrossAttention(dim=16, heads=2, dim_head=8)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    x, lat = torch.randn(4, 5, 16), torch.randn(2, 3, 16)
    out = block(x, lat)
    torch.testing.assert_close(out[1], block(x[1:2], lat[:1])[0])
    torch.testing.assert_close(out[2], block(x[2:3], lat[1:2])[0])


@pytest.mark.parametrize("family,path", [("llama", "model.layers"), ("gpt2", "transformer.h")])
def test_decoder_layers_are_found_by_family(family, path):
    llm = make_llm(family)
    layers = find_decoder_layers(llm)
    assert layers is __import__("operator").attrgetter(path)(llm)
    assert find_decoder_layers(llm, path) is layers
    with pytest.raises(ConfigError, match="layers_path"):
        find_decoder_layers(llm, "model.nowhere")


def test_cross_attention_positions():
    assert cross_attention_positions(30, 4) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert cross_attention_positions(4, 1) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="cross_attn_every"):
        cross_attention_positions(4, 0)
