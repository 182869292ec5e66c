"""`AdapterConfig`: everything that defines an adapter, validated, saved as adapter_config.json."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from userfm._version import __version__
from userfm.adapters.text import USER_POSITIONS
from userfm.errors import ConfigError, FileFormatError, check_int

logger = logging.getLogger("userfm.adapters")

MODES = ("soft_prompt", "cross_attn", "text", "none")
#: the modes that read the behaviour encoder (the others are the baselines it must beat)
ENCODER_MODES = ("soft_prompt", "cross_attn")
CONFIG_FILE = "adapter_config.json"


@dataclass
class AdapterConfig:
    """How user states enter the LLM.

    Attributes:
        mode: how the user enters the LLM. "soft_prompt": K vectors in K slots of the input
            embeddings inside the user turn; "cross_attn": gated cross-attention blocks before every
            ``cross_attn_every``-th decoder layer. Two baselines trained the same way (same
            data, same LoRA): "text", the history written as text before the question (at
            most ``text_tokens`` tokens of it, most recent events first), and "none", no
            user context at all (what the question format and answer priors give away).
        num_latents: K, the Perceiver's output vectors.
        recent_events: R, the most recent events given to the LLM one vector each after the
            K latents (`userfm.adapters.recent_events.RecentEvents`; 0: none). The user
            context is then K + R vectors.
        recent_text: each recent-event vector also carries its item's text vector (the
            encoder's saved sentence-encoder vector, projected); needs ``recent_events`` and
            an encoder pretrained with an items table (issue 33 §4: measured on UQA's
            validation questions, README "Text for the LLM").
        user_position: where the soft prompt sits inside the user turn of the chat template:
            ``"before_question"`` or ``"after_question"``.
        depth: Perceiver layers.
        heads: attention heads (Perceiver and cross-attention).
        dim_head: width of each head.
        cross_attn_every: N, a block before layers 0, N, 2N, ... (cross_attn mode).
        layers_path: dotted path of the LLM's decoder layers when not a known family.
        text_tokens: history token budget of "text" mode.
        lora: add LoRA adapters to the LLM (peft); otherwise the LLM is fully frozen.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scaling and dropout.
        lora_target_modules: module names to adapt; None = peft's default for the model type.
        train_encoder: fine-tune the behaviour encoder too (frozen by default).
        encoder: path of the encoder directory this adapter reads (recorded on save).
        llm: name or path of the base LLM (recorded on save; see `userfm.llm.load_llm`).
        userfm_version: version that wrote the config.
    """

    mode: str = "soft_prompt"
    num_latents: int = 8
    recent_events: int = 0
    recent_text: bool = False
    user_position: str = "before_question"
    depth: int = 2
    heads: int = 4
    dim_head: int = 32
    cross_attn_every: int = 4
    layers_path: str | None = None
    text_tokens: int = 256
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    train_encoder: bool = False
    encoder: str | None = None
    llm: str | None = None
    userfm_version: str = field(default=__version__)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"`mode` must be one of {MODES}, got {self.mode!r}")
        for name in (
            "num_latents",
            "depth",
            "heads",
            "dim_head",
            "cross_attn_every",
            "text_tokens",
            "lora_r",
        ):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        r = self.recent_events = check_int("recent_events", self.recent_events, minimum=0)
        if r and not self.reads_encoder:
            raise ConfigError(
                f"`recent_events` needs an encoder mode {ENCODER_MODES}, not {self.mode!r}: "
                "set it to 0"
            )
        if not isinstance(self.recent_text, bool):
            raise ConfigError(f"`recent_text` must be true or false, got {self.recent_text!r}")
        if self.recent_text and not r:
            raise ConfigError(
                "`recent_text` adds text to the recent-event vectors: set `recent_events` > 0 too"
            )
        if self.user_position not in USER_POSITIONS:
            raise ConfigError(
                f"`user_position` must be one of {USER_POSITIONS}, got {self.user_position!r}"
            )
        if self.lora_alpha <= 0:
            raise ConfigError(f"`lora_alpha` must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout}")
        if self.lora_target_modules is not None:
            self.lora_target_modules = list(self.lora_target_modules)
            if not self.lora_target_modules:
                raise ConfigError("`lora_target_modules` must be None or a non-empty list")

    @property
    def reads_encoder(self) -> bool:
        """Whether this mode reads the behaviour encoder (soft prompt, cross-attention)."""
        return self.mode in ENCODER_MODES

    @property
    def num_user_vectors(self) -> int:
        """K + R: the vectors that carry the user (soft-prompt slots, cross-attention keys)."""
        return self.num_latents + self.recent_events

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), userfm_version=__version__)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> AdapterConfig:
        """Read adapter_config.json; unknown keys (from a newer version) are ignored with a
        warning, so older code can still load what it understands.

        Raises:
            FileNotFoundError: no adapter_config.json there (not an adapter folder), as
                `UserEncoder.from_pretrained` raises for a folder that is not a model.
            FileFormatError: adapter_config.json is not a JSON object.
            ConfigError: a field holds an invalid value.
        """
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{directory} is not an adapter directory (no {CONFIG_FILE} there)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FileFormatError(f"{path} is not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise FileFormatError(f"{path} is not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning(
                "ignoring unknown adapter config keys %s (written by a newer userfm?)", unknown
            )
        return cls(**{k: v for k, v in data.items() if k in known})
