"""What the client and the logs see when things go wrong: malformed requests, app errors
before and after the response began, vanishing clients, a saturated pool, and shutdown
with a request in flight.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import wsgiserve
from tests.support.rawhttp import exchange, parse_responses

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Serve = Callable[..., Any]
Environ = dict[str, Any]
StartResponse = Callable[..., Any]

TEXT = ("Content-Type", "text/plain")
SECRET = "secret-detail-5f3a"


def get(path: str = "/", version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode("latin-1")


def responses_complete(count: int) -> Callable[[bytes], bool]:
    return lambda data: len(parse_responses(data, eof=False)) >= count


class Calls:
    """Counts app calls from worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: list[str] = []

    def add(self, environ: Environ) -> None:
        with self.lock:
            self.paths.append(environ["PATH_INFO"])


def ok_app(calls: Calls) -> App:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        calls.add(environ)
        start_response("200 OK", [TEXT, ("Content-Length", "2")])
        return [b"ok"]

    return app


def assert_serves(server: Any) -> None:
    """A fresh connection still gets a complete answer."""
    result = exchange(server.address, get("/probe"), until=responses_complete(1))
    assert parse_responses(result.data, eof=False).statuses() == [200]


# -- parser errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n folded: value\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
    ids=repr,
)
def test_malformed_request_gets_400_and_close_without_calling_the_app(
    serve: Serve, data: bytes
) -> None:
    calls = Calls()
    server = serve(ok_app(calls))
    result = exchange(server.address, data, idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert responses.statuses() == [400]
    assert responses[0].header("connection") == b"close"
    assert calls.paths == []
    assert_serves(server)


def test_requests_before_a_malformed_one_are_answered_first(serve: Serve) -> None:
    calls = Calls()
    server = serve(ok_app(calls))
    data = get("/first") + b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n" + get("/never")
    result = exchange(server.address, data, idle_timeout=3)
    assert result.closed
    assert parse_responses(result.data).statuses() == [200, 400]
    assert calls.paths == ["/first"]


# -- app errors ------------------------------------------------------------------------------


def test_app_error_before_the_head_is_a_plain_500_with_the_traceback_logged(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/fail":
            raise ValueError(SECRET)
        start_response("200 OK", [TEXT, ("Content-Length", "2")])
        return [b"ok"]

    server = serve(wrap(app))
    result = exchange(server.address, get("/fail") + get("/ok"), until=responses_complete(2))
    failed, after = parse_responses(result.data, eof=False)
    assert failed.status == 500
    assert (failed.header("content-type") or b"").startswith(b"text/plain")
    for leak in (b"Traceback", SECRET.encode(), b"ValueError", b"File "):
        assert leak not in result.data
    assert (after.status, after.body) == (200, b"ok")  # the connection is still usable
    errors = [r for r in caplog.records if r.name == "wsgiserve.error" and r.exc_info]
    assert any(SECRET in str(r.exc_info[1]) for r in errors if r.exc_info)
    assert any("/fail" in r.getMessage() for r in errors)


@pytest.mark.parametrize("declared", [True, False])
def test_app_error_after_the_body_began_aborts_the_connection(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture, declared: bool
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        headers = [TEXT, ("Content-Length", "1000")] if declared else [TEXT]
        start_response("200 OK", headers)

        def body() -> Iterator[bytes]:
            yield b"x" * 100
            raise ValueError(SECRET)

        return body()

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert list(responses) == []  # never a complete response
    assert responses.truncated
    assert SECRET.encode() not in result.data
    assert b"500" not in result.data
    assert any(r.exc_info and SECRET in str(r.exc_info[1]) for r in caplog.records)


# -- vanishing clients --------------------------------------------------------------------------


def test_client_gone_mid_request_body_leaves_the_server_serving(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="wsgiserve.error")
    reading = threading.Event()
    outcome: list[str] = []
    done = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/probe":
            start_response("200 OK", [TEXT, ("Content-Length", "2")])
            return [b"ok"]
        stream = environ["wsgi.input"]
        got = 0
        try:
            reading.set()
            while piece := stream.read(1024):
                got += len(piece)
            outcome.append(f"end of body after {got} bytes")
        except Exception as error:
            outcome.append(type(error).__name__)
            raise
        finally:
            done.set()
        start_response("200 OK", [TEXT, ("Content-Length", "2")])
        return [b"ok"]

    server = serve(wrap(app), threads=2)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000
        )
        assert reading.wait(5)
        assert_serves(server)  # served while the upload is stuck
    assert done.wait(5), "the app's read never returned after the client left"
    assert outcome != ["end of body after 1000 bytes"], "a cut-short body looked complete"
    assert_serves(server)


def test_client_gone_mid_response_leaves_the_server_serving(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    closed = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/probe":
            start_response("200 OK", [TEXT, ("Content-Length", "2")])
            return [b"ok"]

        def endless() -> Iterator[bytes]:
            try:
                for _ in range(1000):
                    yield b"y" * 4096
                    time.sleep(0.01)
            finally:
                closed.set()

        start_response("200 OK", [TEXT])
        return endless()

    server = serve(wrap(app), threads=2)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(get("/stream"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
        assert_serves(server)
    assert closed.wait(5)
    assert_serves(server)


# -- the pool bound -------------------------------------------------------------------------------


def test_more_slow_requests_than_threads_all_complete(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    lock = threading.Lock()
    active = [0]
    most = [0]

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)  # a slow request, not a wait for readiness
        with lock:
            active[0] -= 1
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]

    server = serve(wrap(app), threads=2)
    count = 16

    def one(index: int) -> bytes:
        result = exchange(server.address, get(f"/{index}"), until=responses_complete(1))
        (response,) = parse_responses(result.data, eof=False)
        assert response.status == 200
        return response.body

    with concurrent.futures.ThreadPoolExecutor(count) as executor:
        bodies = list(executor.map(one, range(count)))
    assert bodies == [f"/{i}".encode() for i in range(count)]
    assert most[0] == 2


# -- graceful shutdown -----------------------------------------------------------------------


def test_shutdown_lets_an_in_flight_request_finish(wrap: Callable[[App], App]) -> None:
    entered = threading.Event()
    finished = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        entered.set()
        start_response("200 OK", [TEXT, ("Content-Length", "10")])

        def body() -> Iterator[bytes]:
            for _ in range(5):
                time.sleep(0.05)  # a slow response
                yield b"ab"
            finished.set()

        return body()

    results: list[bytes] = []
    with wsgiserve.background_server(wrap(app), threads=2, graceful_timeout=10) as server:
        address = server.address

        def client() -> None:
            results.append(exchange(address, get(), idle_timeout=5).data)

        thread = threading.Thread(target=client)
        thread.start()
        assert entered.wait(5)
    # Leaving the block waited for the response in flight.
    assert finished.is_set()
    thread.join(10)
    (response,) = parse_responses(results[0])
    assert (response.status, response.body) == (200, b"ab" * 5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()
