"""userfm: foundation user-embedding models.

The public API: read logs (`read_events`, `EventSchema`), build / load an encoder
(`UserEncoder`, `UserEncoderConfig`) and embed users (`UserEncoder.embed` -> `UserEmbeddings`).
"""

from userfm._version import __version__
from userfm.api.embeddings import UserEmbeddings
from userfm.data.log import EventLog, UserHistory
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.encoder import UserEncoder, UserEncoderConfig

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
