"""The per-request object that crosses the hop.

Built on the loop thread (environ, body, what the client asked for), then used
by exactly one worker thread. Its worker-side methods only *post* to the loop:
bytes to write, the end of the response, an abort. The loop-side callbacks
live on the connection's protocol and are reached through `ResponseSink`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from .body import EMPTY_BODY
from .environ import Environ
from .flow import WriteGate
from .state import may_reuse

log = logging.getLogger("wsgiserve.error")

DRAIN_LIMIT = 64 * 1024  # unread request-body bytes we read and drop to keep a connection
COPY_LIMIT = 32 * 1024  # bigger pieces cross as a tuple and leave with writev, never copied

# What crosses to the loop: bytes, or a tuple of pieces for `transport.writelines`.
Wire = bytes | tuple[bytes, ...]


def wire_size(data: Wire) -> int:
    return len(data) if isinstance(data, bytes) else sum(map(len, data))


def pieces(*parts: bytes) -> Wire:
    """`parts` joined, unless one is big enough that copying it costs more than a writev."""
    for part in parts:
        if len(part) > COPY_LIMIT:
            return tuple(part for part in parts if part)
    return b"".join(parts)


class ServerClock:
    """Values shared by every connection of a server, refreshed by the loop once a second."""

    __slots__ = (
        "access_log",
        "date_header",
        "draining",
        "hook_worker",
        "now",
        "post_request",
        "pre_request",
        "server_header",
        "stats",
    )

    def __init__(self, server_name: str) -> None:
        self.date_header = b""
        self.server_header = f"Server: {server_name}\r\n".encode("latin-1")
        self.draining = False
        self.now = 0.0
        self.access_log: Any = None  # see accesslog.AccessLog
        # gunicorn-style request hooks from a config file, and the `worker` they receive
        self.pre_request: Any = None
        self.post_request: Any = None
        self.hook_worker: Any = None
        self.stats: Any = None  # metrics.WorkerStats when metrics or statsd are on


class ResponseSink(Protocol):
    """What an exchange needs from its connection; every method runs on the loop thread."""

    def on_send(self, data: Wire) -> None: ...
    def on_end(self, ending: tuple[Wire, bool]) -> None: ...
    def on_abort(self, exchange: Exchange) -> None: ...


class Body(Protocol):
    complete: bool
    expect_continue: bool

    def remaining(self) -> int | None: ...


class Exchange:
    __slots__ = (
        "app_started",
        "body",
        "clock",
        "connection",
        "ended",
        "environ",
        "error",
        "gate",
        "head_request",
        "hold",
        "keep_alive",
        "post",
        "reported",
        "started_at",
        "thread_id",
        "version",
    )

    def __init__(
        self,
        connection: ResponseSink,
        environ: Environ,
        body: Any,
        version: str,
        keep_alive: bool,
        gate: WriteGate,
        clock: ServerClock,
        post: Any,
    ) -> None:
        self.connection = connection
        self.environ = environ
        self.body = body
        self.version = version
        self.head_request = environ["REQUEST_METHOD"] == "HEAD"
        # Loop thread only: whether the connection may carry another request after this
        # one, as far as the request and the connection are concerned.
        self.keep_alive = keep_alive
        self.hold = False  # loop thread: not handed over until its short body has arrived
        self.gate = gate
        self.clock = clock
        self.post = post
        self.error: Exception | None = None
        self.started_at = time.monotonic()
        self.thread_id: int | None = None  # the worker thread running it, once one does
        self.app_started = 0.0  # time.monotonic() when that thread began it
        self.reported = False  # logged as running too long
        # Worker thread: the loop has been told how the response ends (on_end or on_abort).
        # `call.run_app` checks it on the way out, so no path leaves the loop waiting.
        self.ended = False

    # -- worker thread -----------------------------------------------------------------

    def may_keep_alive(self) -> bool:
        """Whether the connection can carry another request after this response, as far
        as can be told now (the response head says it; the loop decides at the end)."""
        body = self.body
        if body is EMPTY_BODY:  # most requests: may_reuse(keep_alive, draining, True, ...)
            return self.keep_alive and not self.clock.draining
        complete = body.complete
        # With `100 Continue` not sent, the client may or may not send the body.
        unread = None if complete or body.expect_continue else body.remaining()
        return may_reuse(self.keep_alive, self.clock.draining, complete, unread, DRAIN_LIMIT)

    def send(self, data: Wire) -> None:
        self.gate.reserve(len(data) if type(data) is bytes else wire_size(data))
        self.post(self.connection.on_send, data)

    def end(self, data: Wire, keep_alive: bool) -> None:
        if data:
            self.gate.reserve(len(data) if type(data) is bytes else wire_size(data))
        self.ended = True
        self.post(self.connection.on_end, (data, keep_alive))

    def abort(self) -> None:
        self.ended = True
        self.post(self.connection.on_abort, self)

    def log_error(self, message: str) -> None:
        environ = self.environ
        log.error("%s %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"], message)
