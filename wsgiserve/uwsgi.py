"""Sans-I/O: the uwsgi protocol, as nginx's `uwsgi_pass` and Apache's `mod_proxy_uwsgi` speak it.

A uwsgi request is one packet: a 4-byte header (modifier1, the size of the vars
block as a little-endian 16-bit number, modifier2), the vars block (pairs of
16-bit-length-prefixed key and value: the CGI environment the web server built),
then `CONTENT_LENGTH` bytes of body. The answer is a plain HTTP/1.x response, and
the connection carries one request: the end of the response is the close.

`UwsgiParser` reports to the same `parser.RequestSink` as the HTTP parser, so the
body streams through the same `wsgi.input`, the response takes the same path, and
every limit and timeout of the connection applies unchanged.

Only the web server's peers in `--uwsgi-allow-ips` are served (the vars set the
client address and scheme), and only the keys a web server sets for a request
reach the environ: `UWSGI_*` and the other vars uWSGI reads to load code are
dropped, never obeyed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from .environ import Environ, request_id
from .errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    PayloadTooLarge,
    UnexpectedProxyHeader,
    URITooLong,
    UwsgiPeerForbidden,
)
from .proxy import mount, mount_prefix

if TYPE_CHECKING:
    from .parser import RequestSink
    from .settings import Settings

HEADER_SIZE = 4
# modifier1 0 is a WSGI request; 30 is the same with SCRIPT_NAME taken off PATH_INFO,
# which is what we always do when the web server sets SCRIPT_NAME.
WSGI_MODIFIERS = (0, 30)
# CGI variables (RFC 3875 §4.1) and the few more that nginx's uwsgi_params and Apache set.
# SERVER_SOFTWARE and GATEWAY_INTERFACE stay ours: they describe this server.
CGI_KEYS = frozenset(
    {
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "DOCUMENT_ROOT",
        "DOCUMENT_URI",
        "HTTPS",
        "PATH_INFO",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "REQUEST_SCHEME",
        "REQUEST_URI",
        "SCRIPT_NAME",
        "SERVER_ADDR",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
    }
)
# Framing belongs to the uwsgi packet, not to the client's headers (as hop-by-hop
# fields do in HTTP); PEP 3333 gives the content fields no HTTP_ key.
DROPPED_HTTP_KEYS = frozenset(
    {"HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_TRANSFER_ENCODING", "HTTP_CONNECTION"}
)
# The first 4 bytes of a PROXY protocol v1 and v2 header (modifiers 80 and 13: no uwsgi
# request), recognised only to name the set-up mistake.
_PROXY_STARTS = (b"PROX", b"\r\n\r\n")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")


def parse_vars(block: bytes | bytearray) -> list[tuple[str, str]]:
    """The key/value pairs of a vars block, in order; raises `BadRequest` when a length
    runs past the block."""
    pairs: list[tuple[str, str]] = []
    at, end = 0, len(block)
    while at < end:
        if at + 2 > end:
            raise BadRequest("uwsgi vars block: truncated key size")
        size = block[at] | block[at + 1] << 8
        key_end = at + 2 + size
        if key_end + 2 > end:
            raise BadRequest("uwsgi vars block: truncated key or value size")
        value_size = block[key_end] | block[key_end + 1] << 8
        value_end = key_end + 2 + value_size
        if value_end > end:
            raise BadRequest("uwsgi vars block: truncated value")
        pairs.append(
            (
                block[at + 2 : key_end].decode("latin-1"),
                block[key_end + 2 : value_end].decode("latin-1"),
            )
        )
        at = value_end
    return pairs


def vars_environ(base: Environ, pairs: list[tuple[str, str]], settings: Settings) -> Environ:
    """The environ of one uwsgi request: `base` (the connection's keys) with the web
    server's CGI and HTTP_ vars over it. Raises `HTTPError` for a request to refuse."""
    environ = base.copy()
    fields = 0
    for key, value in pairs:
        if len(key) + len(value) + 4 > settings.limit_request_field_size:
            raise HeaderFieldsTooLarge(f"uwsgi var {key[:40]} too large")
        if key.startswith("HTTP_"):
            fields += 1
            if key in DROPPED_HTTP_KEYS:
                continue
            if key in environ:
                environ[key] += "; " + value if key == "HTTP_COOKIE" else ", " + value
            else:
                environ[key] = value
        elif key in CGI_KEYS and (value or key not in environ):
            environ[key] = value
    if fields > settings.limit_request_fields:
        raise HeaderFieldsTooLarge("too many header fields")
    method = environ.get("REQUEST_METHOD", "")
    if not _METHOD.match(method):
        raise BadRequest("uwsgi request without a valid REQUEST_METHOD")
    uri = environ.get("REQUEST_URI")
    path = environ.get("PATH_INFO")
    if path is None:
        if uri is None:
            raise BadRequest("uwsgi request with neither PATH_INFO nor REQUEST_URI")
        target, _, query = uri.partition("?")
        path = unquote_to_bytes(target).decode("latin-1")
        environ.setdefault("QUERY_STRING", query)
    environ.setdefault("QUERY_STRING", "")
    if uri is None:
        query = environ["QUERY_STRING"]
        uri = environ["REQUEST_URI"] = path + ("?" + query if query else "")
    if len(uri) > settings.limit_request_line:
        raise URITooLong("request line too long")
    environ["RAW_URI"] = uri
    # A mount point the web server names (`uwsgi_param SCRIPT_NAME /app;`, or Apache's
    # ProxyPass path) is taken off PATH_INFO, as uWSGI does with modifier1 30, by the same
    # rule as --root-path; one that is no absolute path is not believed (the root stays).
    environ["PATH_INFO"] = path
    prefix = mount_prefix(environ["SCRIPT_NAME"]) if environ.get("SCRIPT_NAME") else ""
    if prefix is None:
        prefix = base.get("SCRIPT_NAME", "")
    environ["SCRIPT_NAME"] = ""
    if prefix:
        mount(environ, prefix)
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.1")
    if environ.get("HTTPS", "").lower() in ("on", "1") or environ.get("REQUEST_SCHEME") == "https":
        environ["wsgi.url_scheme"] = "https"
    if not environ.get("SERVER_PORT"):  # PEP 3333: never empty
        environ["SERVER_PORT"] = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        if not environ.get(key, "x"):  # nginx sends them empty for a request without a body
            del environ[key]
    length = environ.get("CONTENT_LENGTH")
    if length is not None and not _DIGITS.match(length):
        raise BadRequest("uwsgi CONTENT_LENGTH is not a number")
    environ["wsgiserve.request_id"] = request_id(environ.get("HTTP_X_REQUEST_ID"))
    return environ


class UwsgiParser:
    """One uwsgi request per connection, reported to a `RequestSink` like HTTP's."""

    __slots__ = (
        "_allowed",
        "_body_left",
        "_buffer",
        "_environ",
        "_environ_base",
        "_head_limit",
        "_settings",
        "_sink",
        "head_method",
        "in_head",
        "pause_after_head",
        "stopped",
    )

    def __init__(
        self,
        sink: RequestSink,
        settings: Settings,
        environ_base: Environ,
        allowed: bool,
        head_limit: int,
    ) -> None:
        self._sink = sink
        self._settings = settings
        self._environ_base = environ_base
        self._allowed = allowed
        self._head_limit = head_limit
        self._buffer: bytearray | None = None  # a head arriving in pieces
        self._body_left = -1  # -1 until the vars are read
        self._environ: Environ | None = None
        self.head_method = False
        self.in_head = False
        self.stopped = False
        self.pause_after_head = False  # one request per connection: nothing to hold back

    def partial_environ(self) -> Environ:
        """What is known of a refused request (for the access log)."""
        return (self._environ or self._environ_base).copy()

    def stop(self) -> None:
        self.stopped = True

    def feed(self, data: bytes) -> bytes:
        """Parse `data`; always returns b"" (one request per connection, nothing held back)."""
        if self.stopped:
            return b""
        if self._body_left < 0:
            data = self._head(data)
            if self._body_left < 0 or self.stopped:
                return b""
        if data and self._body_left:
            take = data[: self._body_left]
            self._body_left -= len(take)
            self._sink.on_body(take)
            if not self._body_left and not self.stopped:
                self._end()
        # Bytes past the body: a uwsgi connection carries one request; they are dropped.
        return b""

    def _head(self, data: bytes) -> bytes:
        """Take header and vars bytes; once complete, report the head and return what follows."""
        if not self._allowed:
            self._refuse(UwsgiPeerForbidden("uwsgi peer not in --uwsgi-allow-ips"))
            return b""
        # The first read usually holds the whole packet: no copy. Pieces of a head that
        # arrives in bits gather in one bytearray, so a client sending a byte at a time
        # costs a copy of each byte once, not of the whole head each time.
        held = self._buffer
        buffer: bytes | bytearray
        if held is not None:
            held += data
            buffer = held
        else:
            buffer = data
        self.in_head = True
        if len(buffer) < HEADER_SIZE:
            self._hold(buffer)
            return b""
        if buffer.startswith(_PROXY_STARTS):
            self._refuse(UnexpectedProxyHeader("a PROXY protocol header was not expected"))
            return b""
        modifier1 = buffer[0]
        size = buffer[1] | buffer[2] << 8
        if modifier1 not in WSGI_MODIFIERS:
            self._refuse(BadRequest(f"uwsgi modifier1 {modifier1} is not a WSGI request"))
            return b""
        if size > self._head_limit:
            self._refuse(HeaderFieldsTooLarge("uwsgi vars block too large"))
            return b""
        end = HEADER_SIZE + size
        if len(buffer) < end:
            self._hold(buffer)
            return b""
        self._buffer = None
        self.in_head = False
        try:
            environ = vars_environ(
                self._environ_base, parse_vars(buffer[HEADER_SIZE:end]), self._settings
            )
        except HTTPError as error:
            self._refuse(error)
            return b""
        self._environ = environ
        self.head_method = environ["REQUEST_METHOD"] == "HEAD"
        length = int(environ.get("CONTENT_LENGTH", 0))
        limit = self._settings.limit_request_body
        if limit and length > limit:
            self._refuse(PayloadTooLarge(f"request body over {limit} bytes"))
            return b""
        self._body_left = length
        # Framed as HTTP/1.0 and never kept alive: the web server reads the response to
        # the close, and uWSGI's answers are not chunked.
        self._sink.on_head(environ, "1.0", False, length, False, False)
        if not length and not self.stopped:
            self._end()
        return bytes(buffer[end:])

    def _hold(self, buffer: bytes | bytearray) -> None:
        if self._buffer is None:
            self._buffer = bytearray(buffer)

    def _end(self) -> None:
        self.stopped = True
        self._sink.on_message_end()

    def _refuse(self, error: HTTPError) -> None:
        error.head_request = self.head_method
        in_body = self._body_left > 0
        self.stopped = True
        self._sink.on_refused(error, in_body)
