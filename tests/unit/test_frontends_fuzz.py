"""The uwsgi parser and the PROXY preamble fed hostile bytes, without sockets (hypothesis).

Whatever arrives, however it is split: nothing raises out of `feed`, a request reaches the
sink only whole and well-formed, anything else is one refusal with a 4xx status, and the
outcome never depends on where the bytes were cut.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from tests.support.sink import Sink
from tests.support.uwsgi_client import packet, request_vars
from wsgiserve.environ import Environ, connection_environ, server_environ
from wsgiserve.errors import BadRequest, HTTPError, UnexpectedProxyHeader
from wsgiserve.parser import Parser, RequestParser, RequestSink
from wsgiserve.proxy import TrustedProxies
from wsgiserve.proxy_protocol import V2_SIGNATURE, ProxyPreamble, parse_v1, parse_v2
from wsgiserve.settings import Settings
from wsgiserve.uwsgi import UwsgiParser, vars_environ

SETTINGS = Settings()
BASE = connection_environ(
    server_environ("http", False, None), ("127.0.0.1", 3031), ("127.0.0.1", 40000)
)
HEAD_LIMIT = 65536
EXAMPLES = settings(max_examples=300, deadline=None)


def uwsgi(sink: RequestSink, environ_base: Environ) -> Parser:
    return UwsgiParser(sink, SETTINGS, environ_base, True, HEAD_LIMIT)


def http(sink: RequestSink, environ_base: Environ) -> Parser:
    return RequestParser(sink, SETTINGS, environ_base, TrustedProxies.parse(""), HEAD_LIMIT)


def preamble(sink: RequestSink, inner: Any = uwsgi, mode: str = "auto") -> Parser:
    return ProxyPreamble(sink, BASE, inner, mode, True)


class Connection(Sink):
    """A sink that, like the connection, feeds the parser `use_parser` names from then on."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.parser: Parser = make(self)

    def use_parser(self, parser: Parser) -> None:
        super().use_parser(parser)
        self.parser = parser

    def feed(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            if self.parser.stopped:
                break
            assert self.parser.feed(piece) == b""

    def outcome(self) -> tuple[Any, ...]:
        # The request id is made fresh for every request; the rest must be the same.
        heads = [
            (sorted((k, repr(v)) for k, v in environ.items() if k != "wsgiserve.request_id"), rest)
            for environ, *rest in self.heads
        ]
        # The HTTP parser tells 501 (unknown method) from 400 by the piece that failed, so
        # "*" then "GET / HTTP/1.1..." gets 400 and the same bytes whole get 501: both are a
        # refusal of a malformed request line; that difference belongs to parser.py.
        refused = [
            (400 if error.status == 501 else error.status, in_body)
            for error, in_body in self.refused
        ]
        return repr(heads), self.body, self.ended, refused


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def check_outcome(conn: Connection) -> None:
    assert len(conn.refused) <= 1
    for error, _ in conn.refused:
        # 501: an HTTP request line with a well-formed but unknown method (RFC 9110 §9.1).
        assert 400 <= error.status < 500 or error.status == 501, error
    if conn.refused and not conn.refused[0][1]:
        assert not conn.heads  # refused before the head: the app never sees it
    for environ, *_ in conn.heads:
        assert environ["REQUEST_METHOD"]
        assert isinstance(environ["PATH_INFO"], str)
        assert environ["SERVER_PORT"]
        assert not any(key.startswith("UWSGI_") for key in environ)


# -- uwsgi packets ------------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "REQUEST_METHOD",
        "REQUEST_URI",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_LENGTH",
        "SCRIPT_NAME",
        "HTTPS",
        "SERVER_PORT",
        "HTTP_HOST",
        "HTTP_COOKIE",
        "HTTP_CONTENT_LENGTH",
        "HTTP_TRANSFER_ENCODING",
        "UWSGI_FILE",
        "UWSGI_SCHEME",
        "wsgi.input",
        "",
    ]
)
VALUES = st.one_of(
    st.sampled_from(["GET", "POST", "", "/", "/a/b", "5", "-1", "1e3", " 5", "on", "0" * 20]),
    st.text(st.characters(max_codepoint=255), max_size=40),
)


@st.composite
def uwsgi_packets(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(KEYS, VALUES), max_size=12))
    if draw(st.booleans()):
        pairs = [*request_vars("POST", "/p").items(), *pairs]
    body = draw(st.binary(max_size=40))
    data = packet(pairs, body, modifier1=draw(st.sampled_from([0, 0, 30, 5, 255])))
    if draw(st.booleans()):  # damage it
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at + draw(st.integers(0, 4)) :]
    return data


@EXAMPLES
@given(uwsgi_packets(), st.lists(st.integers(0, 10_000), max_size=8))
def test_uwsgi_packets_never_raise_and_splits_never_matter(data: bytes, points: list[int]) -> None:
    whole = Connection(lambda sink: uwsgi(sink, BASE))
    whole.feed([data])
    check_outcome(whole)
    split = Connection(lambda sink: uwsgi(sink, BASE))
    split.feed(cut(data, points))
    assert split.outcome() == whole.outcome()


@EXAMPLES
@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_bytes_on_a_uwsgi_listener(data: bytes, points: list[int]) -> None:
    conn = Connection(lambda sink: uwsgi(sink, BASE))
    conn.feed(cut(data, points))
    check_outcome(conn)


@EXAMPLES
@given(st.lists(st.tuples(KEYS, VALUES), max_size=16))
def test_vars_environ_refuses_or_builds_a_pep3333_environ(pairs: list[tuple[str, str]]) -> None:
    try:
        environ = vars_environ(BASE, pairs, SETTINGS)
    except HTTPError as error:
        status = error.status
        assert 400 <= status < 500
        return
    assert environ["REQUEST_METHOD"]
    assert environ["SERVER_PORT"]
    assert "wsgi.input" not in environ or environ["wsgi.input"] is BASE.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    assert length is None or length.isdigit()
    assert isinstance(environ["PATH_INFO"], str)
    assert not environ["SCRIPT_NAME"].endswith("/")
    assert environ["SCRIPT_NAME"] == "" or environ["SCRIPT_NAME"].startswith("/")  # PEP 3333


# -- PROXY headers ---------------------------------------------------------------------------


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


@st.composite
def proxy_headers(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["v1", "v2", "v2-tlv", "junk"]))
    if kind == "v1":
        parts = draw(
            st.lists(
                st.sampled_from(
                    [
                        "PROXY",
                        "TCP4",
                        "TCP6",
                        "UNKNOWN",
                        "1.2.3.4",
                        "::1",
                        "65535",
                        "70000",
                        "80",
                        "",
                        "-1",
                        "+1",
                        "1_0",
                        "fe80::1%eth0",
                        "01.2.3.4",
                    ]
                ),
                max_size=7,
            )
        )
        return " ".join(parts).encode() + draw(st.sampled_from([b"\r\n", b"\n", b""]))
    if kind in ("v2", "v2-tlv"):
        family = draw(st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x13, 0xFF]))
        body = draw(st.binary(min_size=0, max_size=60))
        if kind == "v2-tlv":
            addresses = ipaddress.ip_address("192.0.2.1").packed * 2 + b"\x10\x00\x00\x50"
            body = addresses + draw(st.binary(max_size=80))
        return v2(draw(st.integers(0, 15)), family, body)
    return draw(st.binary(max_size=120))


@EXAMPLES
@given(
    proxy_headers(),
    st.sampled_from(["auto", "v1", "v2"]),
    st.sampled_from(["uwsgi", "http"]),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_proxy_headers_never_raise_and_splits_never_matter(
    header: bytes, mode: str, inner: str, points: list[int]
) -> None:
    make = uwsgi if inner == "uwsgi" else http
    request = (
        packet(request_vars("GET", "/x"))
        if inner == "uwsgi"
        else b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    data = header + request
    whole = Connection(lambda sink: preamble(sink, make, mode))
    whole.feed([data])
    check_outcome(whole)
    split = Connection(lambda sink: preamble(sink, make, mode))
    split.feed(cut(data, points))
    assert split.outcome() == whole.outcome()


@EXAMPLES
@given(st.binary(max_size=120))
def test_parse_v1_raises_only_bad_request(line: bytes) -> None:
    try:
        client = parse_v1(b"PROXY " + line)
    except BadRequest:
        return
    if client is not None:
        address, port = client
        ipaddress.ip_address(address)
        assert 0 <= port <= 65535


@EXAMPLES
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64))
def test_parse_v2_raises_only_bad_request(command: int, family: int, body: bytes) -> None:
    header = V2_SIGNATURE + bytes([command, family]) + struct.pack(">H", len(body)) + body
    try:
        client = parse_v2(header)
    except BadRequest:
        return
    if client is not None:
        address, port = client
        ipaddress.ip_address(address)
        assert 0 <= port <= 65535


@pytest.mark.parametrize("mode", ["auto", "v1"])
def test_v1_header_then_uwsgi_at_every_split(mode: str) -> None:
    variables = request_vars("POST", "/every", 3)
    del variables["REMOTE_ADDR"]
    data = b"PROXY TCP4 203.0.113.9 10.0.0.1 4000 80\r\n" + packet(variables, b"abc")
    whole = Connection(lambda sink: preamble(sink, uwsgi, mode))
    whole.feed([data])
    [(environ, *_)] = whole.heads
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert whole.body == b"abc"
    for at in range(1, len(data)):
        split = Connection(lambda sink: preamble(sink, uwsgi, mode))
        split.feed([data[:at], data[at:]])
        assert split.outcome() == whole.outcome(), at


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 80",  # int() takes a sign
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1_0 80",  # ... and digit separators
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \t80 80",  # ... and surrounding whitespace
        b"PROXY TCP4 1.2.3.4 5.6.7.8 080 80",  # the spec forbids leading zeros
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 99999",  # the destination port is a port too
        b"PROXY TCP4 1.2.3.4 ::1 80 80",  # both addresses are of the named family
        b"PROXY TCP6 fe80::1%eth0 ::1 80 80",  # a scope id would end up in REMOTE_ADDR
    ],
)
def test_v1_fields_are_read_as_the_specification_writes_them(line: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_v1(line)


@pytest.mark.parametrize(
    ("line", "client"),
    [
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 0 65535", ("192.0.2.1", 0)),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 443", ("2001:db8::1", 65535)),
    ],
)
def test_v1_limits_are_accepted(line: bytes, client: tuple[str, int]) -> None:
    assert parse_v1(line) == client


@pytest.mark.parametrize("family", [0x01, 0x10, 0x13, 0x23, 0x33, 0x41, 0xFF])
def test_v2_unassigned_family_or_transport_is_refused(family: int) -> None:
    """The specification: other values "must be rejected as invalid by receivers"."""
    addresses = ipaddress.ip_address("192.0.2.1").packed * 2 + b"\x10\x00\x00\x50"
    with pytest.raises(BadRequest):
        parse_v2(v2(1, family, addresses))


@pytest.mark.parametrize("family", [0x00, 0x31, 0x32])
def test_v2_families_without_an_ip_client_keep_the_connections_address(family: int) -> None:
    assert parse_v2(v2(1, family, b"\x00" * 216)) is None


def test_v2_local_ignores_the_family() -> None:
    assert parse_v2(v2(0, 0xFF, b"")) is None


V1_LINE = b"PROXY TCP4 203.0.113.9 10.0.0.1 4000 80\r\n"
V2_TCP4 = v2(1, 0x11, ipaddress.ip_address("192.0.2.1").packed * 2 + b"\x10\x00\x00\x50")


@pytest.mark.parametrize("inner", ["uwsgi", "http"])
@pytest.mark.parametrize("header", [V1_LINE, V2_TCP4], ids=["v1", "v2"])
@pytest.mark.parametrize("at", [0, 1, 3, 5, 9])
def test_an_unexpected_proxy_header_is_refused_by_name(inner: str, header: bytes, at: int) -> None:
    make = uwsgi if inner == "uwsgi" else http
    request = (
        packet(request_vars("GET", "/x"))
        if inner == "uwsgi"
        else b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    data = header + request
    conn = Connection(lambda sink: make(sink, BASE))
    conn.feed([data[:at], data[at:]] if at else [data])
    [(error, _)] = conn.refused
    assert isinstance(error, UnexpectedProxyHeader)
    assert "--proxy-protocol" in error.hint
    assert not conn.heads


@pytest.mark.parametrize(
    ("script_name", "expected"),
    [
        ("/app", ("/app", "/x")),
        ("/app/", ("/app", "/x")),
        ("/", ("", "/app/x")),
        ("app", ("", "/app/x")),  # not a path: not believed (PEP 3333 wants a leading /)
        ("/a/../app", ("", "/app/x")),  # dot segments: not believed
        ("/ap%70", ("/app", "/x")),  # percent-encoded, as a proxy may send it
    ],
)
def test_a_web_servers_script_name_mounts_the_app_as_root_path_does(
    script_name: str, expected: tuple[str, str]
) -> None:
    pairs = [*request_vars("GET", "/app/x").items(), ("SCRIPT_NAME", script_name)]
    environ = vars_environ(BASE, pairs, SETTINGS)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == expected
