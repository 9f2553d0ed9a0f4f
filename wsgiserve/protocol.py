"""Loop thread only: one `HttpProtocol` per connection.

It owns the transport and the httptools parser, builds an `Exchange` per
request, hands exchanges to the pool one at a time (pipelined requests wait
their turn, and reading pauses while they do), writes what the worker posts
back, and decides when the connection ends. Nothing here blocks or calls the app.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

import httptools

from . import validate
from .body import EMPTY_BODY, RequestBody
from .environ import connection_environ, request_environ, request_id
from .errors import (
    BadRequest,
    BodyFramingError,
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedCoding,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    URITooLong,
)
from .exchange import Exchange, Wire, wire_size
from .flow import WriteGate
from .proxy import apply_proxy_headers

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("wsgiserve.error")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
LINGER_SECONDS = 2.0  # how long a closing connection reads and drops what still arrives
# A well-formed request line (RFC 9112 §3) whose method is a token (RFC 9110 §5.6.2).
_METHOD_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n")


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


class _ParserStop(Exception):
    """Raised in a parser callback to stop parsing; the reason is in `_error`."""


class HttpProtocol(asyncio.Protocol):
    # Slots keep an idle keep-alive connection small (no per-instance __dict__).
    __slots__ = (
        "_body_waker",
        "_carry",
        "_chunk",
        "_closing_since",
        "_environ_base",
        "_error",
        "_field_count",
        "_head_bytes",
        "_head_method",
        "_head_since",
        "_headers",
        "_in_head",
        "_linger_until",
        "_method",
        "_outbox",
        "_parser",
        "_paused",
        "_peer_trusted",
        "_pipeline",
        "_raw_body",
        "_receiving",
        "_responded",
        "_scan_from",
        "_served",
        "_stalled_since",
        "_stop_parsing",
        "_url",
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
        self.settings = server.settings
        self.phase = Phase.IDLE
        self.idle_since = server.clock.now  # last bytes received, or the last response's end
        self._head_since = server.clock.now  # when we began waiting for the current head
        self._stalled_since = 0.0  # when the transport last paused writing
        self._linger_until = 0.0  # set by _close_lingering: when to stop dropping input
        self._closing_since = 0.0  # when close() was asked for; the transport may still flush
        self._served = 0
        self._chunk = b""  # the bytes being parsed now
        self._outbox: list[bytes] = []  # response pieces of this batch, not yet written
        self._carry = b""  # earlier bytes of a request head that spans reads
        self._scan_from = 0  # where in `_chunk` the next request line may start
        self._head_method = False  # the request being parsed is a HEAD
        self._method = b""  # the method of the request being parsed, once known
        self.transport: asyncio.Transport | None = None
        self.gate = WriteGate()
        self._parser = httptools.HttpRequestParser(self)
        self._environ_base: dict[str, Any] = {}
        self._peer_trusted = False  # may set REMOTE_ADDR etc. through proxy headers
        self._paused = 0
        self._pipeline: collections.deque[Exchange | HTTPError] = collections.deque()
        self.current: Exchange | None = None  # in the pool or the app
        self._responded = False  # the current response has begun on the wire
        self._receiving: Exchange | None = None  # whose body is arriving
        self._raw_body = False  # after a declined Upgrade, bytes go to the body unparsed
        self._stop_parsing = False  # no request after the current ones will be served
        self._error: HTTPError | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_bytes = 0
        self._field_count = 0
        self._body_waker: Any = None

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._environ_base = connection_environ(
            self.server.environ_base,
            transport.get_extra_info("sockname"),
            transport.get_extra_info("peername"),
        )
        self._peer_trusted = self.server.proxies.trusts(self._environ_base["REMOTE_ADDR"])
        self.server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection lost: %s", exc)
        self.phase = Phase.CLOSED
        self.transport = None
        self.server.connection_closed(self)
        self.gate.abort()
        gone = ClientDisconnected("client disconnected")
        if self.current is not None and isinstance(self.current.body, RequestBody):
            self.current.body.fail(gone)
        self._pipeline.clear()

    def pause_writing(self) -> None:
        self.gate.pause()
        self._stalled_since = self.server.clock.now

    def resume_writing(self) -> None:
        self.gate.resume()

    def eof_received(self) -> bool:
        # The client finished sending. A request in flight still gets its response
        # (half-close); a half-received request can never complete.
        receiving = self._receiving
        if receiving is not None and isinstance(receiving.body, RequestBody):
            receiving.body.fail(BodyFramingError("the request body was cut short"))
        self._stop_parsing = True
        # With nothing to answer, returning False lets the transport close.
        return self.current is not None or bool(self._pipeline)

    def data_received(self, data: bytes) -> None:
        if self._stop_parsing:
            return
        self.phase = Phase.ACTIVE
        self.idle_since = self.server.clock.now
        if self._raw_body:
            self._feed_raw(data)
            return
        if self._receiving is None:
            self._head_bytes += len(data)
        self._chunk = data
        self._scan_from = 0
        try:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                self._upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
            except httptools.HttpParserError as error:
                self._parse_failed(error, data)
            if not self._stop_parsing and self._head_bytes > self.server.head_limit:
                self._refuse(HeaderFieldsTooLarge("request head too large"))
            if self._in_head:  # keep the start of a request line split across reads
                self._carry = (self._carry + data)[-(self.settings.limit_request_line + 16) :]
            self._dispatch()
        except Exception:  # a bug of ours: cost this connection, never the loop
            log.exception("internal error on a connection; aborting it")
            self._stop_parsing = True
            if self.transport is not None:
                self.transport.abort()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._method = b""
        self._head_method = False
        self._url = b""
        self._headers = []
        self._in_head = True
        self._field_count = 0

    def on_url(self, url: bytes) -> None:
        if not self._url:  # the method is parsed by now
            self._method = method = self._parser.get_method()
            self._head_method = method == b"HEAD"
        self._url += url
        if len(self._url) > self.settings.limit_request_line:
            self._error = URITooLong("request line too long")
            raise _ParserStop

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_count += 1
        settings = self.settings
        if self._field_count > settings.limit_request_fields:
            self._error = HeaderFieldsTooLarge("too many header fields")
            raise _ParserStop
        if len(name) + len(value) + 4 > settings.limit_request_field_size:
            self._error = HeaderFieldsTooLarge("header field too large")
            raise _ParserStop
        if self._in_head:
            self._headers.append((name, value))
        # else: a trailer field. RFC 9112 §7.1.2: never merged into the header section.

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        method = self._method
        url = self._url
        if len(method) + len(url) + 10 > self.settings.limit_request_line:
            self._error = URITooLong("request line too long")
            raise _ParserStop
        chunk = self._chunk
        start = self._scan_from
        protocol_at = start + len(method) + len(url) + 2
        if self._carry:  # the line began in an earlier read
            protocol, _ = validate.protocol_name(method, url, self._carry + chunk, 0)
            self._carry = b""
            version = None
        elif (
            # The usual case, checked without building the line: it starts where the
            # previous one's head ended and reads exactly "method SP url SP HTTP/".
            chunk.startswith(b"HTTP/", protocol_at)
            and chunk.startswith(method, start)
            and chunk.startswith(url, start + len(method) + 1)
            and chunk[start + len(method)] == 32
            and chunk[protocol_at - 1] == 32
        ):
            protocol = b"HTTP/"
            self._scan_from = protocol_at
            # The version llhttp parsed is right there: "HTTP/1.1" (no formatting call).
            version = _VERSIONS.get(chunk[protocol_at + 5 : protocol_at + 8])
        else:
            protocol, self._scan_from = validate.protocol_name(method, url, chunk, start)
            version = None
        if version is None:
            version = parser.get_http_version()
        if protocol[:4] in (b"RTSP", b"ICE/"):
            self._error = BadRequest("not an HTTP request line")
            raise _ParserStop
        try:
            validate.check_version(version)
            environ = request_environ(
                self._environ_base, method, url, version, self._headers, EMPTY_BODY
            )
            validate.check_request(environ, version)
            apply_proxy_headers(environ, self._peer_trusted, self.server.proxies)
            environ["wsgiserve.request_id"] = request_id(environ.get("HTTP_X_REQUEST_ID"))
        except HTTPError as error:
            self._error = error
            raise _ParserStop from None
        keep_alive = validate.keep_alive_requested(environ, version)
        exchange = Exchange(
            self, environ, EMPTY_BODY, version, keep_alive, self.gate, self.server.clock,
            self.server.pool.post,
        )
        if "HTTP_TRANSFER_ENCODING" in environ or environ.get("CONTENT_LENGTH", "0") != "0":
            length = environ.get("CONTENT_LENGTH")
            limit = self.settings.limit_request_body
            if limit and length is not None and int(length) > limit:
                # Refused before the app runs, so before any `100 Continue`.
                self._error = PayloadTooLarge(f"request body over {limit} bytes")
                raise _ParserStop
            body = RequestBody(
                self._body_wanted_callback(),
                int(length) if length is not None else None,
                validate.wants_continue(environ, version),
            )
            environ["wsgi.input"] = exchange.body = body
        if parser.should_upgrade():
            # We never switch protocols (RFC 9110 §7.8 lets us decline); the body is
            # framed by us and the connection closes after the response.
            exchange.upgrade = True
            exchange.keep_alive = False
        self._receiving = exchange
        self._pipeline.append(exchange)

    def on_body(self, data: bytes) -> None:
        receiving = self._receiving
        if receiving is None:
            return
        body = receiving.body
        if body.feed(data):
            self._pause(PAUSED_BODY)
        limit = self.settings.limit_request_body
        if limit and body.received > limit:  # a chunked body that keeps growing
            self._error = PayloadTooLarge(f"request body over {limit} bytes")
            raise _ParserStop

    def on_message_complete(self) -> None:
        receiving = self._receiving
        if receiving is None or receiving.upgrade:
            return
        self._receiving = None
        if receiving.body is not EMPTY_BODY:
            receiving.body.finish()
        if not receiving.keep_alive:
            self._stop_parsing = True

    # -- parsing outcomes ---------------------------------------------------------------------

    def _parse_failed(self, error: Exception, data: bytes) -> None:
        if self._stop_parsing and self._receiving is None:
            return  # bytes after a `Connection: close` request are ignored (RFC 9112 §9.6)
        http_error = self._error
        if http_error is None:
            http_error = BadRequest(str(error) or "malformed request")
            if isinstance(
                error, httptools.HttpParserInvalidMethodError
            ) and _METHOD_TOKEN.match(data.lstrip(b"\r\n")):
                # RFC 9110 §9.1: a well-formed but unknown method is "not implemented";
                # anything else in its place is a malformed request line.
                http_error = NotImplementedCoding("unknown method")
        receiving = self._receiving
        if receiving is not None:
            # The error came in the body of a request we already took in.
            self._receiving = None
            receiving.keep_alive = False
            if receiving is self.current:
                failure = BodyTooLarge if http_error.status == 413 else BodyFramingError
                receiving.body.fail(failure(http_error.detail))
                self._stop_parsing = True
                return
            self._pipeline.remove(receiving)
        self._refuse(http_error)

    def _refuse(self, error: HTTPError) -> None:
        """Answer `error` once the requests before it are answered, then close."""
        log.debug("refusing a request: %s", error.detail)
        error.head_request = self._head_method
        self._stop_parsing = True
        self._pipeline.append(error)

    def _upgrade(self, rest: bytes) -> None:
        exchange = self._receiving
        if exchange is None:
            self._refuse(BadRequest("unexpected upgrade"))
            return
        if exchange.environ["REQUEST_METHOD"] == "CONNECT":
            self._pipeline.remove(exchange)
            self._receiving = None
            self._refuse(NotImplementedCoding("CONNECT is not supported"))
            return
        body = exchange.body
        if isinstance(body, RequestBody) and body.content_length is None:
            self._pipeline.remove(exchange)
            self._receiving = None
            self._refuse(BadRequest("chunked body on an Upgrade request"))
            return
        self._stop_parsing = False
        self._raw_body = True
        self._feed_raw(rest)

    def _feed_raw(self, data: bytes) -> None:
        exchange = self._receiving
        if exchange is None:
            return
        body = exchange.body
        if isinstance(body, RequestBody):
            remaining = body.remaining() or 0
            if data and body.feed(data[:remaining]):
                self._pause(PAUSED_BODY)
            if body.remaining() == 0:
                body.finish()
            else:
                return
        self._receiving = None
        self._stop_parsing = True

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

    def _body_wanted_callback(self) -> Any:
        # One per connection, made for its first request with a body.
        waker = self._body_waker
        if waker is None:
            waker = self._body_waker = functools.partial(
                self.server.pool.post, self._on_body_wanted, None
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
            if not self._responded:  # RFC 9110 §10.1.1: no 100 once the final response began
                self.transport.write(CONTINUE)
        if body.paused_reading:
            body.paused_reading = False
            self._resume(PAUSED_BODY)

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

    # -- connection control ---------------------------------------------------------------

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
