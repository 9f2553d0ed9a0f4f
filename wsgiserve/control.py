"""The supervisor's two small listeners: a control socket beside the pidfile that answers
`wsgiserve status`, and the Prometheus endpoint of --metrics-bind.

Both are served from the supervisor's own loop, one short exchange per connection;
a client that does not send its request within a second is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from .errors import StartupError
from .listeners import open_listener

log = logging.getLogger("wsgiserve.error")

CLIENT_TIMEOUT = 1.0  # seconds


def control_path(pidfile: str) -> str:
    """Where the control socket of the server with this pidfile lives."""
    return pidfile + ".ctl"


def bind_control(pidfile: str) -> socket.socket:
    """The control socket beside `pidfile`, bound and listening. Made by the command before
    it drops privileges, as the pidfile is: both often live in a root-owned /run."""
    path = control_path(pidfile)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(path)
    os.chmod(path, 0o600)  # the status shows request paths: owner only
    control.listen(16)
    control.setblocking(False)
    return control


class ControlListeners:
    def __init__(
        self,
        pidfile: str | None,
        metrics_bind: str | None,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], str],
        control: socket.socket | None = None,
    ) -> None:
        self._status = status
        self._metrics = metrics
        self._control: socket.socket | None = control
        self._prometheus: socket.socket | None = None
        if control is None and pidfile:
            self._control = bind_control(pidfile)
        if metrics_bind:
            try:
                listener = open_listener(metrics_bind, 64)
            except StartupError as error:  # its message speaks of -b: say which address
                raise StartupError(
                    f"--metrics-bind: {error}".replace("with -b", "with --metrics-bind")
                ) from None
            self._prometheus = listener.sock
            log.info("Metrics at: %s/metrics", listener.url)

    def fds(self) -> list[int]:
        return [s.fileno() for s in (self._control, self._prometheus) if s is not None]

    def handle(self, fd: int) -> None:
        listener = self._control if self._control and fd == self._control.fileno() else None
        listener = listener or self._prometheus
        if listener is None:
            return
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        with client:
            client.settimeout(CLIENT_TIMEOUT)
            try:
                request = client.recv(4096)
                if listener is self._control:
                    client.sendall(json.dumps(self._status()).encode() + b"\n")
                else:
                    client.sendall(_http_answer(request, self._metrics))
            except OSError:
                return

    def close(self) -> None:
        if self._control is not None:
            path = self._control.getsockname()
            self._control.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self._prometheus is not None:
            self._prometheus.close()


def _http_answer(request: bytes, metrics: Callable[[], str]) -> bytes:
    line = request.split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2 or line[0] not in (b"GET", b"HEAD"):
        return b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    if line[1].split(b"?")[0] not in (b"/metrics", b"/"):
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    body = metrics().encode()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    return head + (b"" if line[0] == b"HEAD" else body)


def query_status(pidfile: str) -> dict[str, Any]:
    """Ask the supervisor whose pidfile this is what it is doing (raises OSError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(control_path(pidfile))
        client.sendall(b"status\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
