"""Endpoints for the supervisor and configuration tests: which process answered, slow and
hanging requests, the environment, and a factory that reports its arguments.

Routes (``PATH_INFO``):

* ``/pid`` - the answering worker's ``os.getpid()``.
* ``/hello`` - a tiny fixed response.
* ``/id?id=N`` - answers N (a client counting its requests).
* ``/slow?s=F`` - announces itself on stderr, sleeps F seconds in `sleepy_handler`, then
  answers ``done``.
* ``/hang`` - announces itself on stderr, then blocks forever on an Event nobody sets.
* ``/env?name=KEY`` - the value of the environment variable KEY (``<unset>`` when missing).
* ``/cwd`` - the worker's current directory.
* ``/args`` (only on apps made by `create_app`) - the factory's arguments as JSON.

Importing this module writes `IMPORT_MARKER` and the importing pid to stderr, so a test can
tell whether the app was loaded once in the supervisor (``--preload``) or in each worker.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

IMPORT_MARKER = "OPS-APP-IMPORTED"
SLOW_MARKER = "OPS-SLOW-STARTED"
HANG_MARKER = "OPS-HANG-STARTED"


def _announce(line: str) -> None:
    """One line on stderr in one write, so lines from several workers never interleave."""
    os.write(sys.stderr.fileno(), f"{line}\n".encode())


_announce(f"{IMPORT_MARKER} pid={os.getpid()}")

_never_set = threading.Event()


def _query(environ: Environ, name: str, default: str) -> str:
    return str(parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0])


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def sleepy_handler(seconds: float) -> bytes:
    """Sleep on the calling pool thread; its name is what the --timeout stack dump shows."""
    time.sleep(seconds)
    return b"done"


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``; see the module docstring."""
    path = environ.get("PATH_INFO", "")
    if path == "/pid":
        return _text(start_response, str(os.getpid()).encode())
    if path == "/hello":
        return _text(start_response, b"hello")
    if path == "/id":
        return _text(start_response, _query(environ, "id", "").encode())
    if path == "/slow":
        _announce(SLOW_MARKER)
        return _text(start_response, sleepy_handler(float(_query(environ, "s", "1"))))
    if path == "/hang":
        _announce(HANG_MARKER)
        _never_set.wait()
        return _text(start_response, b"unreachable")
    if path == "/env":
        value = os.environ.get(_query(environ, "name", ""), "<unset>")
        return _text(start_response, value.encode())
    if path == "/cwd":
        return _text(start_response, os.getcwd().encode())
    return _text(start_response, b"not found", "404 Not Found")


def create_app(*args: Any, **kwargs: Any) -> App:
    """A factory: the app above, plus ``/args`` answering with this call's arguments."""
    report = json.dumps({"args": list(args), "kwargs": kwargs}).encode()

    def made(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/args":
            return _text(start_response, report)
        return app(environ, start_response)

    return made
