"""Plain WSGI endpoints for the flow-control and CLI tests.

Routes (``PATH_INFO``):

* ``/hello`` - a tiny fixed response with a Content-Length.
* ``/count`` - reads ``wsgi.input`` in 64 KiB pieces and answers with the byte count.
* ``/big?mb=N`` - N MiB as a generator of 64 KiB chunks, with a Content-Length.
* ``/slow?s=F`` (and ``/slow/anything``) - announces itself on stderr, sleeps F seconds,
  then answers ``done``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

PIECE = 64 * 1024
SLOW_MARKER = "SLOW-REQUEST-STARTED"


def _query(environ: Environ, name: str, default: str) -> str:
    return str(parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0])


def _text(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _count(environ: Environ) -> int:
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH") or ""
    remaining = int(declared) if declared else None
    total = 0
    while remaining is None or remaining > 0:
        want = PIECE if remaining is None else min(PIECE, remaining)
        piece = stream.read(want)
        if not piece:
            break
        total += len(piece)
        if remaining is not None:
            remaining -= len(piece)
    return total


def _big(size: int) -> Iterator[bytes]:
    piece = b"z" * PIECE
    sent = 0
    while sent < size:
        chunk = piece[: min(PIECE, size - sent)]
        sent += len(chunk)
        yield chunk


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        return _text(start_response, "200 OK", b"hello")
    if path == "/count":
        return _text(start_response, "200 OK", str(_count(environ)).encode())
    if path == "/big":
        size = int(_query(environ, "mb", "50")) * 1024 * 1024
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
        )
        return _big(size)
    if path == "/slow" or path.startswith("/slow/"):
        print(SLOW_MARKER, file=sys.stderr, flush=True)
        time.sleep(float(_query(environ, "s", "1")))
        return _text(start_response, "200 OK", b"done")
    return _text(start_response, "404 Not Found", b"not found")
