"""userfm: foundation user-embedding models.

The public API: read logs (`read_events`, `EventSchema`), build / load an encoder
(`UserEncoder`, `UserEncoderConfig`) and embed users (`UserEncoder.embed` -> `UserEmbeddings`).

The public names load on first use (PEP 562), so ``import userfm`` and ``userfm --version``
do not pull in torch, transformers or datasets.
"""

from typing import TYPE_CHECKING

from userfm._lazy import lazy_exports
from userfm._version import __version__

if TYPE_CHECKING:
    from userfm.api.embeddings import UserEmbeddings
    from userfm.data.log import EventLog, UserHistory
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.encoder import UserEncoder, UserEncoderConfig

# public name -> the module that defines it
_LAZY = {
    "EventLog": "userfm.data.log",
    "EventSchema": "userfm.data.schema",
    "UserEmbeddings": "userfm.api.embeddings",
    "UserEncoder": "userfm.encoder",
    "UserEncoderConfig": "userfm.encoder",
    "UserHistory": "userfm.data.log",
    "read_events": "userfm.data.readers",
}

__all__ = [
    "EventLog",
    "EventSchema",
    "UserEmbeddings",
    "UserEncoder",
    "UserEncoderConfig",
    "UserHistory",
    "__version__",
    "read_events",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
