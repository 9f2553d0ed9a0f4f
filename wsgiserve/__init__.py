"""wsgiserve: a production WSGI server on uvloop and httptools, apps in a bounded thread pool."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import StartupError
from .serving import BackgroundServer, background_server, serve
from .settings import Settings

__all__ = [
    "BackgroundServer",
    "Settings",
    "StartupError",
    "__version__",
    "background_server",
    "serve",
]
