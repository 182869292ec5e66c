"""Shared pytest fixtures."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

# MovieLens-100K lives beside the repository (its licence forbids copying it in): ../shared/data
ML100K_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/ml-100k"


@pytest.fixture
def ml100k_dir() -> Path:
    """The MovieLens-100K folder (u.data, u.item, ...); the test is skipped when it is absent."""
    if not (ML100K_DIR / "u.data").is_file() or not (ML100K_DIR / "u.item").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K_DIR}")
    return ML100K_DIR


# a tiny random sentence encoder built in code (no downloads), for item text features
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# fmt: off
_WORDS = [
    "a", "an", "the", "and", "of", "for", "to", "in", "with", "is", "film", "movie", "story",
    "war", "comedy", "drama", "cartoon", "kids", "children", "funny", "animated", "documentary",
    "love", "crime", "space", "horror", "action", "adventure", "romance", "thriller", "music",
    "western", "fantasy", "mystery", "family", "toy", "life", "night", "day", "man", "woman",
    "world",
]
# fmt: on
_LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789") + ["|", ",", "(", ")", "'", "-", "."]
#: Width of the tiny model's vectors.
TINY_TEXT_DIM = 16


def build_tiny_text_model(folder: Path, *, seed: int = 0) -> Path:
    """Save a random 1-layer BERT (hidden 16) and a WordPiece tokenizer into ``folder``.

    Args:
        folder: where to save (created).
        seed: the weights' seed: another seed is another model (another fingerprint).

    Returns:
        ``folder``, loadable by `userfm.encoder.text_model` as a local model folder.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    pieces = [f"##{c}" for c in _LETTERS]
    vocab.write_text("\n".join(_SPECIALS + _WORDS + _LETTERS + pieces) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def make_tiny_text_model(tmp_path_factory) -> Callable[[int], Path]:
    """``make(seed) -> folder`` of a tiny random sentence encoder, built once per seed."""
    built: dict[int, Path] = {}

    def make(seed: int = 0) -> Path:
        if seed not in built:
            folder = tmp_path_factory.mktemp(f"tiny_text_model_{seed}")
            built[seed] = build_tiny_text_model(folder, seed=seed)
        return built[seed]

    return make


@pytest.fixture(scope="session")
def tiny_text_model(make_tiny_text_model) -> Path:
    """The folder of a tiny random BERT sentence encoder (16-d vectors, seed 0); read-only."""
    return make_tiny_text_model(0)


# a tiny folder in MovieLens-100K's file format, for the benchmarks' smoke tests
def write_fake_ml100k(folder: Path, users: int = 24, items: int = 30, seed: int = 0) -> Path:
    """A tiny folder in MovieLens-100K's file format (synthetic, not MovieLens data)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["space", "war", "love", "night", "toy", "story", "crime", "day", "family", "life"]
    lines = []
    for i in range(1, items + 1):
        title = f"{words[i % 10]} {words[(3 * i) % 10]} ({1980 + i % 20})"
        flags = ["0"] * 19  # u.item's genre flags
        flags[1 + i % 5] = flags[8 + i % 3] = "1"
        lines.append("|".join([str(i), title, f"01-Jan-{1980 + i % 20}", "", "url", *flags]))
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    rows = []
    for u in range(1, users + 1):
        for t, i in enumerate(rng.choice(items, size=int(rng.integers(6, 14)), replace=False)):
            rows.append(f"{u}\t{i + 1}\t{int(rng.integers(1, 6))}\t{880_000_000 + 3600 * t}")
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def fake_ml100k_dir(tmp_path) -> Path:
    """A tiny folder in MovieLens-100K's file format (synthetic, not MovieLens data)."""
    return write_fake_ml100k(tmp_path / "fake-ml-100k")


# a tiny random LLM built in code (no downloads), for the adapters and the LLM-reading scripts
README = Path(__file__).resolve().parents[1] / "README.md"
#: SmolLM2-style chat markers of the tiny LLM's tokenizer
TINY_LLM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llm(folder: Path, words: Iterable[str] = (), *, seed: int = 0) -> Path:
    """Save a random 2-layer Llama (hidden 32) and a word-level tokenizer into ``folder``.

    Args:
        folder: where to save (created).
        words: the tokenizer's words besides its specials, punctuation, ``a``-``d``, digits
            and the chat roles (lower case; any other word reads as ``<unk>``).
        seed: the weights' seed.

    Returns:
        ``folder``, which `userfm.llm.load_llm` reads like any local LLM (chat template:
        SmolLM2's markers).
    """
    import string

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    words = set(words) | set(string.punctuation) | set("abcd0123456789")
    words = sorted(words | {"user", "assistant", "system"})
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = TINY_LLM_CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=vocab["<|im_start|>"],
    )
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    """The folder of a tiny random Llama whose tokenizer knows README's words (seed 0);
    read-only. `userfm.llm.load_llm` reads it like any local LLM."""
    words = re.findall(r"\w+|[^\w\s]+", README.read_text(encoding="utf-8").lower())
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"), words)
