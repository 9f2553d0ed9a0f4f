"""Endpoints for the tests of the operator's view and of worker recycling.

Routes (``PATH_INFO``):

* ``/pid`` - the answering worker's ``os.getpid()``.
* ``/hold?port=P`` - announces `HOLD_MARKER` on stderr, then blocks until the test's socket at
  127.0.0.1:P closes the connection it accepted (an event the test sets), and answers
  ``released``.
* ``/grow?mb=N`` - allocates N MiB, touches every page and keeps it for the life of the
  process (a leak), then answers with the pid.
* ``/wedge`` - wedges the worker's event loop: a signal handler installed at import runs on
  the main thread (the loop's) and never returns. The request itself is never answered.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HOLD_MARKER = "LIFECYCLE-HOLD-STARTED"
WEDGE_SIGNAL = signal.SIGUSR2

_kept: list[bytes] = []


_wedged = threading.Event()


def _wedge(_signum: int, _frame: object) -> None:
    _wedged.set()
    while True:
        time.sleep(3600)


# Imported on each worker's main thread, the only one allowed to set a handler.
signal.signal(WEDGE_SIGNAL, _wedge)


def _query(environ: Environ, name: str, default: str) -> str:
    return str(parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0])


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _hold(port: int) -> None:
    os.write(sys.stderr.fileno(), f"{HOLD_MARKER} pid={os.getpid()}\n".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as gate:
        while gate.recv(1024):
            pass


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    path = environ.get("PATH_INFO", "")
    pid = str(os.getpid()).encode()
    if path == "/pid":
        return _text(start_response, pid)
    if path == "/hold":
        _hold(int(_query(environ, "port", "0")))
        return _text(start_response, b"released")
    if path == "/grow":
        _kept.append(b"\x01" * (int(_query(environ, "mb", "1")) << 20))  # every page written
        return _text(start_response, pid)
    if path == "/wedge":
        os.kill(os.getpid(), WEDGE_SIGNAL)
        # The handler runs when the loop's thread next runs Python: a compiled loop could
        # write this answer first. Answer only once the loop is stuck, so it never leaves.
        _wedged.wait(30)
        return _text(start_response, b"wedged")
    return _text(start_response, b"not found", "404 Not Found")
