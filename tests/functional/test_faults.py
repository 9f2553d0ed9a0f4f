"""Faults (issue 4 item 6): clients that vanish at every stage, half-open sockets and apps
that fail or hang must cost nothing lasting: no threads, descriptors or memory left behind,
no busy loop, every iterable closed, and no effect on other connections.

The server runs in this process (`wsgiserve.background_server`), so its threads, file
descriptors and allocations are this process's, measured from the outside: thread count,
`/proc/self/fd`, tracemalloc and RSS.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import os
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil
import pytest

import wsgiserve
from tests.support.polling import eventually, wait_until
from tests.support.rawhttp import RawResult, exchange, parse_responses

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Serve = Callable[..., wsgiserve.BackgroundServer]

THREADS = 4
ROUNDS = 50  # iterations per disconnect stage
WARM_UP = 10  # iterations before the baseline is taken (caches, lazily created objects)
SETTLE = 10.0  # seconds allowed for the server to notice and clean up after the clients
FD_SLACK = 2  # descriptors the process may legitimately hold on top of the baseline
# Bytes of Python allocations the rounds may leave behind: a request's own objects (its
# environ, exchange and body) run to kilobytes, so one kept per round would show 50 times.
TRACED_GROWTH = 64 * 1024
RSS_GROWTH = 16 * 1024 * 1024  # bytes; coarse, catches leaks of C buffers (uvloop, httptools)
BODY_SENT = 64 * 1024  # bytes of a 1 MB body sent before the client vanishes
STREAM_CHUNKS = 400  # the slow response's length if nobody stops it (5 ms a chunk: ~2 s)


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode("latin-1")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def connect(server: wsgiserve.BackgroundServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def vanish(sock: socket.socket, reset: bool) -> None:
    """Close `sock`, with a TCP reset instead of a FIN when `reset`."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def responses_complete(count: int) -> Callable[[bytes], bool]:
    return lambda data: len(parse_responses(data, eof=False)) >= count


# -- a client that vanishes ------------------------------------------------------------------


class StagedApp:
    """Behaves by path, and counts the iterables it creates and the ones the server closed.

    `/body` reads the whole body, `/wait` blocks until the test sets `release`, `/stream`
    trickles a long response. Any other path never should reach it (`unexpected`).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created = 0
        self.closed = 0
        self.unexpected: list[str] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return TrackedBody(self, environ, start_response)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.created, self.closed


class TrackedBody:
    """The app's iterable: its work happens while the server iterates it."""

    def __init__(self, app: StagedApp, environ: Environ, start_response: StartResponse) -> None:
        self.app = app
        self.environ = environ
        self.start_response = start_response
        self.release = app.release  # the event of this round, whatever the test swaps in later
        self.done = False
        with app.lock:
            app.created += 1

    def __iter__(self) -> Iterator[bytes]:
        path = self.environ["PATH_INFO"]
        if path == "/body":
            # The client left mid-body; answer anyway (the answer goes nowhere).
            with contextlib.suppress(Exception):
                self.environ["wsgi.input"].read()
        elif path == "/wait":
            self.app.entered.release()
            self.release.wait(SETTLE)
        elif path != "/stream":
            with self.app.lock:
                self.app.unexpected.append(path)
        self.start_response("200 OK", [("Content-Type", "text/plain")])
        if path != "/stream":
            yield b"done"
            return
        for _ in range(STREAM_CHUNKS):
            yield b"x" * 1024
            time.sleep(0.005)

    def close(self) -> None:
        with self.app.lock:
            if not self.done:
                self.done = True
                self.app.closed += 1


def drop_mid_headers(server: wsgiserve.BackgroundServer, app: StagedApp, reset: bool) -> None:
    sock = connect(server)
    sock.sendall(b"GET /headers HTTP/1.1\r\nHost: test\r\nX-Partial: " + b"a" * 200)
    vanish(sock, reset)


def drop_mid_body(server: wsgiserve.BackgroundServer, app: StagedApp, reset: bool) -> None:
    sock = connect(server)
    head = b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n"
    sock.sendall(head + b"b" * BODY_SENT)
    vanish(sock, reset)


def drop_while_app_waits(server: wsgiserve.BackgroundServer, app: StagedApp, reset: bool) -> None:
    app.release = threading.Event()
    sock = connect(server)
    sock.sendall(get("/wait"))
    assert app.entered.acquire(timeout=SETTLE), "the app was never called"
    vanish(sock, reset)
    if reset:
        # Release the app only once the server has seen the reset, so that its response
        # meets a connection that is already gone. (A FIN alone may be a half-close: the
        # server rightly keeps the connection until it tries to write the response.)
        wait_until(lambda: not server.server.connections, "every connection to close", SETTLE)
    app.release.set()


def drop_mid_response(server: wsgiserve.BackgroundServer, app: StagedApp, reset: bool) -> None:
    sock = connect(server)
    sock.sendall(get("/stream"))
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, "the server closed before the response began"
        received += chunk
    vanish(sock, reset)


Stage = Callable[[wsgiserve.BackgroundServer, StagedApp, bool], None]


def run_rounds(server: wsgiserve.BackgroundServer, app: StagedApp, stage: Stage, n: int) -> None:
    for index in range(n):
        stage(server, app, index % 2 == 1)


def flush_workers(server: wsgiserve.BackgroundServer, app: StagedApp, threads: int) -> None:
    """Give every worker thread one small request at the same time.

    An idle worker still holds its last request (the pool's loop variable) until its next
    one: a bounded amount, but it would make the memory measured depend on which threads
    served the last rounds.
    """
    app.release = threading.Event()
    sockets = [connect(server) for _ in range(threads)]
    try:
        for sock in sockets:
            sock.sendall(get("/wait"))
        for _ in sockets:
            assert app.entered.acquire(timeout=SETTLE)
        app.release.set()
        for sock in sockets:
            sock.settimeout(SETTLE)
            data = b""
            while not responses_complete(1)(data):
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
    finally:
        app.release.set()
        for sock in sockets:
            sock.close()


def settled(server: wsgiserve.BackgroundServer, app: StagedApp) -> bool:
    created, closed = app.counts()
    return created == closed and not server.server.connections


@pytest.mark.parametrize(
    "stage",
    [drop_mid_headers, drop_mid_body, drop_while_app_waits, drop_mid_response],
    ids=["mid-headers", "mid-body", "app-waiting", "mid-response"],
)
def test_vanishing_clients_leave_nothing_behind(serve: Serve, stage: Stage) -> None:
    app = StagedApp()
    server = serve(app, threads=THREADS)
    # Tracing starts before the warm-up: objects the server keeps one of per thread or per
    # cache are then allocated, and replaced, under tracing, and only real growth shows.
    tracemalloc.start()
    try:
        run_rounds(server, app, stage, WARM_UP)
        flush_workers(server, app, THREADS)
        wait_until(lambda: settled(server, app), "the warm-up to settle", SETTLE)
        threads, fds = threading.active_count(), fd_count()
        memory = rss()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        run_rounds(server, app, stage, ROUNDS)
        flush_workers(server, app, THREADS)
        assert eventually(lambda: settled(server, app), SETTLE), app.counts()
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()

    created, closed = app.counts()
    assert created == closed  # close() ran for every iterable the app returned
    if stage is drop_while_app_waits:
        assert created == WARM_UP + ROUNDS + 2 * THREADS  # the rounds and the two flushes
    assert app.unexpected == []  # /headers: a head that never completed never reaches the app
    wait_until(lambda: threading.active_count() <= threads, f"at most {threads} threads", SETTLE)
    assert eventually(lambda: fd_count() <= fds + FD_SLACK, SETTLE), (fd_count(), fds)
    assert traced_growth < TRACED_GROWTH
    assert rss() - memory < RSS_GROWTH
    result = exchange(server.address, get("/body"), until=responses_complete(1))
    assert parse_responses(result.data, eof=False).statuses() == [200]


# -- half-open sockets -----------------------------------------------------------------------


HALF_OPEN = 200
HALF_OPEN_SENDS = (
    b"",
    b"GET / HTTP/1.1\r\nHost: test\r\nX-Partial: ",
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly-some",
)
IDLE_WINDOW = 1.0  # seconds
IDLE_CPU = 0.3  # CPU seconds the whole process may use in the window (a spinning loop: ~1)


def body_reading_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    environ["wsgi.input"].read()  # raises for a body cut short: the server answers 400
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def read_to_end(sock: socket.socket, deadline: float) -> bool:
    """Read until the server closes `sock`; False if `deadline` passes first."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def test_half_open_sockets_leave_the_server_idle(serve: Serve) -> None:
    server = serve(body_reading_app, threads=4, header_timeout=2, body_timeout=2)
    sockets: list[socket.socket] = []
    try:
        for index in range(HALF_OPEN):
            sock = connect(server)
            sockets.append(sock)
            data = HALF_OPEN_SENDS[index % len(HALF_OPEN_SENDS)]
            if data:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        # The clients keep their ends open and say nothing: the server has nothing to do.
        before = cpu_seconds()
        time.sleep(IDLE_WINDOW)  # a measurement window, not a wait for readiness
        used = cpu_seconds() - before
        assert used < IDLE_CPU, f"{used:.2f} CPU seconds in a {IDLE_WINDOW:g} s idle window"
        deadline = time.monotonic() + SETTLE
        ended = sum(read_to_end(sock, deadline) for sock in sockets)
        assert ended == HALF_OPEN  # the server closed every one of them
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: not server.server.connections, "every connection to close", SETTLE)
    result = exchange(server.address, get("/"), until=responses_complete(1))
    assert parse_responses(result.data, eof=False).statuses() == [200]


# -- failing and hanging apps ----------------------------------------------------------------


class Boom(Exception):
    pass


class FaultyApp:
    """`/good` answers 200; `/bad/<mode>` fails in one way; `/bad/block` hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocked = threading.Event()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        mode = environ["PATH_INFO"].rpartition("/")[2]
        if mode == "before":
            raise Boom("before start_response")
        if mode == "block":
            self.blocked.set()
            self.release.wait(60)
        start_response("200 OK", [("Content-Type", "text/plain")])
        if mode == "after":
            raise Boom("after start_response")
        return FaultyBody(mode)


class FaultyBody:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __iter__(self) -> Iterator[bytes]:
        yield b"partial-"
        if self.mode == "middle":
            raise Boom("in the middle of the iterable")
        yield b"body"

    def close(self) -> None:
        if self.mode == "close":
            raise Boom("in close()")


GOOD = 12  # good requests sent alongside the failing ones


def outcome(result: RawResult) -> list[int]:
    return parse_responses(result.data, eof=result.closed).statuses()


def assert_failure_contained(mode: str, result: RawResult) -> None:
    """What the failing request's own client sees (call.py's documented behaviour)."""
    if mode in ("before", "after"):
        assert outcome(result) == [500]
    elif mode == "middle":
        assert result.closed
        assert outcome(result) == []  # aborted: never a complete response
    else:  # close: the response was whole before close() raised
        responses = parse_responses(result.data, eof=result.closed)
        assert [(r.status, r.body) for r in responses] == [(200, b"partial-body")]


def fetch(server: wsgiserve.BackgroundServer, path: str) -> RawResult:
    return exchange(server.address, get(path), idle_timeout=5, until=responses_complete(1))


@pytest.mark.parametrize("mode", ["before", "after", "middle", "close", "block"])
def test_a_failing_app_affects_only_its_own_request(serve: Serve, mode: str) -> None:
    app = FaultyApp()
    server = serve(app, threads=4)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=GOOD + 4)
    blocked: socket.socket | None = None
    try:
        if mode == "block":
            blocked = connect(server)
            blocked.sendall(get("/bad/block"))
            assert app.blocked.wait(SETTLE)
        bad = [] if blocked else [pool.submit(fetch, server, f"/bad/{mode}") for _ in range(3)]
        good = [pool.submit(fetch, server, f"/good/{index}") for index in range(GOOD)]
        for future in good:
            result = future.result(timeout=30)
            responses = parse_responses(result.data, eof=result.closed)
            assert [(r.status, r.body) for r in responses] == [(200, b"partial-body")]
        for future in bad:
            assert_failure_contained(mode, future.result(timeout=30))
    finally:
        app.release.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if blocked is not None:
        with blocked:
            # Released, the hung request completes normally on its own connection.
            blocked.settimeout(5)
            data = b""
            while not responses_complete(1)(data):
                chunk = blocked.recv(65536)
                assert chunk
                data += chunk
            assert parse_responses(data, eof=False).statuses() == [200]


def test_every_kind_of_failure_at_once_leaves_other_requests_alone(serve: Serve) -> None:
    app = FaultyApp()
    server = serve(app, threads=4)
    modes = ["before", "after", "middle", "close"]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * GOOD + len(modes) + 1)
    try:
        hung = pool.submit(fetch, server, "/bad/block")
        assert app.blocked.wait(SETTLE)
        futures = {pool.submit(fetch, server, f"/bad/{mode}"): mode for mode in modes}
        good = [pool.submit(fetch, server, f"/good/{index}") for index in range(2 * GOOD)]
        for future in good:
            assert outcome(future.result(timeout=30)) == [200]
        for future, mode in futures.items():
            assert_failure_contained(mode, future.result(timeout=30))
        app.release.set()
        assert outcome(hung.result(timeout=30)) == [200]
    finally:
        app.release.set()
        pool.shutdown(wait=True, cancel_futures=True)
