"""What an app behind nginx's uwsgi_pass sees.

Routes (``PATH_INFO``, after any mount point):

* ``/env`` - JSON of the request keys of the environ and a form body (``form``) if any.
* ``/count`` - reads ``wsgi.input`` and answers with the byte count and its SHA-256.
* ``/stream?marker=PATH`` - yields one line, then waits (10 s at most) for the file PATH to
  exist before the second: a client that reads the first line before creating the file
  shows the response arriving progressively.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

SHOWN = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_URI",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "REMOTE_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "HTTP_HOST",
    "wsgi.url_scheme",
)


def _json(start_response: Callable[..., Any], report: dict[str, Any]) -> list[bytes]:
    body = json.dumps(report).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _stream(marker: str) -> Iterator[bytes]:
    yield b"first\n"
    deadline = time.monotonic() + 10
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield b"second\n"


def _fail() -> Iterator[bytes]:
    yield b"first\n"
    raise RuntimeError("the app failed mid-stream (on purpose)")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/count":
        digest = hashlib.sha256()
        size = 0
        while chunk := environ["wsgi.input"].read(65536):
            digest.update(chunk)
            size += len(chunk)
        return _json(start_response, {"size": size, "sha256": digest.hexdigest()})
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream(query["marker"][0])
    if path == "/fail":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _fail()
    report: dict[str, Any] = {key: environ.get(key) for key in SHOWN}
    report["uwsgi_keys"] = [key for key in environ if key.startswith("UWSGI")]
    if environ.get("CONTENT_TYPE") == "application/x-www-form-urlencoded":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        report["form"] = parse_qs(environ["wsgi.input"].read(length).decode())
    return _json(start_response, report)
