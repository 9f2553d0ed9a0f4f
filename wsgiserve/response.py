"""Worker side: `start_response`, header checks, the framing decision and the response head.

One `Response` per request, used only by the worker thread running the app.
It never touches a socket: finished bytes go to the `Exchange`, which posts
them to the loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import IO, Any

from .exchange import COPY_LIMIT, Exchange, Wire, pieces

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WriteCallable = Callable[[bytes], None]

# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. The app's
# status is the final one: 1xx are interim (RFC 9110 §15.2; the server sends 100 Continue
# itself and never switches protocols) and RFC 9110 §15 defines nothing past 599.
_STATUS = re.compile(r"[2-5][0-9]{2}(?: [\t\x20-\x7e\x80-\xff]*)?")
# RFC 9110 §5.1 token, and §5.5 field-value characters (no CTLs but HTAB).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Hop-by-hop fields belong to the server (PEP 3333 "Other HTTP Features").
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
        "trailer",
    }
)

_CACHE_LIMIT = 1024
# A body returned whole (a list) up to this size crosses to the loop in one piece; a
# bigger one crosses in slices through the write gate (see `Response.finish_with`).
WHOLE_BODY_LIMIT = 1024 * 1024
BODY_SLICE = 256 * 1024
_status_lines: dict[object, tuple[bytes, int]] = {}
# Apps mostly send the same header list every time: validated and encoded once.
# (encoded, content-length, close, has Date, has Server)
_Prepared = tuple[bytes, "int | None", bool, bool, bool]
_prepared: dict[Any, _Prepared] = {}
_good_names: set[str] = set()


TOO_LONG = "the app sent more than its Content-Length; extra bytes dropped"


class InvalidResponse(Exception):
    """The app's status or headers cannot be sent; the request gets a 500 instead."""


class _Truncated(Exception):
    """The app sent less than its Content-Length: the connection must be aborted."""

    def __str__(self) -> str:
        return "the app sent less than its Content-Length"


class FileWrapper:
    """`wsgi.file_wrapper`: iterate a file-like object in blocks, and close it when done."""

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


def status_line(status: object) -> tuple[bytes, int]:
    """(b"HTTP/1.1 200 OK\\r\\n", 200), validated and cached."""
    cached = _status_lines.get(status)
    if cached is not None:
        return cached
    if type(status) is not str or not _STATUS.fullmatch(status):
        raise InvalidResponse(f"invalid status {status!r}")
    code = int(status[:3])
    full = status
    if len(status) == 3:
        try:
            full = f"{code} {HTTPStatus(code).phrase}"
        except ValueError:
            full = f"{code} "
    line = (f"HTTP/1.1 {full}\r\n".encode("latin-1"), code)
    if len(_status_lines) < _CACHE_LIMIT:
        _status_lines[status] = line  # under the app's spelling: "200" finds it next time
    return line


class Response:
    """The state of one response, driven by the app through `start_response` and `write`."""

    __slots__ = (
        "_code",
        "_content_length",
        "_ending",
        "_exchange",
        "_headers",
        "_no_body",
        "_status_line",
        "app_headers",
        "chunked",
        "close_after",
        "head_sent",
        "sent",
        "started",
    )

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._status_line = b""
        self._code = 0
        self._headers = b""
        self._content_length: int | None = None
        self._no_body = False  # HEAD, 204 or 304 (RFC 9110 §6.4.1): set by start_response
        self.started = False
        self.head_sent = False
        self.chunked = False
        self.close_after = False
        self.sent = 0  # body bytes sent
        self._ending: Wire | None = None
        self.app_headers: list[tuple[str, str]] = []  # as given, for the access log

    @property
    def code(self) -> int:
        return self._code

    @property
    def status(self) -> str:
        """The status line's "200 OK" part."""
        return self._status_line[9:-2].decode("latin-1")

    # -- PEP 3333 ----------------------------------------------------------------------

    # What an app passes is checked here, so the parameters take any object: annotated
    # narrower, a compiled build would refuse a wrong type before our message could say
    # what is wrong.
    def start_response(
        self,
        status: object,
        headers: object,
        exc_info: ExcInfo | None = None,
    ) -> WriteCallable:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.started:
            raise AssertionError("start_response called a second time without exc_info")
        line = _status_lines.get(status)  # the cache lookup of status_line, without a call
        self._status_line, code = line if line is not None else status_line(status)
        self._code = code
        # RFC 9110 §6.4.1: no body for HEAD, 1xx (never reach here), 204 and 304.
        self._no_body = code == 204 or code == 304 or self._exchange.head_request
        self.app_headers = self._prepare_headers(headers)
        self.started = True
        return self.write

    def write(self, data: object) -> None:
        """Send one body block (the `write()` callable, and each block of the iterable)."""
        if not self.started:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            data = _as_bytes(data)
        if not data:
            return
        exchange = self._exchange
        if self._no_body:
            if not self.head_sent:
                self._send(self._head(None))
            return
        length = self._content_length
        if length is not None and self.sent + len(data) > length:
            data = data[: length - self.sent]
            self.close_after = True
            exchange.log_error(TOO_LONG)
            if not data:
                return
        self.sent += len(data)
        head = b"" if self.head_sent else self._head(None)  # decides `chunked`
        if self.chunked:  # pieces, not a copy: the loop sends a batch of them with one writev
            size_line = b"%x\r\n" % len(data)
            self._send((head, size_line, data, b"\r\n") if head else (size_line, data, b"\r\n"))
        else:
            self._send(pieces(head, data) if head else data)

    # -- endings -------------------------------------------------------------------------

    def finish(self) -> None:
        """The body is complete: prepare the last bytes; `complete()` sends them."""
        tail = b""
        if not self.head_sent:
            tail = self._head(0)
        elif self.chunked:
            tail = b"0\r\n\r\n"
        length = self._content_length
        if length is not None and self.sent < length and not self._no_body:
            self._send(tail)
            raise _Truncated
        self.head_sent = True
        self._ending = tail

    def complete(self) -> None:
        """Post the ending prepared by `finish()`: after this the connection moves on."""
        if self._ending is None:
            raise AssertionError("complete() before finish()")
        self._exchange.end(self._ending, not self.close_after)

    def finish_with(self, body: object) -> None:
        """The whole body at once (the app returned a list): head and body cross in one hop."""
        if self.head_sent:  # the app used write() first
            self.write(body)
            self.finish()
            return
        if type(body) is not bytes:
            body = _as_bytes(body)
        size = len(body)
        head = self._head(size)
        self.head_sent = True
        if self._no_body:
            self._ending = head
            return
        length = self._content_length
        if length is not None and size != length:
            if size < length:
                self.sent = size
                self._send(pieces(head, body))
                raise _Truncated
            body = body[:length]
            size = length
            self.close_after = True
            self._exchange.log_error(TOO_LONG)
        self.sent = size
        if size > WHOLE_BODY_LIMIT:
            # Posted whole, a big body would sit in the transport for as long as a slow
            # client takes to read it, one copy per connection. In slices, each reserved
            # at the write gate, this thread waits instead, and the minimum download rate
            # frees it from a client that does not read.
            self._exchange.send(pieces(head, body[:BODY_SLICE]))
            end = size - BODY_SLICE
            for start in range(BODY_SLICE, end, BODY_SLICE):
                self._exchange.send(body[start : start + BODY_SLICE])
            last = ((size - 1) // BODY_SLICE) * BODY_SLICE
            self._ending = body[last:]
            return
        self._ending = head + body if size <= COPY_LIMIT else pieces(head, body)

    def _send(self, data: Wire) -> None:
        self.head_sent = True
        if data:
            self._exchange.send(data)

    # -- headers ---------------------------------------------------------------------------

    def _prepare_headers(self, headers: object) -> list[tuple[str, str]]:
        """Check and encode the app's headers; return them, now known to be (str, str)."""
        if type(headers) is not list:
            raise InvalidResponse("response headers must be a list")
        try:
            key: Any = tuple(headers)
            cached = _prepared.get(key)
        except TypeError:  # something unhashable: the slow path says what is wrong
            key = cached = None
        if cached is None:
            cached = _check_headers(headers)
            if key is not None and len(_prepared) < _CACHE_LIMIT:
                _prepared[key] = cached
        encoded, self._content_length, self.close_after, has_date, has_server = cached
        clock = self._exchange.clock
        if not has_date:
            encoded += clock.date_header
        if not has_server:
            encoded += clock.server_header
        self._headers = encoded
        return headers

    def _head(self, known_length: int | None) -> bytes:
        """Serialise the head; `known_length` is the body size when the body is already complete."""
        exchange = self._exchange
        head = self._headers
        code = self._code
        if self._no_body:
            if code == 204:
                head = _without_content_length(head)
            elif known_length and self._content_length is None and code != 304:
                # RFC 9110 §9.3.2: HEAD reports the length GET would send. An empty body
                # proves nothing (the app may have skipped it for HEAD, or streamed nothing
                # yet), and §8.6 forbids a wrong length where none is allowed.
                head += b"Content-Length: %d\r\n" % known_length
        elif self._content_length is None:
            if known_length is not None:
                self._content_length = known_length
                head += b"Content-Length: %d\r\n" % known_length
            elif exchange.version == "1.1":
                self.chunked = True
                head += b"Transfer-Encoding: chunked\r\n"
            else:
                self.close_after = True  # close-delimited body (RFC 9112 §6.3 item 8)
        keep_alive = not self.close_after and exchange.may_keep_alive()
        self.close_after = not keep_alive
        # RFC 9112 §9.3 and §9.6: say so when this response ends the connection, whatever
        # the version (an HTTP/1.0 client may have asked for keep-alive and must learn it was
        # refused); HTTP/1.0 persistence is only ever announced.
        if not keep_alive:
            head += b"Connection: close\r\n"
        elif exchange.version != "1.1":
            head += b"Connection: keep-alive\r\n"
        return self._status_line + head + b"\r\n"


def _as_bytes(data: object) -> bytes:
    """A body block that is not `bytes` as bytes, or a TypeError that names what it is."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"the app produced {type(data).__name__}, not bytes")
    return bytes(data)


def _without_content_length(head: bytes) -> bytes:
    return b"".join(
        line + b"\r\n"
        for line in head.split(b"\r\n")
        if line and not line.lower().startswith(b"content-length:")
    )


def plain_error(status: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """A canned plain-text error response: status, headers and body."""
    body = message.encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return status, headers, body


def _check_headers(headers: list[object]) -> _Prepared:
    """Validate the app's headers; drop hop-by-hop ones; note what the framing needs."""
    lines = []
    content_length = None
    close = False
    has_date = has_server = False
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise InvalidResponse(f"response header {item!r} is not a (name, value) tuple")
        name, value = item
        if type(value) is not str:
            raise InvalidResponse(f"response header {name!r} has a non-str value")
        if name not in _good_names:
            if type(name) is not str or not _TOKEN.fullmatch(name):
                raise InvalidResponse(f"invalid response header name {name!r}")
            if len(_good_names) < _CACHE_LIMIT:
                _good_names.add(name)
        if _BAD_VALUE.search(value):
            raise InvalidResponse(f"response header {name!r} holds a control character")
        lower = name.lower()
        if lower == "content-length":
            if content_length is not None or not value.strip().isdigit():
                raise InvalidResponse(f"invalid Content-Length {value!r}")
            content_length = int(value)
        elif lower in _HOP_BY_HOP:
            if lower == "connection" and "close" in value.lower():
                close = True
            continue
        elif lower == "date":
            has_date = True
        elif lower == "server":
            has_server = True
        lines.append(f"{name}: {value}\r\n")
    try:
        encoded = "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidResponse("response headers must be latin-1 text") from None
    return encoded, content_length, close, has_date, has_server
