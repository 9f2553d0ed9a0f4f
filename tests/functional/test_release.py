"""Every request gives back what it took — its pool slot, the iterable's `close()`, its
connection — whatever the client does (a reset at any moment) and whatever the app raises,
`BaseException` included (ARCHITECTURE rule 3)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tests.support.polling import wait_until
from tests.support.rawhttp import exchange, fresh_statuses

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends a TCP reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def answered(address: tuple[str, int]) -> list[int]:
    return fresh_statuses(address, GET)


def pool_settles(server: Any) -> None:
    wait_until(lambda: server.server.pool.in_flight == 0, "the pool's in-flight count to reach 0")


class HeldApp:
    """Answers `/hold` only once the test releases it; everything else at once."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.closed = 0
        self.lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/hold":
            self.started.release()
            self.release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        if self.body == "list":
            with self.lock:
                self.closed += 1  # nothing to close: counted as if
            return [b"ok"]
        return self._body()

    def _body(self) -> Iterator[bytes]:
        try:
            yield b"ok"
        finally:
            with self.lock:
                self.closed += 1


@pytest.mark.parametrize("body", ["list", "iterable"])
def test_resets_while_the_app_runs_give_their_slots_back(serve: Any, body: str) -> None:
    """A reset during the app used to leak a slot for good: `--limit-concurrency 2` then
    answered 503 to everyone after two resets."""
    app = HeldApp(body)
    server = serve(app, threads=2, limit_concurrency=2)
    for _ in range(4):
        app.release.clear()
        client = socket.create_connection(server.address)
        client.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        assert app.started.acquire(timeout=10)
        reset(client)
        wait_until(lambda: not server.server.connections, "the server to see the reset")
        app.release.set()
        pool_settles(server)
    assert answered(server.address) == [200]
    pool_settles(server)
    assert app.closed == 5


class Boom(BaseException):
    """Not an Exception: escapes every `except Exception`."""


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, Boom])
@pytest.mark.parametrize("where", ["call", "iteration"])
def test_a_base_exception_from_the_app_is_a_500(serve: Any, error: type, where: str) -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise error()

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/fine":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        if where == "call":
            raise error()
        start_response("200 OK", [])
        return Body()

    server = serve(app, threads=1)
    assert answered(server.address) == [500]
    if where == "iteration":
        assert closed.wait(5), "the iterable's close() was not called"
    pool_settles(server)
    # The only thread survived: the next request is served.
    assert fresh_statuses(server.address, b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n", b"ok") == [200]


def test_a_base_exception_after_the_head_aborts_the_stream(serve: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise SystemExit(3)

    server = serve(app, threads=1)
    result = exchange(server.address, GET)
    assert result.closed
    assert b"partial" in result.data
    assert not result.data.endswith(b"0\r\n\r\n"), "an aborted stream must not look complete"
    pool_settles(server)
