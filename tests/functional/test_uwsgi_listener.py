"""A uwsgi listener on a live server, spoken to with raw uwsgi packets.

What nginx's uwsgi_pass and Apache's mod_proxy_uwsgi send: one packet per connection,
the answer is plain HTTP read to the close. The same app path as HTTP: bodies stream
through `wsgi.input`, responses through the same framing, refusals before the app.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsgiserve
from tests.support.rawhttp import exchange
from tests.support.uwsgi_client import packet, request_vars

MIB = 1024 * 1024


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    path = environ["PATH_INFO"]
    if path == "/upload":
        digest = hashlib.sha256()
        size = 0
        while chunk := environ["wsgi.input"].read(65536):
            digest.update(chunk)
            size += len(chunk)
        body = f"{size} {digest.hexdigest()}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        yield body
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])  # no length: to the close
        for n in range(5):
            yield b"part %d\n" % n
    else:
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "wsgi.url_scheme")
        body = " ".join(str(environ.get(key)) for key in keys).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        yield body


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.fixture(scope="module")
def server() -> Iterator[wsgiserve.BackgroundServer]:
    with wsgiserve.background_server(app, bind=["uwsgi://127.0.0.1:0"]) as running:
        yield running


def test_listener_url_names_the_protocol(server: wsgiserve.BackgroundServer) -> None:
    assert server.url.startswith("uwsgi://127.0.0.1:")


def test_get_answered_in_http_and_closed(server: wsgiserve.BackgroundServer) -> None:
    result = exchange(server.address, packet(request_vars("GET", "/hello?x=1")))
    assert result.closed
    assert not result.reset
    status, headers, body = split_response(result.data)
    assert status == "HTTP/1.1 200 OK"
    assert headers["connection"] == "close"
    assert body == b"GET /hello x=1 192.0.2.7 http"  # the client nginx saw, not nginx


def test_upload_streams_through_wsgi_input(server: wsgiserve.BackgroundServer) -> None:
    body = bytes(range(256)) * (5 * MIB // 256)
    data = packet(request_vars("POST", "/upload", len(body)), body)
    pieces = [data[at : at + 100_000] for at in range(0, len(data), 100_000)]
    result = exchange(server.address, pieces, idle_timeout=10)
    status, _, answer = split_response(result.data)
    assert status == "HTTP/1.1 200 OK"
    assert answer == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def test_streamed_response_is_delimited_by_the_close(server: wsgiserve.BackgroundServer) -> None:
    result = exchange(server.address, packet(request_vars("GET", "/stream")))
    status, headers, body = split_response(result.data)
    assert status == "HTTP/1.1 200 OK"
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers
    assert body == b"".join(b"part %d\n" % n for n in range(5))
    assert result.closed


def test_head_gets_no_body(server: wsgiserve.BackgroundServer) -> None:
    result = exchange(server.address, packet(request_vars("HEAD", "/x")))
    status, headers, body = split_response(result.data)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-length"]
    assert body == b""


def test_malformed_packet_gets_400_and_the_app_never_runs(
    server: wsgiserve.BackgroundServer,
) -> None:
    result = exchange(server.address, packet(request_vars(), modifier1=7))
    assert split_response(result.data)[0] == "HTTP/1.1 400 Bad Request"
    assert result.closed


def test_peer_outside_the_allow_list_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="wsgiserve.error"),
        wsgiserve.background_server(
            app, bind=["uwsgi://127.0.0.1:0"], uwsgi_allow_ips="10.1.2.3"
        ) as running,
    ):
        result = exchange(running.address, packet(request_vars()))
    assert split_response(result.data)[0] == "HTTP/1.1 403 Forbidden"
    assert any(
        "--uwsgi-allow-ips" in record.getMessage() and "127.0.0.1" in record.getMessage()
        for record in caplog.records
    )


def test_protocol_setting_makes_every_bind_uwsgi() -> None:
    with wsgiserve.background_server(app, protocol="uwsgi") as running:
        assert running.url.startswith("uwsgi://")
        result = exchange(running.address, packet(request_vars("GET", "/p")))
    assert split_response(result.data)[2].startswith(b"GET /p ")


def test_unix_socket_peer_is_always_allowed(tmp_path: Any) -> None:
    path = tmp_path / "uwsgi.sock"
    with wsgiserve.background_server(
        app, bind=[f"uwsgi:unix:{path}"], uwsgi_allow_ips=""
    ) as running:
        assert running.url == f"uwsgi:unix:{path}"
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(path))
            client.sendall(packet(request_vars("GET", "/u")))
            data = b""
            while chunk := client.recv(65536):
                data += chunk
    assert split_response(data)[0] == "HTTP/1.1 200 OK"
    assert not path.exists()  # removed with the server


def test_uwsgi_packet_on_an_http_listener_is_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="wsgiserve.error"),
        wsgiserve.background_server(app) as running,
    ):
        result = exchange(running.address, packet(request_vars()))
    assert split_response(result.data)[0] == "HTTP/1.1 400 Bad Request"
    messages = [record.getMessage() for record in caplog.records]
    assert any("uwsgi packet" in m and "-b uwsgi://" in m for m in messages), messages
