"""`UserConditionedLM` with tiny random Llama / GPT-2: identity at init, freezing, gradients,
generate, save/load, and a short overfit."""

from __future__ import annotations

import pytest
import torch

from userfm.adapters import AdapterConfig, UserConditionedLM
from userfm.adapters.text import pad_right, qa_ids
from userfm.errors import ConfigError

from .conftest import histories, make_llm

MODES = ["soft_prompt", "cross_attn"]


def build(enc, lm, tok, mode, **kwargs):
    cfg = AdapterConfig(
        mode=mode, num_latents=3, depth=1, heads=2, dim_head=8, cross_attn_every=2, **kwargs
    )
    return UserConditionedLM(enc, lm, tok, cfg)


def qa_batch(tokenizer, pairs):
    rows = [qa_ids(tokenizer, q, a, max_length=64) for q, a in pairs]
    ids, mask = pad_right([r[0] for r in rows], tokenizer.pad_token_id)
    labels, _ = pad_right([r[1] for r in rows], -100)
    return ids, mask, labels


def test_cross_attention_equals_the_frozen_llm_at_init(tiny_encoder, tiny_log, llm, tokenizer):
    ids = torch.randint(3, len(tokenizer), (2, 9))
    with torch.no_grad():
        expected = llm(input_ids=ids).logits
        model = build(tiny_encoder, llm, tokenizer, "cross_attn")
        got = model(histories(tiny_log, 2), ids).logits
    assert model.xattn is not None and len(model.xattn) == 2  # layers 0 and 2 of 4
    assert torch.equal(got, expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lora", [False, True])
def test_only_the_adapter_and_lora_train(tiny_encoder, tiny_log, llm, tokenizer, mode, lora):
    model = build(tiny_encoder, llm, tokenizer, mode, lora=lora)
    llm_trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    if lora:
        assert llm_trainable and all("lora_" in n for n in llm_trainable)
    else:
        assert not llm_trainable
    assert not any(p.requires_grad for p in model.encoder.parameters())
    counts = model.trainable_parameters()
    assert (counts["lora"] > 0) == lora and counts["encoder"] == 0 and counts["adapter"] > 0

    model.train()
    ids, mask, labels = qa_batch(tokenizer, [("what genre ?", "comedy"), ("which ?", "a")])
    with torch.no_grad():  # leave the zero init (gates, LoRA B) so every weight gets a gradient
        for block in model.xattn or []:
            block.attn_gate.fill_(0.5)
            block.ff_gate.fill_(0.5)
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model(histories(tiny_log, 2), ids, mask, labels).loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_a_trained_encoder_gets_gradients(tiny_encoder, tiny_log, tokenizer):
    model = build(tiny_encoder, make_llm("llama"), tokenizer, "soft_prompt", train_encoder=True)
    model.train()
    ids, mask, labels = qa_batch(tokenizer, [("what genre ?", "comedy")])
    model(histories(tiny_log, 1), ids, mask, labels).loss.backward()
    assert model.encoder.embeddings.item.weight.grad is not None
    assert model.trainable_parameters()["encoder"] > 0


def greedy_without_cache(model, history, prompt, steps):
    """Reference decoding: re-run the whole sequence each step, no KV cache, no generate()."""
    from userfm.adapters.text import prompt_ids

    ids = torch.tensor([prompt_ids(model.tokenizer, prompt)])
    out = []
    for _ in range(steps):
        logits = model([history], ids).logits[0, -1]
        nxt = int(logits.argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return model.tokenizer.decode(out, skip_special_tokens=True).strip()


@pytest.mark.parametrize("mode", MODES)
def test_generate_matches_uncached_greedy_decoding(tiny_encoder, tiny_log, llm, tokenizer, mode):
    model = build(tiny_encoder, llm, tokenizer, mode).eval()
    if mode == "cross_attn":
        with torch.no_grad():
            for block in model.xattn:
                block.attn_gate.fill_(2.0)
    hs = histories(tiny_log, 2)
    prompts = ["what genre is the user most likely to watch ?", "which ?"]
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        batched = model.generate(hs, prompts, max_new_tokens=5, eos_token_id=None)
        alone = [
            model.generate([h], [p], max_new_tokens=5, eos_token_id=None)[0]
            for h, p in zip(hs, prompts)
        ]
        reference = [greedy_without_cache(model, h, p, 5) for h, p in zip(hs, prompts)]
    assert eos is not None
    assert alone == reference
    assert batched == reference  # left padding of a batch changes nothing
    assert all(len(r.split()) >= 1 for r in reference)


def test_the_user_changes_the_answer_distribution(tiny_encoder, tiny_log, tokenizer):
    model = build(tiny_encoder, make_llm("llama"), tokenizer, "soft_prompt").eval()
    ids, mask, _ = qa_batch(tokenizer, [("what genre ?", "a")] * 2)
    with torch.no_grad():
        logits = model(histories(tiny_log, 2), ids, mask).logits
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lora", [False, True])
def test_save_and_load_reproduce_the_logits(
    tmp_path, tiny_encoder, tiny_log, tokenizer, mode, lora
):
    enc_dir = tmp_path / "encoder"
    tiny_encoder.save_pretrained(enc_dir)
    model = build(
        tiny_encoder,
        make_llm("llama"),
        tokenizer,
        mode,
        lora=lora,
        encoder=str(enc_dir),
        llm="tiny",
    )
    with torch.no_grad():  # move every trainable tensor off its initial value
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    model.save_adapter(tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter.safetensors", "README.md"} <= files
    assert ("lora" in files) == lora
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert mode in card and str(enc_dir) in card

    loaded = UserConditionedLM.from_adapter(
        tmp_path / "adapter", llm=make_llm("llama"), tokenizer=tokenizer
    )
    ids, mask, _ = qa_batch(tokenizer, [("what genre ?", "a"), ("which ?", "b")])
    with torch.no_grad():
        a = model.eval()(histories(tiny_log, 2), ids, mask).logits
        b = loaded.eval()(histories(tiny_log, 2), ids, mask).logits
    assert torch.equal(a, b)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="mode"):
        AdapterConfig(mode="prefix")
    with pytest.raises(ConfigError, match="num_latents"):
        AdapterConfig(num_latents=0)
    with pytest.raises(ConfigError, match="lora_dropout"):
        AdapterConfig(lora_dropout=1.5)


@pytest.mark.parametrize(
    "family,mode", [("llama", "soft_prompt"), ("llama", "cross_attn"), ("gpt2", "cross_attn")]
)
def test_a_short_overfit_drives_the_loss_near_zero(tiny_encoder, tiny_log, tokenizer, family, mode):
    """Every user gets the same question with its own answer: only the user context tells them
    apart, so a loss near zero means the adapter learned to carry the user. (A soft prompt
    into a random GPT-2 learns too slowly for a short test, as prompt tuning does.)"""
    torch.manual_seed(0)
    model = build(tiny_encoder, make_llm(family, layers=2, init=0.3), tokenizer, mode)
    answers = ["comedy", "drama", "action", "thriller"]
    ids, mask, labels = qa_batch(tokenizer, [("what genre ?", a) for a in answers])
    hs = histories(tiny_log, 4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    for _ in range(60):
        loss = model(hs, ids, mask, labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.35, loss.item()
    assert model.generate(hs, ["what genre ?"] * 4, max_new_tokens=1) == answers
    assert model.choose(hs, ["what genre ?"] * 4, options=answers) == answers


@pytest.mark.parametrize("mode", MODES)
def test_choose_picks_the_best_scored_option_in_one_pass(
    tiny_encoder, tiny_log, llm, tokenizer, mode
):
    from userfm.adapters.text import prompt_ids

    model = build(tiny_encoder, llm, tokenizer, mode).eval()
    hs = histories(tiny_log, 2)
    prompts = ["what genre is the user most likely to watch ?", "which ?"]
    options = ["a", "b", "c", "d"]
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"][0] for o in options]
    expected = []
    with torch.no_grad():
        for h, p in zip(hs, prompts):
            logits = model([h], torch.tensor([prompt_ids(tokenizer, p)])).logits[0, -1]
            expected.append(options[int(logits[option_ids].argmax())])
    assert model.choose(hs, prompts, options) == expected  # batched with padding = one by one
    with pytest.raises(ConfigError, match="distinct"):
        model.choose(hs, prompts, ["a", "a"])
