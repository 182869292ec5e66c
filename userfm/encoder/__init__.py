"""The behaviour encoder: `UserEncoderConfig` / `UserEncoder`, registered with the Auto classes.

Importing this package registers ``model_type="userfm-encoder"``, so
``AutoConfig.from_pretrained(dir)`` and ``AutoModel.from_pretrained(dir)`` resolve a saved
encoder directory.
"""

from transformers import AutoConfig, AutoModel

from userfm.encoder.config import UserEncoderConfig
from userfm.encoder.model import EncoderOutput, UserEncoder

# exist_ok: a re-import (importlib.reload, notebooks) must not fail on the second registration.
AutoConfig.register(UserEncoderConfig.model_type, UserEncoderConfig, exist_ok=True)
AutoModel.register(UserEncoderConfig, UserEncoder, exist_ok=True)

# The attention function stays in `userfm.encoder.attention`: re-exporting it here would shadow
# the submodule of the same name.
__all__ = ["EncoderOutput", "UserEncoder", "UserEncoderConfig"]
