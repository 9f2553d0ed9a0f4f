"""Tiny WSGI applications used by the benchmarks.

Keep these trivial: the point is to measure the server, not the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO_BODY = b"Hello, World!"
_HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO_BODY))),
]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Plain-text hello world with an explicit Content-Length (13)."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO_BODY]
