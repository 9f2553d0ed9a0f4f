"""Endpoints for the memory-bound tests (tests/integration/test_memory_bounds.py).

Routes (``PATH_INFO``):

* ``/small`` - ``pong``, with a Content-Length.
* ``/upload`` - reads ``wsgi.input`` to the end and answers with the byte count.
* ``/biglist`` - `BIG_BODY` (10 MiB) as a one-item list, so the server sees the whole body at
  once; the bytes object is made once, at import, so the app itself holds one copy.
* ``/freshlist`` - 10 MiB as a one-item list too, but built for each request, as an app that
  renders its response does: each response is its own 10 MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

SMALL_BODY = b"pong"
BIG_SIZE = 10 * 1024 * 1024
BIG_BODY = b"L" * BIG_SIZE
PIECE = 64 * 1024


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    path = environ.get("PATH_INFO", "")
    if path == "/small":
        return _answer(start_response, "200 OK", SMALL_BODY)
    if path == "/upload":
        stream = environ["wsgi.input"]
        total = 0
        while piece := stream.read(PIECE):
            total += len(piece)
        return _answer(start_response, "200 OK", str(total).encode())
    if path == "/biglist":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))],
        )
        return [BIG_BODY]
    if path == "/freshlist":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))],
        )
        return [b"F" * BIG_SIZE]
    return _answer(start_response, "404 Not Found", b"not found")
