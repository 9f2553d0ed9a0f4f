"""Loop thread only: the life of one connection, whatever it carries.

`Connection` owns the transport's side of a connection: why reading is paused,
the write gate that stalls a worker behind a slow client, the four timeouts
(`check_timers`), and every way a connection ends: a plain close, a lingering
close after an error, an abort, and the close of idle connections on shutdown.
`protocol.HttpProtocol` builds on it with the HTTP parsing and the requests.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import enum
import logging
from typing import TYPE_CHECKING

from .body import RequestBody
from .errors import BodyTimeout, ClientDisconnected, HTTPError, RequestTimeout
from .exchange import Exchange
from .flow import WriteGate

if TYPE_CHECKING:
    from .server import Server
    from .settings import Settings

log = logging.getLogger("wsgiserve.error")

LINGER_SECONDS = 2.0  # how long a closing connection reads and drops what still arrives


class Phase(enum.Enum):
    """Where the connection is; transitions happen only in the methods named beside each."""

    IDLE = "idle"  # between requests, nothing received yet (__init__, _next)
    ACTIVE = "active"  # bytes of a request arrived; it may be waiting or running (data_received)
    CLOSED = "closed"  # the transport is closing or gone (_close, connection_lost)


# Why reading is paused, as bits of one int (an IntFlag costs too much per request);
# reading resumes when no reason is left.
PAUSED_BODY = 1  # the current request's body buffer is full
PAUSED_PIPELINE = 2  # parsed requests are waiting behind the one in the app
PAUSED_POOL = 4  # every thread is busy and the pool's queue is full


class Connection(asyncio.Protocol, metaclass=abc.ABCMeta):
    """The transport, flow control, timeouts and closing of one connection.

    Subclasses parse requests into `_pipeline`, run `current`, and provide
    `_refuse` (answer an error, then close) and `_dispatch` (start the next request).
    """

    # Slots keep an idle keep-alive connection small (no per-instance __dict__).
    __slots__ = (
        "_closing_since",
        "_head_since",
        "_linger_until",
        "_paused",
        "_pipeline",
        "_receiving",
        "_served",
        "_stalled_since",
        "_stop_parsing",
        "current",
        "gate",
        "idle_since",
        "phase",
        "server",
        "settings",
        "transport",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.settings: Settings = server.settings
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.IDLE
        self.idle_since = server.clock.now  # last bytes received, or the last response's end
        self._head_since = server.clock.now  # when we began waiting for the current head
        self._stalled_since = 0.0  # when the transport last paused writing
        self._linger_until = 0.0  # set by _close_lingering: when to stop dropping input
        self._closing_since = 0.0  # when close() was asked for; the transport may still flush
        self._served = 0
        self.gate = WriteGate()
        self._paused = 0
        self._pipeline: collections.deque[Exchange | HTTPError] = collections.deque()
        self.current: Exchange | None = None  # in the pool or the app
        self._receiving: Exchange | None = None  # whose body is arriving
        self._stop_parsing = False  # no request after the current ones will be served

    @abc.abstractmethod
    def _refuse(self, error: HTTPError) -> None:
        """Answer `error` once the requests before it are answered, then close."""

    @abc.abstractmethod
    def _dispatch(self) -> None:
        """Start the next pipelined request if none is in the app."""

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection lost: %s", exc)
        self.phase = Phase.CLOSED
        self.transport = None
        self.server.connection_closed(self)
        self.gate.abort()
        if self.current is not None and isinstance(self.current.body, RequestBody):
            self.current.body.fail(ClientDisconnected("client disconnected"))
        self._pipeline.clear()

    # -- writing -------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.gate.pause()
        self._stalled_since = self.server.clock.now

    def resume_writing(self) -> None:
        self.gate.resume()

    # -- reading and closing ---------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None:
            self.transport.resume_reading()

    def _close(self) -> None:
        self.phase = Phase.CLOSED
        if self.transport is not None:
            self._closing_since = self.server.clock.now
            self.transport.close()  # after the buffered response has been written

    def _close_lingering(self) -> None:
        """Close after a response while the client may still be sending (RFC 9112 §9.6).

        Closing a socket with unread input makes the kernel answer with a reset, which
        can destroy the response before the client reads it. So the response is
        followed by our FIN, and whatever still arrives is read and dropped until the
        client closes its side or LINGER_SECONDS pass.
        """
        transport = self.transport
        self.phase = Phase.CLOSED
        if transport is None:
            return
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        transport.write_eof()
        self._stop_parsing = True  # data_received drops what arrives from now on
        self._receiving = None
        self._linger_until = self.server.clock.now + LINGER_SECONDS
        if self._paused:
            self._paused = 0
            transport.resume_reading()

    # -- timeouts and shutdown ---------------------------------------------------------------

    def check_timers(self, now: float) -> None:
        """Once a second, from the server: enforce the four timeouts (each 0 = off)."""
        settings = self.settings
        if self.phase is Phase.CLOSED:
            transport = self.transport
            if transport is None:
                return
            if self._linger_until and now >= self._linger_until:
                self._linger_until = 0.0
                self._closing_since = now
                transport.close()
            elif (
                not self._linger_until
                and settings.write_timeout
                and now - self._closing_since >= settings.write_timeout
            ):
                transport.abort()  # the client never took the end of its response
            return
        if self.gate.paused and settings.write_timeout:
            if now - self._stalled_since >= settings.write_timeout:
                log.info("client stopped reading for %gs (--write-timeout): dropping it",
                         settings.write_timeout)
                self._abort()
            return
        receiving = self._receiving
        if receiving is not None:  # a body is arriving
            if self._paused & PAUSED_BODY or not settings.body_timeout:
                return  # the app is not reading: not the client's fault
            if now - self.idle_since >= settings.body_timeout:
                log.info("request body stalled for %gs (--body-timeout)", settings.body_timeout)
                self._receiving = None
                receiving.keep_alive = False
                self._stop_parsing = True
                if receiving is self.current or receiving not in self._pipeline:
                    receiving.body.fail(BodyTimeout("the request body stopped arriving"))
                    if self.current is None:
                        self._close()
                else:
                    self._pipeline.remove(receiving)
                    self._refuse(RequestTimeout("the request body stopped arriving"))
                    self._dispatch()
            return
        if self.in_flight():
            return
        if self.phase is Phase.IDLE and self._served:
            if now - self.idle_since >= settings.keep_alive:
                self._close()  # an idle keep-alive connection: close quietly
        elif settings.header_timeout and now - self._head_since >= settings.header_timeout:
            if self.phase is Phase.ACTIVE:
                log.info("request head not complete after %gs (--header-timeout)",
                         settings.header_timeout)
                self._refuse(RequestTimeout("the request head did not arrive in time"))
                self._dispatch()
            else:
                self._close()

    def _abort(self) -> None:
        self.phase = Phase.CLOSED
        if self.transport is not None:
            self.transport.abort()

    def in_flight(self) -> bool:
        """True while a request is waiting for, or running in, the app."""
        return self.current is not None or bool(self._pipeline)

    def close_if_idle(self, spare_newcomers: bool = False) -> bool:
        """Close the connection unless a request is in flight (on shutdown).

        With `spare_newcomers`, a connection that has not finished its first request yet
        (or is between the bytes of one) is left open too.
        """
        if self._linger_until and self.transport is not None:
            self.transport.close()  # no lingering on shutdown
            return True
        if self.phase is Phase.CLOSED or self.in_flight():
            return False
        if spare_newcomers and (self._served == 0 or self.phase is Phase.ACTIVE):
            return False
        self._close()
        return True
