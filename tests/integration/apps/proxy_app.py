"""What an app behind a proxy sees, plus the plain routes for bodies in both directions.

Routes (``PATH_INFO``):

* ``/env`` - JSON of the client and host keys of the environ (``REMOTE_ADDR``,
  ``REMOTE_PORT``, ``wsgi.url_scheme``, ``HTTP_HOST``, ``SERVER_NAME``, ``SERVER_PORT``),
  every forwarding header key still present, and ``pid``; ``?sleep=F`` waits F seconds first,
  so a request can be in flight while its server is told to stop.
* anything else - `plain_app.app` (``/hello``, ``/count``, ``/big?mb=N``, ``/slow?s=F``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from urllib.parse import parse_qs

from .plain_app import Environ, StartResponse
from .plain_app import app as plain_app

SHOWN = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT")
FORWARDING = ("HTTP_X_FORWARDED_", "HTTP_FORWARDED")


def _report(environ: Environ) -> dict[str, object]:
    report: dict[str, object] = {key: environ.get(key) for key in SHOWN}
    report.update((key, value) for key, value in environ.items() if key.startswith(FORWARDING))
    report["pid"] = os.getpid()
    return report


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    if environ.get("PATH_INFO") != "/env":
        return plain_app(environ, start_response)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    time.sleep(float(query.get("sleep", ["0"])[0]))
    body = json.dumps(_report(environ)).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
