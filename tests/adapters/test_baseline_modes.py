"""The "text" and "none" baselines of `UserConditionedLM`: trained exactly like the adapters,
but the user enters as history text, or not at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from userfm.adapters import AdapterConfig, UserConditionedLM
from userfm.adapters.module import AdapterModule
from userfm.data.history_text import HEADER
from userfm.data.log import UserHistory
from userfm.errors import ConfigError

from .conftest import histories, make_llm, make_tokenizer


def history(n: int) -> UserHistory:
    """n events titled "1".."n" (single words of the tiny vocabulary), oldest first."""
    return UserHistory(
        "u",
        np.array([f"i{k}" for k in range(n)], dtype=object),
        categories=np.array(["comedy", "drama"] * (n // 2) + ["comedy"] * (n % 2), dtype=object),
        titles=np.array([str(k % 10) for k in range(n)], dtype=object),
    )


def test_none_mode_is_the_plain_llm_and_needs_no_encoder(tiny_log):
    llm, tok = make_llm("llama"), make_tokenizer()
    model = UserConditionedLM(None, llm, tok, AdapterConfig(mode="none"))
    ids = torch.randint(3, len(tok), (2, 7))
    with torch.no_grad():
        assert torch.equal(model(histories(tiny_log, 2), ids).logits, llm(input_ids=ids).logits)
    assert model.encoder is None and model.resampler is None
    assert model.trainable_parameters()["trainable"] == 0
    assert model.prompt_text(history(3), "which genre ?") == "which genre ?"
    assert model.choose([history(3)], ["which genre ?"], [["a", "b"]])[0] in ("a", "b")


def test_text_mode_writes_the_recent_history_within_its_budget():
    tok = make_tokenizer()
    model = UserConditionedLM(
        None, make_llm("llama"), tok, AdapterConfig(mode="text", text_tokens=5)
    )
    prompt = model.prompt_text(history(9), "which genre ?")
    lines = prompt.split("\n")
    # each line "- <title> [<category>]" is 3 whitespace-split tokens: one fits in 5, not two
    assert lines == [HEADER, "- 8 [comedy]", "", "which genre ?"]
    wide = UserConditionedLM(None, make_llm("llama"), tok, AdapterConfig(mode="text"))
    assert wide.prompt_text(history(9), "q").count("\n- ") == 9  # all 9 lines fit in 256
    # the token count covers the history text: more history, longer prompts
    short, long = wide.prompt_lengths([history(2), history(9)], ["q", "q"])
    assert long - short == 7 * len(tok("- 1 [drama]\n", add_special_tokens=False)["input_ids"])
    with pytest.raises(ConfigError, match="raw `UserHistory`"):
        wide.prompt_text(object(), "q")
    # reports state how many events a budget shows: the lines the prompt holds
    assert model.events_read(history(9)) == 1 and wide.events_read(history(9)) == 9


def test_soft_prompt_lengths_count_the_latents(tiny_encoder, tiny_log):
    tok = make_tokenizer()
    cfg = AdapterConfig(mode="soft_prompt", num_latents=3, heads=2, dim_head=8)
    model = UserConditionedLM(tiny_encoder, make_llm("llama"), tok, cfg)
    plain = UserConditionedLM(None, make_llm("llama"), tok, AdapterConfig(mode="none"))
    h = histories(tiny_log, 2)
    assert model.prompt_lengths(h, ["q", "q ?"]) == [
        n + 3 for n in plain.prompt_lengths(h, ["q", "q ?"])
    ]
    assert plain.events_read(h[0]) == 0
    assert model.events_read(h[0]) == min(len(h[0]), tiny_encoder.config.max_len)


@pytest.mark.parametrize("mode", ["none", "text"])
def test_baselines_train_only_lora_and_round_trip(tmp_path, tiny_log, mode):
    tok = make_tokenizer()
    cfg = AdapterConfig(mode=mode, lora=True, lora_target_modules=["q_proj", "v_proj"])
    model = UserConditionedLM(None, make_llm("llama"), tok, cfg)
    counts = model.trainable_parameters()
    assert counts["trainable"] == counts["lora"] > 0 and counts["adapter"] == 0
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)  # LoRA B starts at 0: make the load visible
    model.save_pretrained(tmp_path)
    again = UserConditionedLM.from_pretrained(tmp_path, llm=make_llm("llama"), tokenizer=tok)
    ids = torch.randint(3, len(tok), (2, 7))
    with torch.no_grad():
        assert torch.equal(again(histories(tiny_log, 2), ids).logits, model(None, ids).logits)
    card = (tmp_path / "README.md").read_text()
    assert ("no-user baseline" if mode == "none" else "text-prompt baseline") in card


def test_encoder_modes_need_an_encoder():
    with pytest.raises(ConfigError, match="reads a behaviour encoder"):
        UserConditionedLM(None, make_llm("llama"), make_tokenizer(), AdapterConfig())


def test_text_mode_needs_room_for_its_history():
    with pytest.raises(ConfigError, match="max_length"):
        AdapterModule(AdapterConfig(mode="text", text_tokens=256), max_length=300)
    AdapterModule(AdapterConfig(mode="text", text_tokens=256), max_length=320)


def test_a_baseline_with_nothing_to_train_says_so(tmp_path):
    module = AdapterModule(AdapterConfig(mode="none", llm="unused"))
    module.model = UserConditionedLM(
        None, make_llm("llama"), make_tokenizer(), AdapterConfig(mode="none")
    )
    with pytest.raises(ConfigError, match="nothing to train"):
        module.configure_optimizers()


@pytest.mark.parametrize("mode", ["none", "text"])
def test_baselines_generate_like_the_llm_on_their_prompt(mode):
    from userfm.adapters.text import prompt_tokens

    llm, tok = make_llm("llama"), make_tokenizer()
    model = UserConditionedLM(None, llm, tok, AdapterConfig(mode=mode, text_tokens=8))
    h = history(5)
    ids = torch.tensor([prompt_tokens(tok, model.prompt_text(h, "which genre ?")).ids])
    expected = llm.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    want = tok.decode(expected[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert model.generate([h], ["which genre ?"], max_new_tokens=4) == [want]


def test_each_part_trains_at_its_own_learning_rate(tiny_encoder, tmp_path):
    cfg = AdapterConfig(
        mode="soft_prompt", num_latents=2, heads=2, dim_head=8, lora=True, train_encoder=True,
        encoder=str(tmp_path), llm="unused",
    )  # fmt: skip
    module = AdapterModule(cfg, lr=1e-2, lora_lr=1e-3, weight_decay=0.1)
    module.model = UserConditionedLM(tiny_encoder, make_llm("llama"), make_tokenizer(), cfg)
    groups = {g["name"]: g for g in module.parameter_groups()}
    assert set(groups) == {"adapter", "adapter_no_decay", "lora", "encoder", "encoder_no_decay"}
    assert groups["adapter"]["lr"] == groups["adapter_no_decay"]["lr"] == 1e-2
    assert groups["lora"]["lr"] == 1e-3 and groups["encoder"]["lr"] == 1e-3  # lr / 10
    assert groups["adapter_no_decay"]["weight_decay"] == 0.0
    scale = module.model.prompt_scale.scale
    assert any(p is scale for p in groups["adapter_no_decay"]["params"])
    # the encoder's own rule (issue 19: every encoder parameter was decayed, tables included)
    item_table = tiny_encoder.embeddings.item.weight
    assert any(p is item_table for p in groups["encoder_no_decay"]["params"])
    assert not any(p is item_table for p in groups["encoder"]["params"])
    assert groups["encoder"]["weight_decay"] == 0.1
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == module.model.trainable_parameters()["trainable"]
    with pytest.raises(ConfigError, match="lora_lr"):
        AdapterModule(AdapterConfig(mode="none"), lora_lr=0.0)
    with pytest.raises(ConfigError, match="adapter.encoder. is required"):
        AdapterModule(AdapterConfig(mode="soft_prompt"))
    # a misspelt field given as a mapping (YAML, a dict) is named, not a bare TypeError
    with pytest.raises(ConfigError, match=r"'num_latent' -> 'num_latents'.*AdapterConfig's"):
        AdapterModule({"mode": "none", "num_latent": 4})
