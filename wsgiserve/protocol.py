"""Loop thread only: one `HttpProtocol` per connection.

On top of `RequestReader` (parsing) and `Connection` (transport, timeouts,
closing), it runs the requests: it hands exchanges to the pool one at a time
(pipelined requests wait their turn, and reading pauses while they do), writes
what the worker posts back, and decides whether the connection carries another
request. Nothing here blocks or calls the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .body import RequestBody
from .connection import PAUSED_BODY, PAUSED_PIPELINE, PAUSED_POOL, Phase
from .errors import HTTPError, ServiceUnavailable
from .exchange import Exchange, Wire, wire_size
from .reader import RequestReader

if TYPE_CHECKING:
    from .server import Server


class HttpProtocol(RequestReader):
    __slots__ = ("_outbox",)

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._outbox: list[bytes] = []  # response pieces of this batch, not yet written

    # -- dispatch and completion -----------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the next pipelined request if none is in the app."""
        while self.current is None and self._pipeline and self.transport is not None:
            item = self._pipeline[0]
            if isinstance(item, HTTPError):
                self._pipeline.clear()
                clock = self.server.clock
                self.transport.write(
                    item.response_bytes(clock.date_header, clock.server_header)
                )
                self._close_lingering()
                return
            pool = self.server.pool
            limit = self.settings.limit_concurrency
            if limit and pool.in_flight >= limit:
                self._pipeline[0] = ServiceUnavailable("too many requests in this worker")
                continue
            if pool.in_flight >= pool.capacity and not pool.admit(self._admitted):
                self._pause(PAUSED_POOL)
                return
            self._pipeline.popleft()
            self.current = item
            self._responded = False
            pool.submit(item)
        if self._pipeline:
            self._pause(PAUSED_PIPELINE)
        elif self._paused & PAUSED_PIPELINE:
            self._resume(PAUSED_PIPELINE)

    def _admitted(self) -> None:
        self._resume(PAUSED_POOL)
        self._dispatch()

    def on_send(self, data: Wire) -> None:
        # Pieces of one response posted in one batch leave together: one writev, not one
        # send() each (a streamed body posts many small pieces).
        self._responded = True
        outbox = self._outbox
        if not outbox:
            self.server.pool.after_batch(self._flush)
        if isinstance(data, bytes):
            outbox.append(data)
        else:
            outbox.extend(data)

    def _flush(self) -> None:
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        if self.transport is not None:
            if len(outbox) == 1:
                self.transport.write(outbox[0])
            else:
                self.transport.writelines(outbox)
        self.gate.written(sum(map(len, outbox)))

    def on_end(self, ending: tuple[Wire, bool]) -> None:
        data, keep_alive = ending
        if self._outbox:
            self._flush()
        self.server.pool.finished()
        self._served += 1
        exchange = self.current
        self.current = None
        transport = self.transport
        if transport is None:
            return
        if data:
            if isinstance(data, bytes):
                transport.write(data)
                self.gate.written(len(data))
            else:
                transport.writelines(data)
                self.gate.written(wire_size(data))
        if not keep_alive or exchange is None or not exchange.keep_alive:
            if self._receiving is not None and self._receiving is exchange:
                self._close_lingering()  # the client may still be sending the body
            else:
                self._close()
            return
        if self._receiving is exchange and isinstance(exchange.body, RequestBody):
            exchange.body.discard()  # read and drop the rest of the unread body
            if exchange.body.paused_reading:
                exchange.body.paused_reading = False
                self._resume(PAUSED_BODY)
        self._next()

    def on_abort(self, exchange: Exchange) -> None:
        self.server.pool.finished()
        self.current = None
        self._flush()  # what the app produced before failing leaves first, then the reset
        if self.transport is not None:
            self.transport.abort()
            self.phase = Phase.CLOSED

    def _next(self) -> None:
        if self._pipeline:
            self._dispatch()
        elif self._stop_parsing:
            self._close()
        elif self._receiving is None and not self._in_head:
            self.phase = Phase.IDLE
            self.idle_since = self._head_since = self.server.clock.now
            if self._paused & PAUSED_PIPELINE:
                self._resume(PAUSED_PIPELINE)
