"""Loop thread only: one connection, from accept to close.

`HttpConnection` is the `asyncio.Protocol` of one connection. It owns the
transport, its `RequestParser`, the connection's state (`state.Reading` and
`state.Closing`: every assignment of them is in this file), the pipeline of
requests taken in, why reading is paused, the response pieces of the current
batch, the hand-over to the pool and the worker's completions, the timers (as
`state.timer_action` rules them) and every way of closing. Nothing here blocks or
calls the app.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import socket
import struct
from typing import Any

from .body import EMPTY_BODY, RequestBody
from .context import ConnectionContext
from .environ import Environ, connection_environ
from .errors import (
    BadRequest,
    BodyCutShort,
    BodyFramingError,
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    HTTPError,
    RequestTimeout,
    ServiceUnavailable,
    TrailerTooLarge,
)
from .exchange import Exchange, Wire, wire_size
from .flow import WriteGate
from .parser import Parser
from .state import Action, Closing, Reading, Stamps, timer_action

log = logging.getLogger("wsgiserve.error")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Requests parsed and waiting behind the one in the app; past this, parsing stops at the
# next request boundary and reading pauses (the memory a pipelining client can make us
# hold is this many environs, plus one read of raw bytes).
PIPELINE_AHEAD = 4

QUEUE_FULL = (
    "every thread is busy and %d requests are in or waiting for one. The app (or what it "
    "waits on) is slower than the traffic: raise --threads or add workers"
)
# Why reading is paused, as bits of one int (an IntFlag costs too much per request);
# reading resumes when no reason is left.
PAUSED_BODY = 1  # the current request's body buffer is full
PAUSED_PIPELINE = 2  # parsed requests are waiting behind the one in the app

# Enum members as module constants: `Reading.IDLE` costs an attribute lookup on the enum
# class (~0.1 us in CPython 3.11) and the hot path compares states a dozen times a request.
IDLE, HEAD, BODY, DRAINING, STOPPED, LINGERING = (
    Reading.IDLE,
    Reading.HEAD,
    Reading.BODY,
    Reading.DRAINING,
    Reading.STOPPED,
    Reading.LINGERING,
)
OPEN, CLOSING, CLOSED = Closing.OPEN, Closing.CLOSING, Closing.CLOSED
_BODY_STATES = (BODY, DRAINING)
# What the app's `wsgi.input` raises for an error found in a body it is reading.
_BODY_FAILURES: dict[int, type[BodyFramingError]] = {413: BodyTooLarge, 431: TrailerTooLarge}
# SO_LINGER on, 0 seconds: closing the socket sends a TCP reset, not a FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


class HttpConnection(asyncio.Protocol):
    # Slots keep an idle keep-alive connection small (no per-instance __dict__).
    __slots__ = (
        "_body_waker",
        "_continue_owed",
        "_eof",
        "_held",
        "_outbox",
        "_parser",
        "_paused",
        "_pipeline",
        "_receiving",
        "_refusal",
        "_refusal_environ",
        "_responded",
        "_sent",
        "_unparsed",
        "closing",
        "context",
        "current",
        "gate",
        "reading",
        "served",
        "stamps",
        "transport",
    )

    def __init__(self, context: ConnectionContext) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.reading = IDLE
        self.closing = OPEN
        self.stamps = Stamps(since=context.clock.now)
        self.served = 0  # responses completed
        self.gate = WriteGate(budget=context.budget)
        self.current: Exchange | None = None  # in the pool or the app
        self._parser: Parser | None = None  # made once the addresses are known
        self._pipeline: collections.deque[Exchange] = collections.deque()  # parsed, waiting
        self._refusal: HTTPError | None = None  # answered after the pipeline, then close
        self._refusal_environ: Environ | None = None
        self._receiving: Exchange | None = None  # whose message is arriving
        self._paused = 0
        self._unparsed = b""  # input held back while the pipeline is full
        self._eof = False  # the client finished sending
        self._outbox: list[bytes] = []  # response pieces of this batch, not yet written
        self._responded = False  # the current response has begun on the wire
        self._continue_owed = False  # the arriving body waits for our `100 Continue`
        self._sent = 0  # bytes given to the transport
        self._held = 0  # bytes counted against the worker's response budget (while stalled)
        self._body_waker: Any = None

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        context = self.context
        environ_base = connection_environ(
            context.environ_base,
            transport.get_extra_info("sockname"),
            transport.get_extra_info("peername"),
        )
        self._parser = context.make_parser(self, environ_base)
        context.opened(self)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or parser.stopped:
            return  # after a close request, an error or EOF; or lingering: dropped
        if self._unparsed:  # the pipeline is full: hold this too, it is one read at most
            self._unparsed += data
            return
        try:
            rest = parser.feed(data)
            if rest:
                self._unparsed = rest
                self._pause(PAUSED_PIPELINE)
            elif parser.in_head and self.reading is IDLE:
                self.reading = HEAD  # part of a head arrived: --header-timeout runs
                self.stamps.since = self.context.clock.now
            self._dispatch()
        except Exception:  # a bug of ours: cost this connection, never the loop
            log.exception("internal error on a connection; aborting it")
            self._abort()

    def eof_received(self) -> bool:
        # The client finished sending. Requests taken in still get their answers
        # (half-close); a request cut short can never complete.
        self._eof = True
        receiving = self._receiving
        if receiving is not None and receiving.body is not EMPTY_BODY:
            self._receiving = None
            if receiving is self.current:
                receiving.body.fail(BodyCutShort("the request body was cut short"))
            elif receiving in self._pipeline:
                self._pipeline.remove(receiving)
                refusal = BadRequest("the request body was cut short")
                refusal.head_request = receiving.head_request
                self._refuse(refusal, receiving.environ)
        if not self._unparsed:
            self._stop_reading()
        try:
            self._dispatch()
        except Exception:
            log.exception("internal error on a connection; aborting it")
            self._abort()
        # With nothing to answer, returning False lets the transport close.
        return self.in_flight() or self._refusal is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection lost: %s", exc)
        self.closing = CLOSED
        self.transport = None
        if self._parser is not None:
            # Parser and connection refer to each other: let go here, so both are freed by
            # reference counting now rather than by the cyclic collector (which took ~5% of
            # a `Connection: close` worker's CPU when every connection was left to it).
            self._parser.stop()
            self._parser = None
        self._release()
        self.context.closed(self)
        self.gate.abort()
        current = self.current
        if current is not None and isinstance(current.body, RequestBody):
            current.body.fail(ClientDisconnected("client disconnected"))
        self._pipeline.clear()
        self._receiving = None
        self._unparsed = b""

    def pause_writing(self) -> None:
        self.gate.pause()
        stamps = self.stamps
        stamps.write_stalled_since = stamps.write_window_since = self.context.clock.now
        stamps.write_sent_at_window = stamps.write_sent = self._taken()
        self._hold()

    def resume_writing(self) -> None:
        self.stamps.write_stalled_since = 0.0
        self._release()
        self.gate.resume()

    def _hold(self) -> None:
        """Count what this stalled connection's transport holds against the budget."""
        transport = self.transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        self.context.budget.change(held - self._held)
        self._held = held

    def _release(self) -> None:
        if self._held:
            self.context.budget.change(-self._held)
            self._held = 0

    # -- what the parser reports (parser.RequestSink) --------------------------------------

    def on_head(
        self,
        environ: Environ,
        version: str,
        keep_alive: bool,
        length: int | None,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        context = self.context
        body: Any = EMPTY_BODY  # the parser put it in the environ already
        if length != 0:
            body = environ["wsgi.input"] = RequestBody(
                self._body_wanted_callback(), length, expect_continue
            )
        # An Upgrade we decline closes the connection after the response.
        exchange = Exchange(
            self,
            environ,
            body,
            version,
            keep_alive and not upgrade,
            self.gate,
            context.clock,
            context.post,
        )
        self._receiving = exchange
        self._pipeline.append(exchange)
        if length != 0:
            preread = context.body_preread
            # A short body already on its way is read whole before the app runs, so no
            # app thread waits on the network for it; with 100-continue the app decides.
            exchange.hold = length is not None and length <= preread and not expect_continue
            self._continue_owed = expect_continue
            stamps = self.stamps
            stamps.body_received = 0
            stamps.body_wanted_before = stamps.body_wanted_since = 0.0
            self.reading = BODY
            self._update_wanted()
        if len(self._pipeline) >= PIPELINE_AHEAD:
            assert self._parser is not None
            self._parser.pause_after_head = True

    def on_body(self, data: bytes) -> None:
        receiving = self._receiving
        if receiving is None:
            return
        stamps = self.stamps
        stamps.body_received += len(data)
        stamps.body_progress = self.context.clock.now
        if receiving.body.feed(data):
            self._pause(PAUSED_BODY)

    def on_message_end(self) -> None:
        receiving = self._receiving
        if receiving is None:
            return
        self._receiving = None
        if receiving.body is not EMPTY_BODY:
            receiving.body.finish()
            receiving.hold = False
            self._update_wanted(False)
        # Its request is in flight, so no client timer runs until the response ends.
        self.reading = IDLE
        if not receiving.keep_alive:
            self._stop_reading()  # bytes after a `Connection: close` request are ignored

    def on_refused(self, error: HTTPError, in_body: bool) -> None:
        log.debug("refusing a request: %s", error.detail)
        if error.hint:
            parser = self._parser
            peer = parser.partial_environ().get("REMOTE_ADDR") if parser is not None else ""
            self.context.warn(error.hint, peer or "a unix socket")
        receiving = self._receiving
        if in_body and receiving is not None:
            self._receiving = None
            receiving.keep_alive = False
            if receiving is self.current:
                # The app is reading this body: its next read raises, and the app answers.
                failure = _BODY_FAILURES.get(error.status, BodyFramingError)
                receiving.body.fail(failure(error.detail))
                self._stop_reading()
                return
            if receiving in self._pipeline:
                self._pipeline.remove(receiving)
                self._refuse(error, receiving.environ)
                return
            if self.reading is DRAINING:  # already answered: just go
                self._stop_reading()
                self._close()
                return
        self._refuse(error)

    def use_parser(self, parser: Parser) -> None:
        self._parser = parser

    # -- what the worker posts back (exchange.ResponseSink) --------------------------------

    def on_send(self, data: Wire) -> None:
        # Pieces of one response posted in one batch leave together: one writev, not one
        # send() each (a streamed body posts many small pieces).
        self._responded = True
        outbox = self._outbox
        if not outbox:
            self.context.pool.after_batch(self._flush)
        if isinstance(data, bytes):
            outbox.append(data)
        else:
            outbox.extend(data)

    def on_end(self, ending: tuple[Wire, bool]) -> None:
        data, keep_alive = ending
        if self._outbox:
            self._flush()
        self.context.pool.finished()
        self.served += 1
        exchange = self.current
        self.current = None
        transport = self.transport
        if transport is None or exchange is None:
            return
        if data:
            if type(data) is bytes:  # the usual whole small response: no helper call
                transport.write(data)
                self._sent += len(data)
                self.gate.written(len(data))
            else:
                self._write(data)
        if not keep_alive or not exchange.keep_alive:
            if self._receiving is exchange:  # both stop reading first
                self._close_lingering()  # the client may still be sending the body
            else:
                self._close()
            return
        if self._receiving is exchange:
            # Keep the connection: read and drop the rest of the unread body.
            body = exchange.body
            body.discard()
            self.reading = DRAINING
            if body.paused_reading:
                body.paused_reading = False
                self._resume(PAUSED_BODY)
            self._update_wanted()
        elif self.reading is IDLE or self.reading is HEAD:
            self.stamps.since = self.context.clock.now  # the client's timers start now
        if self._pipeline or self._unparsed or self._refusal is not None:
            self._dispatch()
        elif self._parser is not None and self._parser.stopped:
            self._close_if_done()

    def on_abort(self, exchange: Exchange) -> None:
        self.context.pool.finished()
        self.current = None
        self._flush()  # what the app produced before failing leaves first, then the reset
        self._abort()

    # -- parsing and dispatch ---------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the next request if none is in the app; answer a refusal once its turn
        comes; parse held-back input once the pipeline has room."""
        while self.transport is not None and self.current is None:
            pipeline = self._pipeline
            if pipeline:
                exchange = pipeline[0]
                if exchange.hold:
                    break  # its short body is still arriving
                context = self.context
                pool = context.pool
                limit = context.limit_concurrency
                if limit and pool.in_flight >= limit:
                    pipeline.clear()
                    self._receiving = None
                    refusal = ServiceUnavailable("too many requests in this worker")
                    refusal.head_request = exchange.head_request
                    self._refuse(refusal, exchange.environ)
                    continue
                if pool.in_flight >= pool.crowded_at:
                    context.warn(QUEUE_FULL, pool.in_flight + 1)
                pipeline.popleft()
                self.current = exchange
                self._responded = False
                pool.submit(exchange)
            elif self._refusal is not None:
                answer, self._refusal = self._refusal, None
                clock = self.context.clock
                self._write(answer.response_bytes(clock.date_header, clock.server_header))
                self._record(answer, self._refusal_environ)
                self._close_lingering()
                return
            else:
                break
        parser = self._parser
        if parser is not None and (self._unparsed or parser.pause_after_head):
            self._parse_held_back(parser)

    def _parse_held_back(self, parser: Parser) -> None:
        """The pipeline may have room again: parse the input held back while it was full."""
        parser.pause_after_head = len(self._pipeline) >= PIPELINE_AHEAD
        if not self._unparsed or parser.pause_after_head or self.transport is None:
            return
        data, self._unparsed = self._unparsed, b""
        rest = parser.feed(data)
        if rest:
            self._unparsed = rest
        else:
            if parser.in_head and self.reading is IDLE:
                self.reading = HEAD
                self.stamps.since = self.context.clock.now
            self._resume(PAUSED_PIPELINE)
            if self._eof:
                self._stop_reading()
        self._dispatch()

    def in_flight(self) -> bool:
        """True while a request is waiting for, or running in, the app."""
        return self.current is not None or bool(self._pipeline)

    def _refuse(self, error: HTTPError, environ: Environ | None = None) -> None:
        """Answer `error` once the requests before it are answered, then close. `environ`:
        the refused request's, when its head was read (for the access log)."""
        if self._refusal is None:
            self._refusal = error
            self._refusal_environ = environ
        self._stop_reading()

    def _record(self, error: HTTPError, environ: Environ | None) -> None:
        """An answer the server made itself: an access-log line and a count by status."""
        clock = self.context.clock
        if clock.access_log is None and clock.stats is None:
            return
        if environ is None:
            environ = self._parser.partial_environ() if self._parser is not None else {}
        sent = 0 if error.head_request else len(error.body())
        if clock.access_log is not None:
            try:
                clock.access_log(environ, error.status, [], sent, 0.0)
            except Exception:
                log.exception("could not write the access log")
        if clock.stats is not None:
            clock.stats.observe(environ.get("REQUEST_METHOD", "-"), error.status, 0.0, sent, 0)

    # -- request bodies ---------------------------------------------------------------------

    def _body_wanted_callback(self) -> Any:
        # One per connection, made for its first request with a body.
        waker = self._body_waker
        if waker is None:
            waker = self._body_waker = functools.partial(
                self.context.pool.post, self._on_body_wanted, None
            )
        return waker

    def _on_body_wanted(self, _: None) -> None:
        current = self.current
        if current is None or self.transport is None:
            return
        body = current.body
        if not isinstance(body, RequestBody):
            return
        if body.continue_requested and not body.continue_sent:
            body.continue_sent = True
            self._continue_owed = False
            if not self._responded:  # RFC 9110 §10.1.1: no 100 once the final response began
                self._write(CONTINUE)
        if body.paused_reading:
            body.paused_reading = False
            self._resume(PAUSED_BODY)
        self._update_wanted()

    def _update_wanted(self, wanted: bool | None = None) -> None:
        """Keep the body clocks: they run only while we want the client's body bytes."""
        if wanted is None:
            wanted = self.reading in _BODY_STATES and not self._paused and not self._continue_owed
        stamps = self.stamps
        if wanted:
            if not stamps.body_wanted_since:
                stamps.body_wanted_since = stamps.body_progress = self.context.clock.now
        elif stamps.body_wanted_since:
            stamps.body_wanted_before += self.context.clock.now - stamps.body_wanted_since
            stamps.body_wanted_since = 0.0

    # -- reading and writing ------------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason
        if self.reading in _BODY_STATES:
            self._update_wanted()

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None:
            self.transport.resume_reading()
        if self.reading in _BODY_STATES:
            self._update_wanted()

    def _stop_reading(self) -> None:
        """No further request will be read from this connection."""
        if self._parser is not None:
            self._parser.stop()
        if self.reading is not LINGERING:
            if self.reading in _BODY_STATES:
                self._update_wanted(False)
            self.reading = STOPPED
        self._unparsed = b""

    def _write(self, data: Wire) -> None:
        transport = self.transport
        if transport is None:
            return
        if isinstance(data, bytes):
            transport.write(data)
            size = len(data)
        else:
            transport.writelines(data)
            size = wire_size(data)
        self._sent += size
        self.gate.written(size)

    def _flush(self) -> None:
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        transport = self.transport
        if transport is not None:
            if len(outbox) == 1:
                transport.write(outbox[0])
            else:
                transport.writelines(outbox)
        size = sum(map(len, outbox))
        self._sent += size
        self.gate.written(size)

    def _taken(self) -> int:
        """Bytes the client has taken (the transport handed them to the kernel)."""
        transport = self.transport
        return self._sent - (transport.get_write_buffer_size() if transport is not None else 0)

    # -- closing -----------------------------------------------------------------------------

    def _close_if_done(self) -> None:
        """Close once nothing is left to answer and no request will be read."""
        parser = self._parser
        if (
            self.closing is OPEN
            and self.reading is not LINGERING
            and parser is not None
            and parser.stopped
            and self.current is None
            and not self._pipeline
            and self._refusal is None
        ):
            self._close()

    def _close(self) -> None:
        self._stop_reading()
        transport = self.transport
        if transport is not None and self.closing is OPEN:
            self.closing = CLOSING
            self.stamps.closing_since = self.context.clock.now
            transport.close()  # after the buffered response has been written

    def _close_lingering(self) -> None:
        """Close after a response while the client may still be sending (RFC 9112 §9.6).

        Closing a socket with unread input makes the kernel answer with a reset, which
        can destroy the response before the client reads it. So the response is
        followed by our FIN, and whatever still arrives is read and dropped until the
        client closes its side or `state.LINGER_SECONDS` pass.
        """
        transport = self.transport
        self._stop_reading()
        if transport is None:
            return
        if not transport.can_write_eof():  # TLS: no half-close
            self._close()
            return
        transport.write_eof()
        self.reading = LINGERING
        self.stamps.since = self.context.clock.now
        self._receiving = None
        if self._paused:
            self._paused = 0
            transport.resume_reading()

    def _abort(self) -> None:
        self._stop_reading()
        transport = self.transport
        self.closing = CLOSED
        if transport is not None:
            _reset_on_close(transport)
            transport.abort()

    # -- timers and shutdown -------------------------------------------------------------------

    def check_timers(self, now: float) -> None:
        """Once a second, from the server: act on the timeout `state.timer_action` finds due."""
        transport = self.transport
        if transport is None:
            return
        stamps = self.stamps
        if stamps.write_stalled_since:
            stamps.write_sent = self._taken()
            self._hold()
        action = timer_action(
            self.reading,
            self.closing,
            self.in_flight(),
            self.served,
            stamps,
            self.context.limits,
            now,
        )
        if action is not Action.NOTHING:
            self._on_timer(action)

    def _on_timer(self, action: Action) -> None:
        settings = self.context.settings
        transport = self.transport
        assert transport is not None
        if action is Action.CLOSE:
            if self.reading is LINGERING:
                self.reading = STOPPED
            self._close()
        elif action is Action.ABORT_FLUSH:
            self._abort()  # the client never took the end of its response
        elif action is Action.ABORT_STALLED_WRITE:
            self.context.note(
                "client stopped reading for %gs (--write-timeout): dropping it",
                settings.write_timeout,
            )
            self._abort()
        elif action is Action.NEXT_DOWNLOAD_WINDOW:
            stamps = self.stamps
            stamps.write_window_since = self.context.clock.now
            stamps.write_sent_at_window = stamps.write_sent
        elif action is Action.ABORT_SLOW_READER:
            self.context.note(
                "client takes its response slower than %g bytes/s "
                "(--min-download-rate): dropping it",
                settings.min_download_rate,
            )
            self._abort()
        elif action is Action.HEAD_TIMEOUT:
            self.context.note(
                "request head not complete after %gs (--header-timeout)", settings.header_timeout
            )
            self._refuse(RequestTimeout("the request head did not arrive in time"))
            self._dispatch()
        elif self.reading is DRAINING:  # a body timer, for a request answered
            self._close()
        else:
            self._body_timed_out(action)

    def _body_timed_out(self, action: Action) -> None:
        settings = self.context.settings
        if action is Action.BODY_TIMEOUT:
            self.context.note(
                "request body stalled for %gs (--body-timeout)", settings.body_timeout
            )
        else:
            self.context.note(
                "request body arriving slower than %g bytes/s (--min-upload-rate)",
                settings.min_upload_rate,
            )
        receiving = self._receiving
        self._receiving = None
        self._stop_reading()
        if receiving is None:
            self._close_if_done()
            return
        receiving.keep_alive = False
        if receiving is self.current:
            receiving.body.fail(BodyTimeout("the request body stopped arriving"))
            return
        if receiving in self._pipeline:
            self._pipeline.remove(receiving)
        self._refuse(RequestTimeout("the request body did not arrive in time"), receiving.environ)
        self._dispatch()

    def idle_since(self) -> float | None:
        """For a graceful stop: since when (the loop's coarse clock) this connection has been
        waiting for a request with nothing of one received; None while it is not."""
        if self.closing is not OPEN or self.reading is not IDLE or self.in_flight():
            return None
        return self.stamps.since

    def close_if_idle(self) -> bool:
        """On a stop: close the connection if it waits for a request with nothing of one
        received (and end a linger at once). True if it was closed."""
        transport = self.transport
        if self.reading is LINGERING and transport is not None:
            self.reading = STOPPED
            self._close()  # no lingering on shutdown
            return True
        if self.idle_since() is None:
            return False
        self._close()
        return True


def _reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Make the transport's close a TCP reset. A plain close is a FIN, which a peer that
    frames the response by the close (every uwsgi web server, an HTTP/1.0 client) takes
    for a complete response: an abort must read as an error. On a unix socket there is no
    reset to send; the peer sees an end only."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # already closed by the peer: nothing to tell it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
