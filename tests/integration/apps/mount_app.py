"""`proxy_app` plus what a mounted app sees, and a response streamed in two halves.

Routes (``PATH_INFO``, so relative to the mount):

* ``/env`` - `proxy_app`'s report plus ``SCRIPT_NAME`` and ``PATH_INFO``.
* ``/gated?file=PATH`` - sends ``first``, then waits (at most ``GATE_WAIT`` s) until PATH
  exists before sending ``second``: a client that reads ``first`` before it creates PATH
  proves the response reached it while it was still being produced.
* anything else - `proxy_app` (``/count``, ``/hello``, ``/big?mb=N``, ...).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qs

from .plain_app import Environ, StartResponse
from .proxy_app import _report
from .proxy_app import app as proxy_app

GATE_WAIT = 20.0  # seconds; the client opens the gate long before


def _gated(path: str) -> Iterator[bytes]:
    yield b"first\n"
    deadline = time.monotonic() + GATE_WAIT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield b"second\n" if os.path.exists(path) else b"gate never opened\n"


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    path = environ.get("PATH_INFO")
    if path == "/env":
        report = _report(environ)
        report.update(SCRIPT_NAME=environ["SCRIPT_NAME"], PATH_INFO=path)
        body = json.dumps(report).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/gated":
        gate = parse_qs(environ.get("QUERY_STRING", ""))["file"][0]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _gated(gate)
    return proxy_app(environ, start_response)
