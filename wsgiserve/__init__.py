"""wsgiserve: a production WSGI server on uvloop and httptools, apps in a bounded thread pool."""

from __future__ import annotations

from .errors import StartupError
from .serving import BackgroundServer, background_server, serve
from .settings import Settings
from .version import __version__

__all__ = [
    "BackgroundServer",
    "Settings",
    "StartupError",
    "__version__",
    "background_server",
    "serve",
]
