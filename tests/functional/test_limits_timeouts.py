"""Limits, timeouts and overload: --limit-request-body, --header-timeout, --body-timeout,
--write-timeout, --limit-concurrency, and very long request lines."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsgiserve

from ..support.rawhttp import exchange, parse_responses


class Recorder:
    """An app that reads the whole body, remembers what happened, and can stream or stall."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors: list[str] = []
        self.closed = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.calls += 1
        path = environ["PATH_INFO"]
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return self._stream()
        if path == "/wait":
            self.release.wait(10)
        try:
            body = environ["wsgi.input"].read()
        except OSError as error:
            self.errors.append(type(error).__name__)
            raise
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    def _stream(self) -> Iterator[bytes]:
        try:
            for _ in range(2000):  # 128 MiB if anyone read it all
                yield b"x" * 65536
        finally:
            self.closed.set()


def serve(app: Recorder, **settings: Any) -> Any:
    settings.setdefault("threads", 2)
    return wsgiserve.background_server(app, **settings)


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def test_a_declared_body_over_the_limit_is_refused_before_the_app() -> None:
    app = Recorder()
    with serve(app, limit_request_body=100) as server:
        result = exchange(
            server.address,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200\r\n\r\n" + b"a" * 200,
            idle_timeout=2,
        )
    (response,) = parse_responses(result.data)
    assert response.status == 413
    assert result.closed
    assert app.calls == 0


def test_an_expect_continue_request_over_the_limit_gets_413_and_never_100() -> None:
    app = Recorder()
    with serve(app, limit_request_body=100) as server:
        result = exchange(
            server.address,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n",
            idle_timeout=2,
        )
    assert result.data.startswith(b"HTTP/1.1 413 ")
    assert b" 100 " not in result.data
    assert app.calls == 0


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKS = b"".join(b"40\r\n" + b"z" * 64 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_in_the_first_packet_never_reaches_the_app() -> None:
    app = Recorder()
    with serve(app, limit_request_body=100) as server:
        result = exchange(server.address, CHUNKED_HEAD + CHUNKS, idle_timeout=2)
    assert result.data.startswith(b"HTTP/1.1 413 ")
    assert result.closed
    assert app.calls == 0


def test_a_chunked_body_growing_past_the_limit_fails_the_apps_read() -> None:
    app = Recorder()
    with (
        serve(app, limit_request_body=100) as server,
        socket.create_connection(server.address) as sock,
    ):
        sock.sendall(CHUNKED_HEAD)
        deadline = time.monotonic() + 5
        while app.calls == 0 and time.monotonic() < deadline:  # the app is now reading
            time.sleep(0.01)
        sock.sendall(CHUNKS)
        data = read_until_closed(sock, 5)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert app.errors == ["BodyTooLarge"]


def test_a_request_line_of_65536_bytes_gets_414() -> None:
    app = Recorder()
    with serve(app, limit_request_line=0) as server:  # 0: the maximum
        result = exchange(
            server.address,
            b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
            idle_timeout=2,
        )
    assert result.data.startswith(b"HTTP/1.1 414 ")
    assert app.calls == 0


def test_slowloris_is_cut_off_by_the_header_timeout() -> None:
    app = Recorder()
    with serve(app, header_timeout=1) as server, socket.create_connection(server.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        deadline = time.monotonic() + 10
        data = b""
        while time.monotonic() < deadline:  # dribble a byte at a time; the server must give up
            try:
                sock.sendall(b"s")
            except OSError:
                break
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
        data += read_until_closed(sock, 2)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert app.calls == 0


def test_a_silent_new_connection_is_closed_by_the_header_timeout() -> None:
    with (
        serve(Recorder(), header_timeout=1) as server,
        socket.create_connection(server.address) as sock,
    ):
        assert read_until_closed(sock, 10) == b""


def test_a_stalled_short_upload_is_refused_before_the_app_runs() -> None:
    # A short body is read whole before the app is called (--body-preread): when it
    # stalls, the server answers 408 itself and no app thread ever waited for it.
    app = Recorder()
    with serve(app, body_timeout=1) as server, socket.create_connection(server.address) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        data = read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert app.errors == []
    assert app.calls == 0


def test_a_stalled_upload_is_cut_off_by_the_body_timeout() -> None:
    app = Recorder()
    with (
        serve(app, body_timeout=1, body_preread=0) as server,
        socket.create_connection(server.address) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        data = read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert app.errors == ["BodyTimeout"]


def test_a_client_that_stops_reading_is_dropped_and_its_thread_freed() -> None:
    app = Recorder()
    with serve(app, threads=1, write_timeout=1) as server:
        sock = socket.create_connection(server.address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            assert app.closed.wait(15), "the stalled response's iterable was never closed"
        finally:
            sock.close()
        # The only thread is free again: a new request is served.
        result = exchange(
            server.address,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok",
            until=lambda data: data.endswith(b"ok"),
        )
        assert parse_responses(result.data, eof=False)[0].body == b"ok"


def test_a_closing_connection_whose_client_stops_reading_is_dropped() -> None:
    # The whole response is handed over at once (a list body) and the connection is to
    # close after it: the worker is done, the rest waits in the transport for a client
    # that never reads. --write-timeout must still free the connection.
    def big(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"z" * (16 * 1024 * 1024)]

    with wsgiserve.background_server(big, threads=1, write_timeout=1) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 ")  # then it reads no more
            assert server.server.connections
            deadline = time.monotonic() + 10
            while server.server.connections and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not server.server.connections, "the stalled connection was never dropped"
        finally:
            sock.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_past_the_concurrency_limit_requests_get_503_with_retry_after(threads: int) -> None:
    app = Recorder()
    with serve(app, threads=threads, limit_concurrency=threads) as server:
        busy = [socket.create_connection(server.address) for _ in range(threads)]
        try:
            for sock in busy:
                sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
            deadline = time.monotonic() + 5
            while app.calls < threads and time.monotonic() < deadline:
                time.sleep(0.01)
            result = exchange(server.address, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", idle_timeout=2)
            (response,) = parse_responses(result.data)
            assert response.status == 503
            assert response.header("retry-after") == b"1"
            app.release.set()
            for sock in busy:
                assert read_until_status(sock) == 200
        finally:
            for sock in busy:
                sock.close()
    assert app.calls == threads  # the refused request never reached the app


def read_until_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    data = sock.recv(65536)
    return int(data.split(b" ", 2)[1])


# -- closing while the client still sends -------------------------------------------------


def test_an_upload_refused_with_413_reaches_the_client_that_is_still_sending() -> None:
    # Closing a socket with unread input makes the kernel send a reset, which can destroy
    # the 413 before the client reads it ("connection reset by peer" instead of the error).
    app = Recorder()
    with (
        serve(app, limit_request_body=1000) as server,
        socket.create_connection(server.address) as sock,
    ):
        size = 8 * 1024 * 1024
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)

        def upload() -> None:
            piece = b"u" * 65536
            with contextlib.suppress(OSError):
                for _ in range(size // len(piece)):
                    sock.sendall(piece)

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        data = read_until_closed(sock, 5)
        sender.join(10)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert app.calls == 0


def test_after_an_error_response_late_bytes_are_dropped_and_the_close_is_clean() -> None:
    app = Recorder()
    with (
        serve(app, limit_request_body=1000) as server,
        socket.create_connection(server.address) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        sock.settimeout(5)
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 413 ")
        time.sleep(0.2)  # the server has answered and half-closed by now
        for _ in range(4):  # after a plain close, these would be answered with a reset
            sock.sendall(b"x" * 1000)
            time.sleep(0.05)
        sock.settimeout(5)
        assert sock.recv(4096) == b""  # EOF, not ECONNRESET
