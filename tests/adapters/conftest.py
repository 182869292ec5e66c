"""Tiny, random, offline parts for adapter tests: a synthetic log, an encoder, a word-level
tokenizer with a chat template, and Llama / GPT-2 LMs built from configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log, write_synthetic_log
from userfm.encoder import UserEncoder
from userfm.eval.uqa import build_questions, save_questions

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "adapters"

WORDS = [
    "<pad>",
    "<unk>",
    "<eos>",
    "<user>",
    "<assistant>",
    "what",
    "which",
    "genre",
    "is",
    "the",
    "user",
    "most",
    "likely",
    "to",
    "watch",
    "a",
    "b",
    "c",
    "d",
    "answer",
    ":",
    "?",
    ".",
    ",",
    "comedy",
    "drama",
    "action",
    "thriller",
    "horror",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "yes",
    "no",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <eos> {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)


def make_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()  # option letters "A".."D" read as "a".."d"
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    if chat_template:
        out.chat_template = CHAT_TEMPLATE
    return out


def make_llm(family: str, seed: int = 0, *, layers: int = 4, init: float = 0.2):
    """A random causal LM; ``init`` = weight std (0.02, the default, gives near-uniform logits
    that no adapter can steer)."""
    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(
            vocab_size=len(WORDS),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=0,
            eos_token_id=2,
            bos_token_id=2,
            initializer_range=init,
        )
        return LlamaForCausalLM(cfg).eval()
    cfg = GPT2Config(
        vocab_size=len(WORDS),
        n_embd=32,
        n_layer=layers,
        n_head=4,
        n_positions=256,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=2,
        initializer_range=init,
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="session")
def tiny_log():
    df = generate_synthetic_log(SyntheticConfig(num_users=40, num_items=30, mean_events=12, seed=3))
    return read_events(df)


@pytest.fixture
def tiny_encoder(tiny_log):
    return UserEncoder.from_log(
        tiny_log, hidden_size=16, num_layers=1, num_heads=2, max_len=32, seed=0
    ).eval()


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture(params=["llama", "gpt2"])
def llm(request):
    return make_llm(request.param)


def histories(log, n: int):
    return [log.history_at(i) for i in range(n)]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    events = write_synthetic_log(
        root / "events.parquet", SyntheticConfig(num_users=60, num_items=40, seed=5)
    )
    log = read_events(events, EventSchema(action="action", category="category", title="title"))
    UserEncoder.from_log(
        log, hidden_size=16, num_layers=1, num_heads=2, max_len=32, seed=0
    ).save_pretrained(root / "encoder")
    save_questions(
        build_questions(log, seed=0, tasks=("short_term", "direct_feature")), root / "qa"
    )
    llm_dir = root / "llm"
    make_llm("llama").save_pretrained(llm_dir)
    make_tokenizer().save_pretrained(llm_dir)
    return root


def fit_args(root: Path, config: str, out: Path, steps: int = 4) -> list[str]:
    """`userfm adapters fit` flags: a shipped config with the tiny parts of `workspace`."""
    return [
        "--config", str(CONFIGS / f"{config}.yaml"),
        "--model.adapter.encoder", str(root / "encoder"),
        "--model.adapter.llm", str(root / "llm"),
        "--model.adapter.num_latents", "2",
        "--model.adapter.dim_head", "8",
        "--model.adapter.cross_attn_every", "2",
        "--model.max_length", "64",
        "--model.export_dir", str(out / "adapter"),
        "--data.questions", str(root / "qa"),
        "--data.log", str(root / "events.parquet"),
        "--data.max_train", "24",
        "--data.max_eval", "8",
        "--data.batch_size", "4",
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", "2",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.callbacks.init_args.dirpath", str(out / "ckpt"),
        "--trainer.callbacks.init_args.every_n_train_steps", "2",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
