"""Chunk-size lines with BWS around `;` and `=` (RFC 9112 §7.1.1), without sockets.

`chunk_lines.canonical` alone, then the real `RequestParser` (llhttp behind it) fed whole and
split at every byte: the app's body is exact, a request behind the body is its own request,
and every line the grammar does not allow is refused as llhttp refuses it without us.
"""

from __future__ import annotations

import httptools
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from tests.support.sink import Sink
from wsgiserve.chunk_lines import ChunkLines, canonical
from wsgiserve.environ import connection_environ, server_environ
from wsgiserve.parser import RequestParser
from wsgiserve.proxy import TrustedProxies
from wsgiserve.settings import Settings

SETTINGS = Settings()
BASE = connection_environ(
    server_environ("http", False, None), ("127.0.0.1", 8000), ("127.0.0.1", 40000)
)
HEAD = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"


# -- the grammar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"5; some; parameters=stuff\r\n", b"5;some;parameters=stuff\r\n"),  # gunicorn valid/013
        (b"5 ;a\r\n", b"5;a\r\n"),
        (b"5 ; a\r\n", b"5;a\r\n"),
        (b"5\t;\ta\t=\tb\r\n", b"5;a=b\r\n"),
        (b"5;a = b ; c\r\n", b"5;a=b;c\r\n"),
        (b'5 ; a = "x ; y = z"\r\n', b'5;a="x ; y = z"\r\n'),  # quoted: inner spaces kept
        (b'5; a="\\" ; \\\\"; b\r\n', b'5;a="\\" ; \\\\";b\r\n'),  # quoted-pairs
        (b"A ; x\r\n", b"A;x\r\n"),
        (b"0 ; a = b\r\n", b"0;a=b\r\n"),
    ],
)
def test_bws_is_removed_from_a_line_the_grammar_allows(line: bytes, expected: bytes) -> None:
    assert canonical(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"5 \r\n",  # BWS is only allowed before ";" (what llhttp's leniency would also take)
        b"5 x\r\n",
        b"5 5\r\n",
        b"5;a \r\n",  # no BWS after a name or a value
        b"5; a \r\n",
        b"5; \r\n",  # no name
        b"5 ;=x\r\n",
        b"5 ;a=\r\n",  # no value after "="
        b"5 ;a=b c\r\n",
        b'5 ;a="x\r\n',  # unterminated quoted string
        b'5 ;a="x"y\r\n',
        b"5 ;a(b\r\n",  # not a token
        b"5 ;a\n",  # bare LF
        b"5 ;a\r\r\n",
        b" 5;a\r\n",  # BWS before the size
        b"5 ;\x01\r\n",
        b'5 ;a="\x01"\r\n',
        b"5;a\r\n",  # nothing to remove: the same object, never a copy
    ],
)
def test_any_other_line_is_left_for_llhttp(line: bytes) -> None:
    assert canonical(line) is line


# -- the parser, fed whole and split at every byte ------------------------------------------------


class Bodies(Sink):
    """Records each message's body apart."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def on_message_end(self) -> None:
        super().on_message_end()
        self.bodies.append(self.body)
        self.body = b""


def parse(pieces: list[bytes], limit: int = SETTINGS.limit_request_field_size) -> Bodies:
    sink = Bodies()
    config = Settings(limit_request_field_size=limit)
    parser = RequestParser(sink, config, BASE, TrustedProxies.parse(""), 65536)
    for piece in pieces:
        if parser.stopped:
            break
        assert parser.feed(piece) == b""
    return sink


def splits(wire: bytes) -> list[list[bytes]]:
    """`wire` whole, byte by byte, and cut in two at every offset."""
    return [[wire], [wire[i : i + 1] for i in range(len(wire))]] + [
        [wire[:i], wire[i:]] for i in range(1, len(wire))
    ]


def served(sink: Bodies) -> tuple[list[str], list[bytes]]:
    assert not sink.refused, sink.refused
    return [environ["PATH_INFO"] for environ, *_ in sink.heads], sink.bodies


GOOD = [
    pytest.param(b"5; some; parameters=stuff\r\nhello\r\n0\r\n\r\n", b"hello", id="valid-013"),
    pytest.param(b"5 ; a = b\r\nhello\r\n0 ; a = b\r\n\r\n", b"hello", id="last-chunk-bws"),
    pytest.param(
        b'5 ; q = "x ; 0 \\" ; y" ; r\r\nhello\r\n6\t;\tq="a b"\r\n world\r\n0\r\n\r\n',
        b"hello world",
        id="quoted-values",
    ),
    pytest.param(b"A ; x\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="upper-hex"),
    pytest.param(b"a ; x\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="lower-hex"),
    pytest.param(
        b"5 ; a\r\nhello\r\n0 ; b\r\nX-Sum: 1 ; 2\r\nX-B: c\r\n\r\n", b"hello", id="trailers"
    ),
    # Chunk data that looks like a size line with BWS is data: never rewritten.
    pytest.param(b"7 ; a\r\n1 ; a\r\n\r\n0\r\n\r\n", b"1 ; a\r\n", id="data-like-a-line"),
    pytest.param(b"9\r\n0 ; a\r\n\r\n\r\n0\r\n\r\n", b"0 ; a\r\n\r\n", id="data-like-last-chunk"),
    pytest.param(
        b"".join(b"1 ; i=%d\r\n%d\r\n" % (i, i % 10) for i in range(40)) + b"0\r\n\r\n",
        b"".join(b"%d" % (i % 10) for i in range(40)),
        id="many-tiny-chunks",
    ),
    pytest.param(b"5;a\r\nhello\r\n0\r\n\r\n", b"hello", id="no-bws"),
]


@pytest.mark.parametrize(("chunks", "body"), GOOD)
def test_body_is_exact_and_the_next_request_is_its_own(chunks: bytes, body: bytes) -> None:
    # A pipelined request behind the body, in the same read, whose head and body hold
    # text a size-line rewrite would change if it ever touched them.
    after = b"POST /next HTTP/1.1\r\nHost: t\r\nX-A: 5 ; a\r\nContent-Length: 7\r\n\r\n5 ; a\r\n"
    wire = HEAD + chunks + after
    for pieces in splits(wire):
        assert served(parse(pieces)) == (["/up", "/next"], [body, b"5 ; a\r\n"]), pieces


def test_a_chunked_request_behind_a_chunked_request() -> None:
    wire = HEAD + b"2 ; a\r\nhi\r\n0 ; b\r\n\r\n" + HEAD + b"3 ; c\r\nyou\r\n0\r\n\r\n" + NEXT
    for pieces in splits(wire):
        assert served(parse(pieces)) == (["/up", "/up", "/next"], [b"hi", b"you", b""]), pieces


def llhttp_refusal(chunks: bytes) -> str:
    """What llhttp alone says to `HEAD + chunks`."""

    class Quiet:
        pass

    try:
        httptools.HttpRequestParser(Quiet()).feed_data(HEAD + chunks)
    except httptools.HttpParserError as error:
        return str(error)
    raise AssertionError(f"llhttp accepts {chunks!r}")


REFUSED = [
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5 x\r\nhello\r\n0\r\n\r\n",
    b"5;a \r\nhello\r\n0\r\n\r\n",
    b"5 ;a(b\r\nhello\r\n0\r\n\r\n",
    b"5 ;a=b c\r\nhello\r\n0\r\n\r\n",
    b"5 ;a\nhello\r\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",
    b" 5 ;a\r\nhello\r\n0\r\n\r\n",
    b"5 ;a\r\nhelloXX\r\n0\r\n\r\n",  # data longer than its size
    b"5 ;a\r\nhello\r\n0 \r\n\r\n",
    b"5 ;a\r\nhello\r\n0\r\nX-A : b\r\n\r\n",
    b"g ;a\r\nhello\r\n0\r\n\r\n",
    b"FFFFFFFFFFFFFFFFF ;a\r\nhello\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("chunks", REFUSED)
def test_what_the_grammar_does_not_allow_is_refused_as_llhttp_refuses_it(chunks: bytes) -> None:
    # BWS llhttp refuses in the line it fails on: the rest after our rewrite of it is the
    # same as the bytes llhttp would see with their BWS already gone.
    expected = llhttp_refusal(canonical_prefix(chunks))
    for pieces in splits(HEAD + chunks + NEXT):
        sink = parse(pieces)
        assert [(e.status, str(e), in_body) for e, in_body in sink.refused] == [
            (400, expected, True)
        ], pieces
        assert [environ["PATH_INFO"] for environ, *_ in sink.heads] == ["/up"]
        assert sink.ended == 0


def canonical_prefix(chunks: bytes) -> bytes:
    """`chunks` with the first size line made canonical, as llhttp receives it."""
    line, lf, rest = chunks.partition(b"\n")
    return canonical(line + lf) + rest


def test_a_size_line_held_past_the_limit_is_refused() -> None:
    limit = 64
    for line in (b"5 ; a" + b"b" * 100, b"5" + b" " * 100):
        sink = parse([HEAD, line[:40], line[40:]], limit=limit)
        assert [(e.status, str(e)) for e, _ in sink.refused] == [(400, "chunk-size line too long")]
    # Up to the limit it is held, whatever the reads.
    line = b"5 ; a=" + b"b" * (limit - 8) + b"\r\n"
    pieces = [HEAD] + [line[i : i + 1] for i in range(len(line))] + [b"hello\r\n0\r\n\r\n"]
    assert served(parse(pieces, limit=limit)) == (["/up"], [b"hello"])


def test_a_piece_without_bws_is_handed_on_as_it_is() -> None:
    lines = ChunkLines(100)
    data = b"5;a=b\r\nhello\r\n9\r\nabc"
    assert lines.feed(data) is data
    more = b"de ; 0\r\n"  # inside the data: passed whole, never searched
    assert lines.feed(more) is more
    assert lines.settled(14)


def test_the_framing_checks_disagree_with_another_framing() -> None:
    """What the parser checks llhttp against, after each piece and at the message's end: the
    body bytes it took, and where the body ended."""
    lines = ChunkLines(100)
    lines.feed(b"5 ; a\r\nhel")
    assert lines.settled(3)
    assert not lines.settled(5)  # llhttp took bytes we passed as a size line for data
    assert not lines.settled(0)
    assert not lines.finished(3)  # llhttp ended the body in the middle of a chunk
    lines.feed(b"lo\r\n0\r\n\r\n")
    assert lines.settled(5)
    assert lines.finished(5)
    assert not lines.finished(6)
    lines = ChunkLines(100)
    lines.feed(b"2\r\nhi\r\nx\r\n")  # a line without a size: llhttp must refuse it
    assert not lines.settled(2)
    assert not lines.finished(2)


# What the framing above relies on (chunk_lines.py's docstring): if an httptools upgrade
# changes any of these, `ChunkLines` must change with it.
@pytest.mark.parametrize(
    "chunks",
    [
        b'5;a="x\ny"\r\nhello\r\n0\r\n\r\n',  # LF in a quoted value
        b'5;a="x\ry"\r\nhello\r\n0\r\n\r\n',  # CR in a quoted value
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",  # CR not before LF
        b"5;a\nhello\r\n0\r\n\r\n",  # bare LF ends no line
        b"5\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",  # what `int` reads and llhttp does not
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5_0\r\nhello\r\n0\r\n\r\n",
        b"\t5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",  # data not followed by CRLF
        b"5\r\nhelloX\r\n0\r\n\r\n",
    ],
)
def test_llhttp_ends_a_size_line_at_its_first_lf_and_reads_its_size_alone(chunks: bytes) -> None:
    assert llhttp_refusal(chunks)


# -- random lines and cuts, against llhttp given the canonical line -------------------------------

BWS = st.sampled_from([b"", b"", b" ", b"\t", b" \t "])
VALUE = st.sampled_from([b"b", b"b", b'"q ; 0 s"', b'"a\\"b"', b'"x', b""])
EXTENSION = st.builds(
    lambda before, after, name, value: before + b";" + after + name + value,
    BWS,
    BWS,
    st.sampled_from([b"a", b"some", b"x-y", b"a", b"some", b""]),
    st.one_of(st.just(b""), st.builds(lambda a, b, v: a + b"=" + b + v, BWS, BWS, VALUE)),
)
# Size lines near the grammar (many of them valid), and any bytes at all.
LINE_BYTES = st.one_of(
    st.builds(
        lambda size, extensions, end: size + b"".join(extensions) + end,
        st.sampled_from([b"5", b"5", b"5", b"05", b"5 ", b" 5"]),
        st.lists(EXTENSION, max_size=3),
        st.sampled_from([b"", b"", b"", b"", b"", b"", b" ", b"\t", b" x", b"\n"]),
    ),
    st.lists(st.sampled_from(list(b'05aF ;\t=x"\\\r\n,')), max_size=14).map(bytes),
)


def llhttp_alone(wire: bytes) -> tuple[int, list[bytes]] | None:
    """llhttp without us: the messages it completes and their bodies, or None if it refuses."""

    class Record:
        def __init__(self) -> None:
            self.bodies: list[bytes] = []
            self.body = b""

        def on_body(self, data: bytes) -> None:
            self.body += data

        def on_message_complete(self) -> None:
            self.bodies.append(self.body)
            self.body = b""

    record = Record()
    try:
        httptools.HttpRequestParser(record).feed_data(wire)
    except httptools.HttpParserError:
        return None
    return len(record.bodies), record.bodies


@given(line=LINE_BYTES, cuts=st.lists(st.integers(min_value=1, max_value=120), max_size=4))
@settings(max_examples=400, deadline=None)
def test_a_random_size_line_is_served_as_llhttp_serves_its_canonical_form(
    line: bytes, cuts: list[int]
) -> None:
    chunks = line + b"\r\nhello\r\n0\r\n\r\n"
    expected = llhttp_alone(HEAD + canonical_prefix(chunks) + NEXT)
    wire = HEAD + chunks + NEXT
    pieces, at = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(wire[at:cut])
        at = cut
    sink = parse([*pieces, wire[at:]])
    if expected is None:
        assert [(e.status, in_body) for e, in_body in sink.refused] == [(400, True)]
        assert sink.ended == 0
    else:
        assert not sink.refused, sink.refused
        assert (sink.ended, sink.bodies) == expected
