"""Tiny WSGI applications used by the benchmarks.

Keep these trivial: the point is to measure the server, not the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
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


BIG_BODY = b"x" * (1 << 20)  # 1 MiB
_BIG_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(BIG_BODY))),
]
STREAM_CHUNK = b"y" * (16 << 10)  # 16 KiB
STREAM_CHUNKS = 64  # 64 x 16 KiB = 1 MiB
SLEEP_SECONDS = 0.010


def big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """1 MiB body in one piece, with Content-Length."""
    start_response("200 OK", list(_BIG_HEADERS))
    return [BIG_BODY]


def stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """1 MiB as 64 chunks of 16 KiB and no Content-Length: the server picks the framing."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


def echo_length(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body and answer with its length in bytes, as text."""
    stream_in = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    total = 0
    while remaining > 0:
        chunk = stream_in.read(min(remaining, 64 << 10))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    body = str(total).encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def sleepy(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Hello after a 10 ms sleep: an app waiting on I/O (a database, an upstream service)."""
    time.sleep(SLEEP_SECONDS)
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO_BODY]


# The framework scenarios (benchmarks/framework_apps.py) answer with these exact bodies.
FRAMEWORK_ITEMS = [{"id": n, "name": f"item {n}", "price": n * 1.5} for n in range(1, 6)]
# Flask's jsonify outside debug mode: sorted keys, compact separators, a final newline.
FLASK_JSON_BODY = (
    json.dumps({"count": len(FRAMEWORK_ITEMS), "items": FRAMEWORK_ITEMS}, separators=(",", ":"))
    + "\n"
).encode()
DJANGO_PAGE_BODY = (
    "<!doctype html>\n<html><head><title>Hello, World!</title></head>\n"
    "<body><h1>Hello, World!</h1>\n<ul>"
    + "".join(f"<li>{item['name']}: {item['price']:.2f}</li>" for item in FRAMEWORK_ITEMS)
    + "</ul>\n</body></html>\n"
).encode()
