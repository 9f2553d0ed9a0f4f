"""Loop thread only: reading requests off the wire.

`RequestReader` owns the httptools parser of one connection. It checks what
llhttp leaves to us (the request line's protocol, limits, the environ's rules),
turns each request head into an `Exchange` queued in `_pipeline`, feeds request
bodies to their `wsgi.input`, and queues an `HTTPError` in place of a request
that must not reach the app. `protocol.HttpProtocol` runs what it queues.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import re
from typing import TYPE_CHECKING, Any

import httptools

from . import validate
from .body import EMPTY_BODY, RequestBody
from .connection import PAUSED_BODY, Connection, Phase
from .environ import connection_environ, request_environ, request_id
from .errors import (
    BadRequest,
    BodyFramingError,
    BodyTooLarge,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedCoding,
    PayloadTooLarge,
    URITooLong,
)
from .exchange import Exchange, Wire
from .proxy import apply_proxy_headers

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("wsgiserve.error")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
# A well-formed request line (RFC 9112 §3) whose method is a token (RFC 9110 §5.6.2).
_METHOD_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n")


class _ParserStop(Exception):
    """Raised in a parser callback to stop parsing; the reason is in `_error`."""


class RequestReader(Connection):
    __slots__ = (
        "_body_waker",
        "_carry",
        "_chunk",
        "_environ_base",
        "_error",
        "_field_count",
        "_head_bytes",
        "_head_method",
        "_headers",
        "_in_head",
        "_method",
        "_parser",
        "_peer_trusted",
        "_raw_body",
        "_responded",
        "_scan_from",
        "_url",
    )

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._chunk = b""  # the bytes being parsed now
        self._carry = b""  # earlier bytes of a request head that spans reads
        self._scan_from = 0  # where in `_chunk` the next request line may start
        self._head_method = False  # the request being parsed is a HEAD
        self._method = b""  # the method of the request being parsed, once known
        self._parser = httptools.HttpRequestParser(self)
        self._environ_base: dict[str, Any] = {}
        self._peer_trusted = False  # may set REMOTE_ADDR etc. through proxy headers
        self._responded = False  # the current response has begun on the wire
        self._raw_body = False  # after a declined Upgrade, bytes go to the body unparsed
        self._error: HTTPError | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_bytes = 0
        self._field_count = 0
        self._body_waker: Any = None

    # What the worker posts back (exchange.ResponseSink), implemented by HttpProtocol.

    @abc.abstractmethod
    def on_send(self, data: Wire) -> None:
        """Write a piece of the response."""

    @abc.abstractmethod
    def on_end(self, ending: tuple[Wire, bool]) -> None:
        """Write the last bytes; the bool says whether the connection may carry another request."""

    @abc.abstractmethod
    def on_abort(self, exchange: Exchange) -> None:
        """The response cannot be completed: reset the connection."""

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

    # -- request bodies ------------------------------------------------------------------

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
