"""Request bodies through the HTTP parser, without sockets: framing never depends on how
the bytes were cut, and a read that is all body reaches the app without a copy."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given, settings

from tests.support.sink import Sink
from wsgiserve.environ import connection_environ, server_environ
from wsgiserve.parser import RequestParser
from wsgiserve.proxy import TrustedProxies
from wsgiserve.settings import Settings

BASE = connection_environ(
    server_environ("http", False, None), ("127.0.0.1", 8000), ("127.0.0.1", 40000)
)


class Messages(Sink):
    """Each message as (method, path, body, ended), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[list[object]] = []
        self.pieces: list[bytes] = []

    def on_head(self, environ: dict[str, object], *rest: object) -> None:
        self.messages.append([environ["REQUEST_METHOD"], environ["PATH_INFO"], b"", False])

    def on_body(self, data: bytes) -> None:
        self.pieces.append(data)
        self.messages[-1][2] += data  # type: ignore[operator]

    def on_message_end(self) -> None:
        self.messages[-1][3] = True


def parse(pieces: list[bytes]) -> Messages:
    sink = Messages()
    parser = RequestParser(sink, Settings(), BASE, TrustedProxies.parse(""), 65536)
    for piece in pieces:
        assert parser.feed(piece) == b""
    assert sink.refused == []
    return sink


def post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def chunked(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


# Bodies that look like requests: a parser that lost the framing would serve them.
BODIES = st.sampled_from([b"", b"x", b"\r\n\r\n", get("/smuggled"), b"0\r\n\r\n" * 3, b"p" * 300])
MESSAGES = st.lists(
    st.tuples(st.sampled_from([post, chunked, get]), BODIES), min_size=1, max_size=5
)


def wire(messages: list[tuple[object, bytes]]) -> tuple[bytes, list[list[object]]]:
    data = b""
    expected: list[list[object]] = []
    for number, (kind, body) in enumerate(messages):
        path = f"/{number}"
        if kind is get:
            data += get(path)
            expected.append(["GET", path, b"", True])
        else:
            data += kind(path, body)  # type: ignore[operator]
            expected.append(["POST", path, body, True])
    return data, expected


@settings(max_examples=300, deadline=None)
@given(MESSAGES, st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_pipelined_bodies_are_framed_the_same_however_the_bytes_are_cut(
    messages: list[tuple[object, bytes]], points: list[int]
) -> None:
    data, expected = wire(messages)
    edges = sorted({0, len(data), *(point % (len(data) + 1) for point in points)})
    pieces = [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
    assert parse([data]).messages == expected
    assert parse(pieces).messages == expected


def test_a_body_split_at_every_byte_then_a_pipelined_request() -> None:
    data = post("/a", b"hello world") + get("/b")
    for cut in range(1, len(data)):
        assert parse([data[:cut], data[cut:]]).messages == [
            ["POST", "/a", b"hello world", True],
            ["GET", "/b", b"", True],
        ], cut


def test_a_read_that_is_all_body_reaches_the_app_as_it_came() -> None:
    body = b"x" * 3 * 65536
    reads = [post("/up", b""), body[:65536], body[65536 : 2 * 65536], body[2 * 65536 :]]
    reads[0] = reads[0].replace(b"Content-Length: 0", b"Content-Length: %d" % len(body))
    sink = parse(reads)
    assert sink.messages == [["POST", "/up", body, True]]
    assert all(piece is read for piece, read in zip(sink.pieces, reads[1:], strict=True))
