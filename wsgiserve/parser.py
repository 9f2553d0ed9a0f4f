"""Sans-I/O: the bytes of one connection become requests, or a refusal.

`RequestParser` owns the httptools parser of one connection. It checks what
llhttp leaves to us (the request line's protocol, the limits, `validate.py`'s
rules), builds each request's environ, and reports to a `RequestSink` with plain
arguments. It knows nothing of transports, timers, threads or the pipeline; the
connection decides what to do with each report. A chunked body passes through
`chunk_lines.py` first, which removes the BWS llhttp refuses in chunk extensions.

Bounded work per connection, whatever arrives: a head is refused past its limit
(431); a chunk-size line (with its extensions) longer than
`--limit-request-field_size` is refused (400), and so is a trailer field (431),
before more than that is held; and `feed` hands each piece of input to llhttp so
that at most one request head completes per piece, which lets the connection stop
parsing ahead (`pause_after_head`) at an exact number of queued requests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

import httptools

from . import validate
from .body import EMPTY_BODY
from .chunk_lines import ChunkLines, ChunkLineTooLong
from .environ import Environ, request_environ, request_id
from .errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedCoding,
    PayloadTooLarge,
    UnexpectedProxyHeader,
    URITooLong,
    UwsgiOnHttpListener,
)
from .proxy import TrustedProxies, apply_proxy_headers

if TYPE_CHECKING:
    from .settings import Settings

_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
# A well-formed request line (RFC 9112 §3) whose method is a token (RFC 9110 §5.6.2).
_METHOD_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n")
_END_OF_HEAD = b"\r\n\r\n"
_CR_LF = (b"\r", b"\n")
# How a PROXY protocol header starts: recognised only to name the set-up mistake.
_PROXY_V1 = b"PROX"  # llhttp fails at the X: no method starts so
_PROXY_V2 = b"\x00\r\nQUIT\n"  # v2's signature after the CRLFs llhttp skips as empty lines


class RequestSink(Protocol):
    """What the parser reports to; the connection implements it."""

    def on_head(
        self,
        environ: Environ,
        version: str,
        keep_alive: bool,
        length: int | None,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        """A request head was accepted. `length`: the body's declared size, 0 for no
        body, None for a chunked body. `keep_alive`: what the client asked for."""

    def on_body(self, data: bytes) -> None:
        """Bytes of the current request's body."""

    def on_message_end(self) -> None:
        """The current request, body included, is complete."""

    def on_refused(self, error: HTTPError, in_body: bool) -> None:
        """The input cannot be served past this point; `in_body`: the error is in the
        body of a request already reported by `on_head`. Nothing more is parsed."""

    def use_parser(self, parser: Parser) -> None:
        """From now on `parser` parses this connection (after a PROXY protocol header)."""


class Parser(Protocol):
    """What a connection needs of the parser of its protocol (HTTP/1.x or uwsgi)."""

    stopped: bool  # nothing more is parsed
    in_head: bool  # bytes of a request head arrived and its end has not
    pause_after_head: bool  # set by the sink: stop at the next head's end
    head_method: bool  # the request being parsed is a HEAD

    def feed(self, data: bytes) -> bytes:
        """Parse `data`; return what was held back because `pause_after_head` was set."""

    def stop(self) -> None:
        """Parse nothing more."""

    def partial_environ(self) -> Environ:
        """What is known of a request refused before its environ was complete."""


def _proxy_header_start(data: bytes) -> bool:
    """Whether the bytes llhttp failed on (cut anywhere) are the start of a PROXY header."""
    if data.startswith(_PROXY_V1) or _PROXY_V2 in data[:16]:
        return True
    # Empty lines, then a NUL: no HTTP request and no uwsgi packet starts so; v2 does.
    return data[:1] in _CR_LF and data.lstrip(b"\r\n")[:1] == b"\x00"


class _NoCallbacks:
    """The protocol of `_SPENT`, the llhttp parser a stopped `RequestParser` holds."""


_SPENT = httptools.HttpRequestParser(_NoCallbacks())


class _Stop(Exception):
    """Raised in a parser callback to stop parsing; the reason is in `_error`."""


def _field_too_large(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    return any(len(name) + len(value) > limit for name, value in headers)


class RequestParser:
    _lines: ChunkLines  # a chunked body's framing: made for each, touched by nothing else

    __slots__ = (
        "_begin",
        "_body_left",
        "_body_received",
        "_chunk",
        "_environ_base",
        "_error",
        "_event",
        "_field_count",
        "_gap",
        "_head_bytes",
        "_head_limit",
        "_head_tail",
        "_in_body",
        "_in_trailers",
        "_length",
        "_line",
        "_line_limit",
        "_lines",
        "_method",
        "_on_head",
        "_on_message_end",
        "_parser",
        "_peer_trusted",
        "_proxies",
        "_raw_remaining",
        "_settings",
        "_sink",
        "_upgrading",
        "_url",
        "head_method",
        "headers",
        "in_head",
        "pause_after_head",
        "stopped",
    )

    def __init__(
        self,
        sink: RequestSink,
        settings: Settings,
        environ_base: Environ,
        proxies: TrustedProxies,
        head_limit: int,
    ) -> None:
        self._sink = sink
        self._on_head = sink.on_head  # bound once: called for every request
        self._on_message_end = sink.on_message_end
        self._settings = settings
        self._environ_base = environ_base
        self._proxies = proxies
        self._peer_trusted = proxies.trusts(environ_base["REMOTE_ADDR"])
        self._head_limit = head_limit
        self._parser = httptools.HttpRequestParser(self)
        self._chunk = b""  # the piece being parsed now
        self._begin = 0  # where in `_chunk` a new message may start, at the earliest
        self._line = b""  # the current message's bytes, kept until its request line is read
        self._line_limit = settings.limit_request_line + 16
        self._body_left = 0  # bytes still to come of a Content-Length body
        self._method = b""
        self._url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_method = False  # the request being parsed is a HEAD
        self.in_head = False  # bytes of a request head arrived and its end has not
        self._in_body = False
        self._in_trailers = False
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of a head cut between reads (see _head_end)
        self._field_count = 0
        self._body_received = 0
        self._gap = 0  # body-phase bytes since the last parser event (chunk lines, trailers)
        self._event = False
        self._raw_remaining = -1  # after a declined Upgrade: body bytes taken unparsed
        self._upgrading = False
        self._length: int | None = 0  # the current request's body length; None: chunked
        self._error: HTTPError | None = None
        self.stopped = False  # nothing more is parsed
        self.pause_after_head = False  # set by the sink: stop at the next head's end

    def partial_environ(self) -> Environ:
        """What is known of a request refused before its environ was built: the
        connection's keys, and its method and target once read (for the access log)."""
        environ = self._environ_base.copy()
        if self._method:
            environ["REQUEST_METHOD"] = self._method.decode("latin-1")
        if self._url:
            environ["RAW_URI"] = self._url[:1024].decode("latin-1")
        return environ

    def stop(self) -> None:
        """Parse nothing more: what arrives from now on is dropped."""
        self.stopped = True
        # llhttp's parser holds our bound callbacks: drop it to break the cycle (safe even
        # from one of its callbacks, whose call keeps it alive until it returns).
        self._parser = _SPENT

    def feed(self, data: bytes) -> bytes:
        """Parse `data`; return what was left unparsed because `pause_after_head` was set
        (feed it again later), or b""."""
        end = self._head_end(data)
        if (end < 0 or end == len(data)) and self._raw_remaining < 0 and not self.stopped:
            self._feed(data)  # the usual read: at most one head in it
            return b""
        while data and not self.stopped:
            if self._raw_remaining >= 0:
                self._feed_raw(data)
                return b""
            # One piece per request head: llhttp keeps its state across pieces, so where
            # we cut never changes the parse; cutting after each CRLFCRLF only means that
            # no piece completes more than one head.
            end = self._head_end(data)
            if 0 < end < len(data):
                piece, data = data[:end], data[end:]
            else:
                piece, data = data, b""
            self._feed(piece)
            if data and self.pause_after_head and not self._in_body and not self.in_head:
                return data
        return b""

    def _head_end(self, data: bytes) -> int:
        """Where the first CRLFCRLF in `data` ends, or -1. The rest of a Content-Length
        body cannot hold a head's end, so its bytes are not searched (a 64 KiB upload
        was scanned whole, three times, for each read)."""
        if self.in_head and self._head_tail:
            # The head's CRLFCRLF may begin in the previous read: without this, the rest
            # of that head, a body and a pipelined head went to llhttp as one piece, and
            # the second request line was read from the wrong place (400).
            tail = self._head_tail
            found = (tail + data[:3]).find(_END_OF_HEAD)
            if found >= 0:
                return found + 4 - len(tail)
        start = self._body_left if self._in_body and self._length is not None else 0
        if start >= len(data):
            return -1
        found = data.find(_END_OF_HEAD, start)
        return found + 4 if found >= 0 else -1

    def _feed(self, piece: bytes) -> None:
        if self._in_body:
            if self._length is not None and self._body_left > 0:
                self._take_body(piece)
                return
            # A message after a Content-Length body starts right where the body ends; after
            # a chunked one, after its last chunk's line.
            if self._length is None:
                try:
                    piece = self._lines.feed(piece)
                except ChunkLineTooLong:
                    self._refuse(BadRequest("chunk-size line too long"), True)
                    return
                self._begin = self._lines.begin
            else:
                self._begin = self._body_left
        else:
            self._begin = 0
            self._head_bytes += len(piece)
            if self.in_head and len(self._line) <= self._line_limit:
                self._line += piece  # the head began in an earlier piece
        self._chunk = piece
        self._event = False
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(piece[upgrade.args[0] :] if upgrade.args else b"")
            return
        except httptools.HttpParserError as error:
            self._failed(error, piece)
            return
        if self.stopped:
            return
        if self._in_body:
            if self._length is None and not self._lines.settled(self._body_received):
                self._refuse(BadRequest("malformed chunked body"), True)
                return
            self._gap = 0 if self._event else self._gap + len(piece)
            if self._gap > self._settings.limit_request_field_size:
                if self._in_trailers:
                    self._refuse(HeaderFieldsTooLarge("trailer field too large"), True)
                else:
                    self._refuse(BadRequest("chunk-size line too long"), True)
        elif self._head_bytes > self._head_limit:
            self._refuse(HeaderFieldsTooLarge("request head too large"), False)
        elif self.in_head:  # the head goes on in the next read
            self._head_tail = (self._head_tail + piece)[-3:]

    def _take_body(self, piece: bytes) -> None:
        """More of a Content-Length body, past llhttp, which would copy every piece into a
        new bytes object: a piece that is all body reaches the app as the socket gave it
        (a 64 KiB upload cost three copies in user space, now two, or one per later read).
        llhttp, left waiting for the body, is replaced once the body is complete."""
        left = self._body_left
        body = piece if len(piece) <= left else piece[:left]
        self._body_left = left - len(body)
        self._body_received += len(body)
        self._sink.on_body(body)
        if self._body_left or self.stopped:
            return
        self._parser = httptools.HttpRequestParser(self)
        self._in_body = False
        self._on_message_end()
        if len(body) < len(piece) and not self.stopped:
            self._feed(piece[len(body) :])  # the start of the next request

    def _refuse(self, error: HTTPError, in_body: bool) -> None:
        error.head_request = self.head_method
        self.stopped = True
        self._sink.on_refused(error, in_body)

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.stopped:  # the sink stopped us mid-piece: nothing after is a request
            raise _Stop
        self._method = b""
        self.head_method = False
        self._url = b""
        self.headers = []
        self.in_head = True
        # The message starts at `_begin` in this piece at the earliest: keep its first line.
        begin = self._begin
        self._line = self._chunk[begin:] if begin else self._chunk
        self._field_count = 0

    def on_url(self, url: bytes) -> None:
        if not self._url:  # the method is parsed by now
            self._method = method = self._parser.get_method()
            self.head_method = method == b"HEAD"
        self._url += url
        if len(self._url) > self._settings.limit_request_line:
            self._error = URITooLong("request line too long")
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head:
            self.headers.append((name, value))  # counted and measured at the head's end
            return
        # A trailer field: the same limits as the head's (RFC 9112 §7.1.2), checked as each
        # arrives; never merged into the header section.
        self._event = True
        self._field_count += 1
        settings = self._settings
        if self._field_count > settings.limit_request_fields:
            self._error = HeaderFieldsTooLarge("too many header fields")
            raise _Stop
        if len(name) + len(value) + 4 > settings.limit_request_field_size:
            self._error = HeaderFieldsTooLarge("header field too large")
            raise _Stop

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._head_bytes = 0
        self._head_tail = b""
        method = self._method
        url = self._url
        settings = self._settings
        if len(method) + len(url) + 10 > settings.limit_request_line:
            self._error = URITooLong("request line too long")
            raise _Stop
        headers = self.headers
        if len(headers) > settings.limit_request_fields:
            self._error = HeaderFieldsTooLarge("too many header fields")
            raise _Stop
        # `_line` holds every byte from the request's start (and maybe more) unless it grew
        # past `_line_limit` and stopped growing: when it is short, every field is too.
        line = self._line
        field_limit = settings.limit_request_field_size - 4
        if (len(line) > field_limit or len(line) > self._line_limit) and _field_too_large(
            headers, field_limit
        ):
            self._error = HeaderFieldsTooLarge("header field too large")
            raise _Stop
        # The request line must read exactly `method SP request-target SP HTTP/d.d CRLF`
        # (RFC 9112 §3). llhttp accepts more (several spaces between the parts; RTSP and
        # ICE protocol names), which a proxy in front may read differently: refused here.
        if line[:1] in _CR_LF:
            line = line.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before it are ignored
        self._line = b""
        after_method = len(method)
        version_at = after_method + len(url) + 2
        end = version_at + 8
        # Compared as slices: bytes.startswith parses its arguments by format string, which
        # cost five times what these comparisons do.
        if (
            line[: version_at + 5] != method + b" " + url + b" HTTP/"
            or line[end : end + 2] != b"\r\n"
        ):
            self._error = BadRequest("malformed request line")
            raise _Stop
        # The version llhttp parsed is right there: "HTTP/1.1" (no formatting call).
        version = _VERSIONS.get(line[version_at + 5 : end]) or self._parser.get_http_version()
        try:
            if version != "1.1" and version != "1.0":
                validate.check_version(version)  # raises
            environ = request_environ(self._environ_base, method, url, version, headers, EMPTY_BODY)
            validate.check_request(environ, version)
            apply_proxy_headers(environ, self._peer_trusted, self._proxies)
            environ["wsgiserve.request_id"] = request_id(environ.get("HTTP_X_REQUEST_ID"))
        except HTTPError as error:
            self._error = error
            raise _Stop from None
        length: int | None = 0
        if "HTTP_TRANSFER_ENCODING" in environ:
            length = None
        elif "CONTENT_LENGTH" in environ:
            length = int(environ["CONTENT_LENGTH"])
        if length != 0:
            limit = self._settings.limit_request_body
            if limit and length is not None and length > limit:
                # Refused before the app runs, so before any `100 Continue`.
                self._error = PayloadTooLarge(f"request body over {limit} bytes")
                raise _Stop
            self._in_body = True
            if length is None:
                self._lines = ChunkLines(settings.limit_request_field_size)
            self._gap = 0
            self._body_received = 0
            self._body_left = length or 0
        upgrade = self._parser.should_upgrade()
        if upgrade:
            if length is None:
                self._error = BadRequest("chunked body on an Upgrade request")
                raise _Stop
            self._upgrading = True
        self._length = length
        self._on_head(
            environ,
            version,
            version == "1.1"  # the usual case of keep_alive_requested, without the call
            if "HTTP_CONNECTION" not in environ
            else validate.keep_alive_requested(environ, version),
            length,
            length != 0 and validate.wants_continue(environ, version),
            upgrade,
        )

    def on_chunk_header(self) -> None:
        # The next bytes are the chunk's data, or for the last chunk the trailer section.
        self._event = True
        self._in_trailers = True

    def on_body(self, data: bytes) -> None:
        if self.stopped:
            raise _Stop
        self._event = True
        self._in_trailers = False
        self._body_received += len(data)
        self._body_left -= len(data)
        limit = self._settings.limit_request_body
        if limit and self._body_received > limit:  # a chunked body that keeps growing
            self._error = PayloadTooLarge(f"request body over {limit} bytes")
            raise _Stop
        self._sink.on_body(data)

    def on_chunk_complete(self) -> None:
        self._event = True
        # No data since the size line: the last chunk, and the message ends now. Checked
        # here, not in `on_message_complete`, which every request pays for.
        if self._in_trailers and not self._lines.finished(self._body_received):
            self._error = BadRequest("malformed chunked body")
            raise _Stop
        self._in_trailers = False

    def on_message_complete(self) -> None:
        self._event = True
        if self._upgrading:
            return  # llhttp stops here; the Upgrade request's body is taken unparsed
        self._in_body = False
        self._in_trailers = False
        self._on_message_end()

    # -- outcomes ------------------------------------------------------------------------

    def _failed(self, error: Exception, piece: bytes) -> None:
        if self.stopped:
            return  # the sink stopped us from a callback
        http_error = self._error
        if http_error is None:
            http_error = BadRequest(str(error) or "malformed request")
            line = _METHOD_TOKEN.match(piece.lstrip(b"\r\n"))
            if isinstance(error, httptools.HttpParserInvalidMethodError) and line:
                # RFC 9110 §9.1: a well-formed but unknown method is "not implemented";
                # anything else in its place is a malformed request line.
                http_error = NotImplementedCoding("unknown method")
                self._method, _, rest = line.group().partition(b" ")  # for the access log
                self._url = rest.rpartition(b" ")[0]
            elif (
                not self._method
                and (
                    _proxy_header_start(self._line or piece)
                    # A NUL after empty lines (fed apart: `feed` cuts after each CRLFCRLF): v2.
                    or (piece[:1] == b"\x00" and self._head_bytes > len(piece))
                )
            ):
                http_error = UnexpectedProxyHeader("a PROXY protocol header was not expected")
            elif piece[:1] == b"\x00" and not self._method:
                http_error = UwsgiOnHttpListener("a uwsgi packet on an HTTP listener")
        self._refuse(http_error, self._in_body)

    def _upgrade(self, rest: bytes) -> None:
        """We never switch protocols (RFC 9110 §7.8 lets us decline): the request's body,
        framed by Content-Length, is taken as is, and nothing after it is parsed."""
        if self.stopped:
            return
        self._raw_remaining = self._length or 0
        self._feed_raw(rest)

    def _feed_raw(self, data: bytes) -> None:
        take = data[: self._raw_remaining]
        if take:
            self._raw_remaining -= len(take)
            self._sink.on_body(take)
        if self._raw_remaining == 0:
            self._raw_remaining = -1
            self._in_body = False
            self.stopped = True
            self._sink.on_message_end()
