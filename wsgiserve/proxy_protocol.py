"""Sans-I/O: the PROXY protocol preamble (HAProxy's v1 text line and v2 binary header).

A load balancer that passes TCP through (HAProxy, AWS NLB, stunnel) can open each
connection with a PROXY header naming the client it serves. `ProxyPreamble` is
the first parser of such a connection: it reads the header, then makes the
connection's real parser (HTTP or uwsgi) with the client's address in the
environ and hands it every byte after the header. A connection without a header
goes straight to the real parser, as gunicorn does. Only peers in
`--proxy-allow-from` may send one; the header is bounded (v1: 107 bytes, v2: 16
bytes plus at most `MAX_V2_LENGTH`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import BadRequest, HTTPError, ProxyHeaderForbidden

if TYPE_CHECKING:
    from .environ import Environ
    from .parser import Parser, RequestSink

MODES = ("off", "v1", "v2", "auto")
V1_PREFIX = b"PROXY "
V1_MAX = 107  # bytes, CRLF included (the specification's limit)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16  # signature, version/command, family/transport, 16-bit length
MAX_V2_LENGTH = 1024  # addresses (36 bytes at most) plus TLVs, which we skip
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_V2_NO_ADDRESS = (0x00, 0x31, 0x32)  # UNSPEC; AF_UNIX stream and datagram
_V2_FAMILIES = {0x11: (4, 12), 0x12: (4, 12), 0x21: (16, 36), 0x22: (16, 36)}


def parse_v1(line: bytes) -> tuple[str, int] | None:
    """The client (address, port) of a v1 line without its CRLF; None for
    `PROXY UNKNOWN` (keep the connection's own). Raises `BadRequest` otherwise."""
    parts = line.split(b" ")
    if parts[:2] == [b"PROXY", b"UNKNOWN"]:
        return None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise BadRequest("malformed PROXY protocol v1 line")
    version = 4 if parts[1] == b"TCP4" else 6
    source = _v1_address(parts[2], version)
    _v1_address(parts[3], version)  # the destination is checked, never used
    port = _v1_port(parts[4])
    _v1_port(parts[5])
    return str(source), port


def _v1_address(field: bytes, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Only the plain forms the specification writes: no IPv6 scope id (it would end up in
    # REMOTE_ADDR), and the family the line names.
    try:
        address = ipaddress.ip_address(field.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed PROXY protocol v1 line") from None
    if address.version != version or b"%" in field:
        raise BadRequest("malformed PROXY protocol v1 line")
    return address


def _v1_port(field: bytes) -> int:
    # Decimal digits, no leading zero, 0-65535; int() alone would take "+80", "1_0", " 80".
    if not _PORT.fullmatch(field) or int(field) > 65535:
        raise BadRequest("malformed PROXY protocol v1 line")
    return int(field)


def parse_v2(header: bytes) -> tuple[str, int] | None:
    """The client (address, port) of a whole v2 header; None for a LOCAL command (a health
    check of the balancer itself) or a family without an IP address (UNSPEC, unix).
    Raises `BadRequest` for a header that is not version 2, names an unassigned family or
    transport, or is too short for its addresses."""
    version_command, family = header[12], header[13]
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise BadRequest("malformed PROXY protocol v2 header")
    if version_command & 0x0F == 0:  # LOCAL
        return None
    shape = _V2_FAMILIES.get(family)
    if shape is None:
        if family in _V2_NO_ADDRESS:  # UNSPEC, unix sockets: nothing about the client's IP
            return None
        # The specification: receivers must reject any other family/transport byte.
        raise BadRequest("PROXY protocol v2 header with an unassigned address family")
    size, needed = shape
    body = header[V2_HEADER:]
    if len(body) < needed:
        raise BadRequest("PROXY protocol v2 header too short for its addresses")
    address = ipaddress.ip_address(body[:size])
    port = int.from_bytes(body[2 * size : 2 * size + 2], "big")
    return str(address), port


class ProxyPreamble:
    """A connection's first parser when `--proxy-protocol` is on."""

    __slots__ = (
        "_allowed",
        "_buffer",
        "_environ_base",
        "_make_parser",
        "_mode",
        "_sink",
        "head_method",
        "in_head",
        "pause_after_head",
        "stopped",
    )

    def __init__(
        self,
        sink: RequestSink,
        environ_base: Environ,
        make_parser: Callable[[RequestSink, Environ], Parser],
        mode: str,
        allowed: bool,
    ) -> None:
        self._sink = sink
        self._environ_base = environ_base
        self._make_parser = make_parser
        self._mode = mode
        self._allowed = allowed
        self._buffer = b""
        self.head_method = False
        self.in_head = False
        self.stopped = False
        self.pause_after_head = False

    def partial_environ(self) -> Environ:
        return self._environ_base.copy()

    def stop(self) -> None:
        self.stopped = True

    def feed(self, data: bytes) -> bytes:
        if self.stopped:
            return b""
        buffer = self._buffer = self._buffer + data if self._buffer else data
        self.in_head = True
        try:
            decided = self._read(buffer)
        except HTTPError as error:
            self.stopped = True
            self._sink.on_refused(error, False)
            return b""
        if decided is None:
            return b""  # the header is still arriving
        environ_base, rest = decided
        parser = self._make_parser(self._sink, environ_base)
        self._sink.use_parser(parser)
        self._buffer = b""
        held = parser.feed(rest) if rest else b""
        # The connection reads these once after this call; it talks to `parser` from now on.
        self.in_head, self.stopped = parser.in_head, parser.stopped
        return held

    def _read(self, buffer: bytes) -> tuple[Environ, bytes] | None:
        """(environ template, bytes after the header) once decided; None while undecided."""
        mode = self._mode
        if mode != "v2" and V1_PREFIX.startswith(buffer[:6]):
            if len(buffer) < len(V1_PREFIX):
                return None
            end = buffer.find(b"\r\n", 0, V1_MAX)
            if end < 0:
                if len(buffer) >= V1_MAX:
                    raise BadRequest("PROXY protocol v1 line too long")
                return None
            self._check_allowed()
            return self._with_client(parse_v1(buffer[:end])), buffer[end + 2 :]
        if mode != "v1" and V2_SIGNATURE.startswith(buffer[:12]):
            if len(buffer) < V2_HEADER:
                return None
            length = int.from_bytes(buffer[14:16], "big")
            if length > MAX_V2_LENGTH:
                raise BadRequest("PROXY protocol v2 header too long")
            end = V2_HEADER + length
            if len(buffer) < end:
                return None
            self._check_allowed()
            return self._with_client(parse_v2(buffer[:end])), buffer[end:]
        return self._environ_base, buffer  # no preamble: the connection speaks for itself

    def _check_allowed(self) -> None:
        if not self._allowed:
            raise ProxyHeaderForbidden("PROXY header from a peer not in --proxy-allow-from")

    def _with_client(self, client: tuple[str, int] | None) -> Environ:
        if client is None:
            return self._environ_base
        environ = self._environ_base.copy()
        environ["REMOTE_ADDR"], port = client
        environ["REMOTE_PORT"] = str(port)
        return environ
