"""A live server behind a PROXY protocol balancer (HAProxy, AWS NLB, stunnel), raw bytes.

The client address comes from the header (v1 or v2) on every request of the connection,
forwarding headers from the client behind it are not believed, a peer outside
--proxy-allow-from is refused with a log line that names the fix, and a connection
without a header is served as itself.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsgiserve
from tests.support.rawhttp import exchange, parse_responses
from wsgiserve.proxy_protocol import V2_SIGNATURE


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']} {environ['wsgi.url_scheme']}"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body.encode()]


def get(path: str = "/", extra: bytes = b"", last: bool = True) -> bytes:
    """A GET; the last request of a connection asks the server to close it."""
    close = b"Connection: close\r\n" if last else b""
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n".encode() + extra + close + b"\r\n"


def bodies(raw: bytes, count: int) -> list[bytes]:
    responses = parse_responses(raw, ("GET",) * count)
    assert not responses.error, raw
    return [response.body for response in responses]


@pytest.fixture(scope="module")
def server() -> Iterator[wsgiserve.BackgroundServer]:
    with wsgiserve.background_server(app, proxy_protocol="auto") as running:
        yield running


def test_v1_client_address_holds_for_every_request_of_the_connection(
    server: wsgiserve.BackgroundServer,
) -> None:
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"
    result = exchange(server.address, header + get(last=False) + get("/again"))
    assert bodies(result.data, 2) == [b"203.0.113.9 5555 http"] * 2


def test_v2_in_pieces(server: wsgiserve.BackgroundServer) -> None:
    addresses = (
        ipaddress.ip_address("198.51.100.4").packed
        + ipaddress.ip_address("127.0.0.1").packed
        + struct.pack(">HH", 61000, 8000)
    )
    header = V2_SIGNATURE + b"\x21\x11" + struct.pack(">H", len(addresses)) + addresses
    data = header + get()
    result = exchange(server.address, [data[:5], data[5:14], data[14:20], data[20:]])
    assert bodies(result.data, 1) == [b"198.51.100.4 61000 http"]


def test_forwarding_headers_of_the_client_behind_are_not_believed(
    server: wsgiserve.BackgroundServer,
) -> None:
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"
    spoof = b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
    result = exchange(server.address, header + get(extra=spoof))
    assert bodies(result.data, 1) == [b"203.0.113.9 5555 http"]


def test_connection_without_a_header_is_served_as_itself(
    server: wsgiserve.BackgroundServer,
) -> None:
    result = exchange(server.address, get())
    [body] = bodies(result.data, 1)
    assert body.startswith(b"127.0.0.1 ")


def test_malformed_header_is_400(server: wsgiserve.BackgroundServer) -> None:
    result = exchange(server.address, b"PROXY TCP4 nonsense\r\n" + get())
    assert result.data.startswith(b"HTTP/1.1 400 ")
    assert result.closed


def test_header_from_a_peer_not_allowed_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="wsgiserve.error"),
        wsgiserve.background_server(
            app, proxy_protocol="v1", proxy_allow_ips="10.0.0.0/8"
        ) as running,
    ):
        result = exchange(running.address, b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\r\n" + get())
        plain = exchange(running.address, get())
    assert result.data.startswith(b"HTTP/1.1 403 ")
    assert any("--proxy-allow-from" in record.getMessage() for record in caplog.records)
    assert bodies(plain.data, 1)[0].startswith(b"127.0.0.1 ")
