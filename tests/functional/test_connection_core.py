"""Issue 10's connection-core failures, seen from outside: who gets blamed by a timeout,
what a trickling or non-reading client can hold, and how a connection comes back to idle."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tests.support.polling import wait_until
from tests.support.rawhttp import exchange, fresh_statuses, parse_responses

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Serve = Callable[..., Any]


_pending: dict[int, bytes] = {}  # bytes read past a response, per socket


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read one whole response (framed by Content-Length; a 1xx has no body); bytes of
    the next one are kept for the next call."""
    sock.settimeout(timeout)
    data = _pending.pop(sock.fileno(), b"")
    while True:
        head, found, rest = data.partition(b"\r\n\r\n")
        if found:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) >= length:
                if rest[length:]:
                    _pending[sock.fileno()] = rest[length:]
                return head + found + rest[:length]
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def echo_length_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(2.5)
    body = b"" if path == "/early" else environ["wsgi.input"].read()
    answer = f"{path} {len(body)}".encode()
    start_response("200 OK", [("Content-Length", str(len(answer)))])
    return [answer]


def test_an_answer_before_the_body_arrived_leaves_the_connection_idle_not_timed_out(
    serve: Serve,
) -> None:
    """The app answered before the body came; once it came, the connection sat as if a
    head were late, and a 408 went out that the client took for its next answer."""
    server = serve(echo_length_app, body_preread=0, header_timeout=1, keep_alive=10)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        assert read_response(sock).endswith(b"/early 0")
        sock.sendall(b"x" * 990)  # the rest of the unread body: read and dropped
        sock.settimeout(2.5)  # over two ticks past --header-timeout
        try:
            unsolicited = sock.recv(100)
        except TimeoutError:
            unsolicited = b""
        assert unsolicited == b""
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).endswith(b"/next 0")


def test_trickling_uploads_cannot_hold_the_threads(serve: Serve) -> None:
    """Uploads that send a byte now and then used to keep their threads for ever (each
    byte reset --body-timeout); --min-upload-rate cuts them off after the grace period."""
    server = serve(
        echo_length_app, threads=2, body_preread=0, min_upload_rate=100, min_rate_grace=1
    )
    tricklers = [socket.create_connection(server.address) for _ in range(4)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for sock in tricklers:
                with contextlib.suppress(OSError):
                    sock.send(b"x")
            stop.wait(0.3)

    for sock in tricklers:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        result = exchange(
            server.address,
            b"GET /normal HTTP/1.1\r\nHost: t\r\n\r\n",
            idle_timeout=15,
            until=lambda data: data.endswith(b"/normal 0"),
        )
        assert parse_responses(result.data, eof=False).statuses() == [200]
        for sock in tricklers:
            assert read_response(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        stop.set()
        feeder.join()
        for sock in tricklers:
            sock.close()


def test_the_body_timeout_does_not_run_while_the_server_is_not_reading(serve: Serve) -> None:
    """A pipelined upload waits behind a slow request, its body buffer full: that pause is
    the server's, and --body-timeout used to blame the client for it."""
    server = serve(echo_length_app, body_timeout=1, body_preread=0)
    body = b"y" * 300_000  # more than the body buffer: reading pauses while /slow runs
    with socket.create_connection(server.address) as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n"
            + body
        )
        first = read_response(sock)
        assert first.endswith(b"/slow 0")
        second = read_response(sock)
        assert second.startswith(b"HTTP/1.1 200 ")
        assert second.endswith(b"/up 300000")


def test_the_body_timeout_does_not_run_while_a_100_continue_is_owed(serve: Serve) -> None:
    """The client waits for our `100 Continue`, which comes once an app thread reads; while
    every thread is busy, the silence is ours, not the client's."""
    server = serve(echo_length_app, threads=1, body_timeout=1)
    with (
        socket.create_connection(server.address) as busy,
        socket.create_connection(server.address) as waiting,
    ):
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)  # let /slow take the only thread (ordering only, not a timing claim)
        waiting.sendall(
            b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = read_response(waiting)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        waiting.sendall(b"hello")
        assert read_response(waiting).endswith(b"/up 5")
        assert read_response(busy).endswith(b"/slow 0")


class StreamApp:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/stream":
            start_response("200 OK", [])
            return self._stream()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def _stream(self) -> Iterator[bytes]:
        try:
            for _ in range(4000):
                yield b"z" * 65536
        finally:
            self.closed.set()


def test_a_client_that_stops_reading_frees_its_thread_long_before_the_write_timeout(
    serve: Serve,
) -> None:
    app = StreamApp()
    server = serve(app, threads=1, write_timeout=60, min_download_rate=10_000, min_rate_grace=1)
    sock = socket.create_connection(server.address)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        # With only --write-timeout the thread would be held for 60 s.
        assert app.closed.wait(20), "the stalled stream's thread was not freed"
    finally:
        sock.close()
    assert fresh_statuses(server.address, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"ok") == [200]


def test_a_short_body_arrives_whole_before_the_app_runs(serve: Serve) -> None:
    body_sent = threading.Event()
    seen: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.append(body_sent.is_set())
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]

    server = serve(app)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        time.sleep(0.3)  # the app would run now if the server handed the head over at once
        body_sent.set()
        sock.sendall(b"hello")
        assert read_response(sock).endswith(b"hello")
    assert seen == [True]


def test_a_100_continue_request_is_handed_over_at_once(serve: Serve) -> None:
    entered = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        entered.set()
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]

    server = serve(app)
    with socket.create_connection(server.address) as sock:
        sock.sendall(
            b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        wait_until(entered.is_set, "the app to be called before the body is sent")
        assert read_response(sock).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        assert read_response(sock).endswith(b"hello")


def test_a_client_gone_mid_upload_is_not_an_info_line(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # A soak wrote 7,769 INFO lines for clients that disconnected mid-upload.
    caplog.set_level(logging.DEBUG, logger="wsgiserve.error")
    server = serve(echo_length_app, body_preread=0)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        assert read_response(sock).startswith(b"HTTP/1.1 400 ")
    wait_until(lambda: server.server.pool.in_flight == 0, "the request to end")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    assert any("cut short" in r.getMessage() for r in caplog.records)
