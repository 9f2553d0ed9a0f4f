"""A finished connection is freed by reference counting, never left to the cyclic
garbage collector: under `Connection: close` traffic the collector's passes over
left-behind connections took ~5% of a worker's CPU."""

from __future__ import annotations

import gc
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsgiserve
from tests.support.polling import wait_until

GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _closed_by_request(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(GET_CLOSE)
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


def _refused(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 400")


def _reset_mid_head(address: tuple[str, int]) -> None:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _kept_alive(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def _ours(objects: list[Any]) -> list[str]:
    names = (type(item).__module__ + "." + type(item).__qualname__ for item in objects)
    return sorted({name for name in names if name.startswith(("wsgiserve.", "httptools."))})


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """gc.garbage while the collector keeps what it finds instead of freeing it."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize(
    "client", [_closed_by_request, _refused, _reset_mid_head, _kept_alive], ids=lambda f: f.__name__
)
def test_a_finished_connection_leaves_no_cycle(
    client: Callable[[tuple[str, int]], None], saved_garbage: list[Any]
) -> None:
    with wsgiserve.background_server(hello, threads=2) as server:
        for _ in range(50):
            client(server.address)
        wait_until(lambda: not server.server.connections, "every connection closed")
        gc.collect()
        assert _ours(saved_garbage) == []
