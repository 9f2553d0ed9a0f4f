"""--max-connections: past it a worker stops accepting, and accepts again as connections close."""

from __future__ import annotations

import logging
import resource
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsgiserve

from ..support.polling import wait_until
from ..support.rawhttp import parse_responses

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def ask(sock: socket.socket, timeout: float) -> bytes:
    """Send one request; return what arrives within `timeout` (b"" if nothing)."""
    sock.sendall(REQUEST)
    sock.settimeout(timeout)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""


@pytest.fixture
def limited() -> Iterator[wsgiserve.BackgroundServer]:
    with wsgiserve.background_server(hello, threads=2, max_connections=3) as server:
        yield server


def test_connections_past_the_limit_wait_until_one_closes(
    limited: wsgiserve.BackgroundServer,
) -> None:
    held = [socket.create_connection(limited.address, timeout=5) for _ in range(3)]
    try:
        for sock in held:
            assert parse_responses(ask(sock, 5), eof=False)[0].status == 200
        extra = socket.create_connection(limited.address, timeout=5)  # the kernel's backlog
        try:
            assert ask(extra, 0.5) == b"", "a fourth connection was served past the limit"
            held.pop().close()
            extra.settimeout(5)
            data = extra.recv(65536)  # served once a slot frees
            assert parse_responses(data, eof=False)[0].status == 200
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()


def test_the_default_limit_follows_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wsgiserve.server.default_max_connections()
    assert 16 <= limit < soft


def test_reaching_the_limit_again_and_again_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 163 warnings in 60 s were seen on a server at its limit: one line, with a count.
    caplog.set_level(logging.DEBUG, logger="wsgiserve.error")
    with wsgiserve.background_server(hello, threads=2, max_connections=2) as server:
        for _ in range(5):
            held = [socket.create_connection(server.address, timeout=5) for _ in range(2)]
            for sock in held:
                assert parse_responses(ask(sock, 5), eof=False)[0].status == 200
            wait_until(lambda: not server.server.accepting, "the limit to be reached")
            for sock in held:
                sock.close()
            wait_until(lambda: server.server.accepting, "accepting again")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "--max-connections" in warnings[0].getMessage()
