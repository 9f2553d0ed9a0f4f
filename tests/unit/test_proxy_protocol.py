"""The PROXY protocol preamble without sockets: headers in, the real parser's template out."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from tests.support.sink import Sink
from wsgiserve.environ import Environ
from wsgiserve.errors import BadRequest
from wsgiserve.parser import RequestSink
from wsgiserve.proxy_protocol import V2_SIGNATURE, ProxyPreamble, parse_v1, parse_v2

BASE: Environ = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "SERVER_PORT": "8000"}


class Inner:
    """The real parser the preamble makes: records its template and what it is fed."""

    def __init__(self, sink: RequestSink, environ_base: Environ) -> None:
        self.environ_base = environ_base
        self.fed = b""
        self.stopped = False
        self.in_head = False
        self.pause_after_head = False
        self.head_method = False

    def feed(self, data: bytes) -> bytes:
        self.fed += data
        self.in_head = True
        return b""

    def stop(self) -> None:
        self.stopped = True

    def partial_environ(self) -> Environ:
        return self.environ_base


def v2(command: int = 1, family: int = 0x11, addresses: bytes = b"", tlvs: bytes = b"") -> bytes:
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


def v2_tcp4(source: str, port: int) -> bytes:
    addresses = (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address("10.0.0.1").packed
        + struct.pack(">HH", port, 443)
    )
    return v2(addresses=addresses)


def run(
    data: bytes, mode: str = "auto", allowed: bool = True, step: int = 0
) -> tuple[Sink, ProxyPreamble]:
    sink = Sink()
    preamble = ProxyPreamble(sink, BASE, Inner, mode, allowed)
    pieces = [data[at : at + step] for at in range(0, len(data), step)] if step else [data]
    for piece in pieces:
        parser = sink.parsers[-1] if sink.parsers else preamble
        parser.feed(piece)
    return sink, preamble


def inner(sink: Sink) -> Inner:
    [parser] = sink.parsers
    assert isinstance(parser, Inner)
    return parser


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("step", [0, 1, 5])
def test_v1_sets_the_client_and_hands_over_the_rest(step: int) -> None:
    sink, _ = run(b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n" + REQUEST, step=step)
    parser = inner(sink)
    assert parser.environ_base["REMOTE_ADDR"] == "203.0.113.9"
    assert parser.environ_base["REMOTE_PORT"] == "5555"
    assert parser.environ_base["SERVER_PORT"] == "8000"  # the server's own, unchanged
    assert parser.fed == REQUEST
    assert BASE["REMOTE_ADDR"] == "127.0.0.1"  # the template is copied, not changed


def test_v1_ipv6_and_unknown() -> None:
    assert parse_v1(b"PROXY TCP6 2001:db8::7 ::1 1 2") == ("2001:db8::7", 1)
    assert parse_v1(b"PROXY UNKNOWN") is None
    assert parse_v1(b"PROXY UNKNOWN ffff::1 ::1 1 2") is None


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.9 10.0.0.1 5555",  # a field missing
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2",  # family and address disagree
        b"PROXY TCP4 203.0.113.9 10.0.0.1 70000 2",  # no such port
        b"PROXY UDP4 203.0.113.9 10.0.0.1 1 2",
        b"PROXY TCP4 203.0.113.9  10.0.0.1 1 2",  # two spaces
        b"PROXY TCP4 evil 10.0.0.1 1 2",
    ],
)
def test_malformed_v1_is_refused(line: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_v1(line)
    sink, preamble = run(line + b"\r\n" + REQUEST)
    assert [error.status for error, _ in sink.refused] == [400]
    assert preamble.stopped
    assert not sink.parsers


def test_v1_line_without_its_end_is_refused_at_107_bytes() -> None:
    sink, _ = run(b"PROXY TCP4 " + b"1" * 95)  # 106 bytes: still waiting
    assert not sink.refused
    sink, _ = run(b"PROXY TCP4 " + b"1" * 96)
    assert [error.status for error, _ in sink.refused] == [400]


@pytest.mark.parametrize("step", [0, 1, 7])
def test_v2_sets_the_client(step: int) -> None:
    sink, _ = run(v2_tcp4("198.51.100.4", 61000) + REQUEST, step=step)
    parser = inner(sink)
    assert parser.environ_base["REMOTE_ADDR"] == "198.51.100.4"
    assert parser.environ_base["REMOTE_PORT"] == "61000"
    assert parser.fed == REQUEST


def test_v2_ipv6_with_tlvs_skipped() -> None:
    addresses = (
        ipaddress.ip_address("2001:db8::9").packed
        + ipaddress.ip_address("::1").packed
        + struct.pack(">HH", 443, 80)
    )
    header = v2(family=0x21, addresses=addresses, tlvs=b"\x04\x00\x03abc")
    assert parse_v2(header) == ("2001:db8::9", 443)


def test_v2_local_keeps_the_connection_address() -> None:
    sink, _ = run(v2(command=0) + REQUEST)
    assert inner(sink).environ_base is BASE


@pytest.mark.parametrize(
    "header",
    [
        V2_SIGNATURE + bytes([0x11, 0x11]) + b"\x00\x00",  # version 1 in a v2 header
        V2_SIGNATURE + bytes([0x23, 0x11]) + b"\x00\x00",  # command 3
        v2(addresses=b"\x01\x02\x03"),  # too short for two IPv4 addresses and ports
        V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", 1025),  # too long
    ],
)
def test_malformed_v2_is_refused(header: bytes) -> None:
    sink, _ = run(header + b"\x00" * 1100)
    assert [error.status for error, _ in sink.refused] == [400]


def test_no_header_goes_straight_to_the_real_parser() -> None:
    for data in (REQUEST, b"\r\n" + REQUEST, b"PROPFIND / HTTP/1.1\r\n\r\n"):
        sink, _ = run(data, step=1)
        parser = inner(sink)
        assert parser.environ_base is BASE
        assert parser.fed == data


def test_mode_v1_does_not_read_v2_and_v2_does_not_read_v1() -> None:
    sink, _ = run(v2_tcp4("198.51.100.4", 1) + REQUEST, mode="v1")
    assert inner(sink).environ_base is BASE  # not read: the real parser gets it and refuses
    sink, _ = run(b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n" + REQUEST, mode="v2")
    assert inner(sink).environ_base is BASE


def test_header_from_a_peer_not_allowed_is_403() -> None:
    sink, _ = run(b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n" + REQUEST, allowed=False)
    assert [error.status for error, _ in sink.refused] == [403]
    assert not sink.parsers
    # The same peer without a header is served as itself.
    sink, _ = run(REQUEST, allowed=False)
    assert inner(sink).environ_base is BASE


def test_partial_header_counts_as_a_head_in_progress() -> None:
    _, preamble = run(b"PROXY TCP4 203.")
    assert preamble.in_head
    assert not preamble.stopped
