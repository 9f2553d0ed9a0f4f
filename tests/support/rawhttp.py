"""Raw bytes over a real TCP socket, and a strict client-side parser for what comes back.

For black-box tests against a live server on loopback: send exactly the bytes a case needs
(whole, or split into separate sends), read until the server closes or goes quiet, then count
and parse the responses with h11 in client mode, so pipelined responses are framed the way a
real client would frame them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import h11

LOOPBACK = ("127.0.0.1", "::1")
CONNECT_TIMEOUT = 5.0  # seconds


@dataclass(frozen=True)
class RawResult:
    """What one `exchange` saw.

    `data` is every byte received. `closed` is True when the server ended the connection
    (EOF or reset) and False when the read stopped because nothing arrived for the idle
    timeout, or because the `until` predicate was satisfied. `reset` says the end was a TCP
    reset rather than a FIN. `send_error` names the error that stopped sending early, if any
    (a server that rejects a request may close before the client has sent everything).
    """

    data: bytes
    closed: bool
    reset: bool = False
    send_error: str | None = None


def exchange(
    address: tuple[str, int],
    data: bytes | Sequence[bytes],
    *,
    half_close: bool = False,
    idle_timeout: float = 1.5,
    nodelay: bool = True,
    until: Callable[[bytes], bool] | None = None,
    settle: float = 0.05,
) -> RawResult:
    """Send `data` on a fresh connection and read what the server answers.

    Args:
        address: (host, port); host must be a loopback address.
        data: bytes sent in one `sendall`, or a sequence of pieces, each its own send.
        half_close: after sending, shut down the write side (``SHUT_WR``).
        idle_timeout: seconds of silence after which reading stops (the result is then
            not `closed`).
        nodelay: set ``TCP_NODELAY`` so that small pieces leave as separate segments.
        until: optional predicate on the bytes received so far; once it is true, reading
            goes on for only `settle` more seconds (to catch anything unexpected right
            behind; 0 stops at once) instead of waiting for the idle timeout.
        settle: see `until`.

    Returns:
        A `RawResult`.
    """
    host, port = address
    if host not in LOOPBACK:
        raise ValueError(f"exchange() talks to loopback only, not {host!r}")
    pieces = [data] if isinstance(data, bytes | bytearray) else list(data)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    received = bytearray()
    closed = reset = False
    send_error: str | None = None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect((host, port))
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError as error:
                send_error = f"{type(error).__name__}: {error}"
                break
        if half_close and send_error is None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as error:
                send_error = f"{type(error).__name__}: {error}"
        timeout = idle_timeout
        satisfied = False
        while True:
            sock.settimeout(timeout)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
            if until is not None and not satisfied and until(bytes(received)):
                if settle <= 0:
                    break
                satisfied, timeout = True, settle
    return RawResult(bytes(received), closed, reset, send_error)


@dataclass(frozen=True)
class Response:
    """One final (non-1xx) response: status, lower-cased header names in wire order, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    http_version: bytes = b"1.1"

    def header(self, name: str | bytes) -> bytes | None:
        """The value of header `name` (case-insensitive), repeated values joined with ", "."""
        key = (name.encode("ascii") if isinstance(name, str) else name).lower()
        values = [value for field_name, value in self.headers if field_name == key]
        return b", ".join(values) if values else None


class ResponseList(list[Response]):
    """The complete responses, in order, plus how parsing ended.

    Attributes:
        truncated: bytes remained that did not form a complete response.
        error: h11's complaint, when the bytes were not a valid response.
        informational: how many 1xx responses were skipped.
        trailing: bytes after a response that ended the connection (``Connection: close``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.truncated = False
        self.error: str | None = None
        self.informational = 0
        self.trailing = b""

    def statuses(self) -> list[int]:
        """The status codes, in order."""
        return [response.status for response in self]


def parse_responses(raw: bytes, methods: Sequence[str] = (), *, eof: bool = True) -> ResponseList:
    """Split `raw` into HTTP/1.x responses with h11 in client mode.

    Args:
        raw: bytes received from the server.
        methods: the request methods in order (a HEAD response carries no body); requests
            beyond this list count as GET.
        eof: the server closed after `raw`; this ends a close-delimited body.

    Returns:
        A `ResponseList`. Never raises for bad or partial input: it returns what parsed and
        sets `truncated` / `error`.
    """
    result = ResponseList()
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=1 << 24)
    conn.receive_data(raw)
    if eof:
        conn.receive_data(b"")
    index = 0
    while True:
        if conn.our_state is h11.IDLE:
            if not _unconsumed(conn):
                return result
            method = methods[index] if index < len(methods) else "GET"
            conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            index += 1
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        version = b"1.1"
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                    result.truncated = bool(status) or _unconsumed(conn) != b""
                    return result
                if event is h11.PAUSED:
                    break
                if isinstance(event, h11.InformationalResponse):
                    result.informational += 1
                elif isinstance(event, h11.Response):
                    status, version = event.status_code, event.http_version
                    headers = [(name.lower(), value) for name, value in event.headers]
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    result.append(Response(status, headers, bytes(body), version))
                    break
        except h11.RemoteProtocolError as error:
            result.error = str(error)
            result.truncated = bool(status) or _unconsumed(conn) != b""
            return result
        if conn.their_state is h11.MUST_CLOSE or conn.their_state is h11.CLOSED:
            result.trailing = _unconsumed(conn)
            return result
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            result.trailing = _unconsumed(conn)
            return result


def _unconsumed(conn: h11.Connection) -> bytes:
    return bytes(conn.trailing_data[0])


SplitHow = Literal["two", "bytes", "random"]


def two_piece_splits(data: bytes) -> Iterator[list[bytes]]:
    """Every split of `data` into two non-empty pieces, first boundary first."""
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def bytewise(data: bytes) -> list[bytes]:
    """`data` one byte per piece."""
    return [data[i : i + 1] for i in range(len(data))]


def random_slices(data: bytes, rng: random.Random, max_piece: int = 64) -> list[bytes]:
    """`data` cut into random pieces of 1..`max_piece` bytes, drawn from `rng`."""
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[start : start + size])
        start += size
    return pieces


def splits(data: bytes, how: SplitHow, *, seed: int = 0, count: int = 1) -> Iterator[list[bytes]]:
    """Ways to send `data` in pieces.

    Args:
        data: the bytes to split.
        how: ``"two"`` for every two-piece split, ``"bytes"`` for one byte per piece,
            ``"random"`` for `count` random slicings from ``random.Random(seed)``.

    Returns:
        An iterator of piece lists; joining any of them gives back `data`.
    """
    if how == "two":
        yield from two_piece_splits(data)
    elif how == "bytes":
        yield bytewise(data)
    else:
        rng = random.Random(seed)
        for _ in range(count):
            yield random_slices(data, rng)


def fresh_statuses(address: tuple[str, int], request: bytes, ending: bytes = b"") -> list[int]:
    """The statuses a new connection gets for `request`, read until the bytes end with
    `ending` (or, without one, until a response head arrived)."""
    result = exchange(
        address,
        request,
        until=(lambda data: data.endswith(ending))
        if ending
        else (lambda data: b"\r\n\r\n" in data),
    )
    return parse_responses(result.data, eof=False).statuses()
