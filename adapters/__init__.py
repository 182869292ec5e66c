"""userfm.adapters: stage 2, user histories into a frozen LLM.

A `PerceiverResampler` turns behaviour-encoder states into K vectors, used as a soft prompt or
read by gated cross-attention blocks (`UserConditionedLM`), optionally with LoRA; fine-tuned
with `AdapterModule` / ``userfm adapters fit``. Installed as ``userfm.adapters`` (never as a
top-level ``adapters`` package: that name belongs to an existing PyPI library).
"""

from userfm.adapters.config import AdapterConfig
from userfm.adapters.model import UserConditionedLM
from userfm.adapters.perceiver import PerceiverResampler

__all__ = ["AdapterConfig", "PerceiverResampler", "UserConditionedLM"]
