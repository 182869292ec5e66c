"""userfm: foundation user-embedding models."""

from userfm._version import __version__

__all__ = ["__version__"]
