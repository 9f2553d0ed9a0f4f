"""An echo WSGI app for black-box tests: it answers with what it saw and records every call.

The harness model of ``shared/corpus/README.md`` §1: the test reads the app's records
out-of-band (not from the response) to prove whether the app ran, what it saw, and whether
reading ``wsgi.input`` raised.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

ReadMode = Literal["read", "read_n", "readline", "iter"]
READ_MODES: tuple[ReadMode, ...] = ("read", "read_n", "readline", "iter")

StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]

_ECHOED = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL")
_IF_PRESENT = ("CONTENT_TYPE", "CONTENT_LENGTH")


@dataclass(frozen=True)
class Call:
    """One finished app call.

    `echo` holds the environ entries echoed (str values, as in the environ). `body` is what
    was read from ``wsgi.input`` before any error; `input_error` names the exception that
    reading raised, or is None.
    """

    echo: dict[str, str]
    body: bytes
    input_error: str | None
    read_mode: ReadMode


def echo_of(environ: dict[str, Any]) -> dict[str, str]:
    """The environ entries the echo app reports: fixed CGI keys, every ``HTTP_*``, the scheme."""
    echo = {key: environ[key] for key in _ECHOED if key in environ}
    echo.update({key: environ[key] for key in _IF_PRESENT if key in environ})
    echo.update({key: value for key, value in environ.items() if key.startswith("HTTP_")})
    echo["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    return echo


class EchoApp:
    """A WSGI app that reads the whole body and answers 200 with a JSON echo of the request.

    The JSON object holds the entries from `echo_of` plus ``"body"``, the body in base64. If
    reading ``wsgi.input`` raises, the app answers 500 with ``{"input_error": ...}``, so a
    test can tell an input error from a short body. Calls are recorded thread-safely:
    `started` counts calls as they enter, `calls` lists them as they finish.

    Args:
        read_mode: how the body is read: ``read()``, ``read(chunk_size)`` in a loop,
            ``readline()`` in a loop, or iteration over the stream.
        chunk_size: the `n` of ``read(n)`` in ``"read_n"`` mode.
    """

    def __init__(self, read_mode: ReadMode = "read", chunk_size: int = 3) -> None:
        self._lock = threading.Condition()
        self._read_mode: ReadMode = read_mode
        self._chunk_size = chunk_size
        self._started = 0
        self._active = 0
        self._calls: list[Call] = []

    @property
    def read_mode(self) -> ReadMode:
        """The read mode used by calls that start from now on."""
        with self._lock:
            return self._read_mode

    @read_mode.setter
    def read_mode(self, mode: ReadMode) -> None:
        if mode not in READ_MODES:
            raise ValueError(f"unknown read mode {mode!r}")
        with self._lock:
            self._read_mode = mode

    @property
    def started(self) -> int:
        """How many calls have entered the app so far."""
        with self._lock:
            return self._started

    @property
    def calls(self) -> list[Call]:
        """A copy of the finished calls, in the order they finished."""
        with self._lock:
            return list(self._calls)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no call is in progress or `timeout` seconds pass; True if idle."""
        with self._lock:
            return self._lock.wait_for(lambda: self._active == 0, timeout)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            self._started += 1
            self._active += 1
            mode = self._read_mode
        call: Call | None = None
        try:
            echo = echo_of(environ)
            body, error = self._read_body(environ["wsgi.input"], mode)
            call = Call(echo, body, error, mode)
        finally:
            with self._lock:
                self._active -= 1
                if call is not None:
                    self._calls.append(call)
                self._lock.notify_all()
        if error is not None:
            payload = json.dumps({"input_error": error}).encode()
            status = "500 Internal Server Error"
        else:
            payload = json.dumps({**echo, "body": base64.b64encode(body).decode()}).encode()
            status = "200 OK"
        start_response(
            status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _read_body(self, stream: Any, mode: ReadMode) -> tuple[bytes, str | None]:
        body = bytearray()
        try:
            if mode == "read":
                body += stream.read()
            elif mode == "iter":
                for line in stream:
                    body += line
            else:
                while True:
                    piece = stream.read(self._chunk_size) if mode == "read_n" else stream.readline()
                    if not piece:
                        break
                    body += piece
        except Exception as error:  # the point: record whatever wsgi.input raised
            return bytes(body), f"{type(error).__name__}: {error}"
        return bytes(body), None


def decode_echo(body: bytes) -> tuple[dict[str, str], bytes]:
    """Split an echo response body into (environ entries, request body bytes)."""
    data = json.loads(body)
    request_body = base64.b64decode(data.pop("body"))
    return data, request_body
