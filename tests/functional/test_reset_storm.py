"""A reset storm (issue 10 item 2): thousands of clients reset their connections at random
moments, then a normal request is answered and the pool's counters are back to zero.

Each client connects, goes as far as its stage allows (nothing sent, half a head, a whole
head, half a POST body, the app running, mid-stream, after the last byte, after a keep-alive
exchange, during the iterable's `close()`) and closes with SO_LINGER (1, 0), so the server
sees a TCP reset. What is checked afterwards is what an operator would see: no request still
counted in flight, no connection left open, the pool idle, every iterable closed once, and a
fresh connection answered. Nothing here asserts on timing: the storm is bounded in count and
in time, and the clients tolerate whatever the server does meanwhile (errors, silences).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import h11
import pytest

import wsgiserve
from tests.support.polling import wait_until

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Serve = Callable[..., wsgiserve.BackgroundServer]

SEED = 20261203
CLIENTS = 8  # client threads resetting at once
CONNECTIONS = 2400  # in total, over every client thread
STORM_SECONDS = 15.0  # the storm stops here even if fewer connections were made
CLIENT_TIMEOUT = 2.0  # seconds a client waits on one socket call before giving up on it
SETTLE = 15.0  # seconds for the server to notice every reset and release what it held
POST_BODY = 64 * 1024  # bytes a storm POST declares
SLEEP = 0.006  # seconds /sleep waits before start_response
STREAM_PIECES = 6
STREAM_PIECE = b"s" * 512


class ClosingBody:
    """A response iterable whose `close()` is counted, and may take a moment."""

    def __init__(self, app: StormApp, pieces: list[bytes], pause: float, close_pause: float):
        self._app = app
        self._pieces = pieces
        self._pause = pause
        self._close_pause = close_pause

    def __iter__(self) -> Iterator[bytes]:
        for number, piece in enumerate(self._pieces):
            if number and self._pause:
                time.sleep(self._pause)
            yield piece

    def close(self) -> None:
        if self._close_pause:
            time.sleep(self._close_pause)
        self._app.closed()


class StormApp:
    """Routes that make the moment of a reset interesting; counts iterables and closes.

    * ``/now``: answers at once (a list).
    * ``/sleep``: sleeps a few ms before `start_response` (a list: the server sends it
      whole once the app returns, so a reset during the sleep is only seen at the end).
    * ``/stream``: a body in several pieces with tiny sleeps between them.
    * ``/read``: reads the whole request body, answers its length (a list).
    * ``/slowclose``: answers at once; the iterable's `close()` takes a moment.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.returned = 0  # iterables with a close() handed to the server
        self.closes = 0  # close() calls seen

    def closed(self) -> None:
        with self._lock:
            self.closes += 1

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.returned, self.closes

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        pause = close_pause = 0.0
        if path == "/sleep":
            time.sleep(SLEEP)
            pieces = [b"slept"]
        elif path == "/stream":
            pause = 0.001
            pieces = [STREAM_PIECE] * STREAM_PIECES
        elif path == "/read":
            pieces = [str(len(environ["wsgi.input"].read())).encode()]
        elif path == "/slowclose":
            close_pause = 0.005
            pieces = [b"closing"]
        else:
            pieces = [b"now"]
        length = sum(map(len, pieces))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(length))])
        if path in ("/now", "/sleep", "/read"):
            return pieces
        body = ClosingBody(self, pieces, pause, close_pause)
        with self._lock:
            self.returned += 1
        return body


def request(method: str, path: str, body_length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: storm\r\n"
    if body_length is not None:
        head += f"Content-Length: {body_length}\r\n"
    return (head + "\r\n").encode("latin-1")


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER (1, 0): the kernel sends a TCP reset instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def read_response(sock: socket.socket, limit: int | None = None) -> int:
    """Read one response (or, with `limit`, at least `limit` body bytes of it); its status."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "storm")]))
    status = 0
    seen = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            conn.receive_data(data)
            if not data:
                raise ConnectionError("the server closed mid-response")
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            seen += len(event.data)
            if limit is not None and seen >= limit:
                return status
        elif isinstance(event, h11.EndOfMessage):
            return status


def pause(rng: random.Random, most: float = 0.004) -> None:
    """Sleep a random moment up to `most` seconds (sometimes not at all)."""
    if rng.random() < 0.25:
        return
    time.sleep(rng.random() * most)


def storm_one(address: tuple[str, int], rng: random.Random, stage: str) -> None:
    """One connection that goes as far as `stage`, then resets."""
    sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        path = rng.choice(["/now", "/sleep", "/stream", "/slowclose"])
        if stage == "before sending":
            pause(rng)
        elif stage == "mid-head":
            head = request("GET", path)
            sock.sendall(head[: rng.randrange(1, len(head) - 1)])
            pause(rng)
        elif stage == "after the head":
            sock.sendall(request("GET", path))
            if rng.random() < 0.5:
                pause(rng, 0.001)
        elif stage == "mid-body":
            sock.sendall(request("POST", "/read", POST_BODY))
            sock.sendall(b"b" * rng.randrange(0, POST_BODY))
            pause(rng)
        elif stage == "app running":
            sock.sendall(request("GET", rng.choice(["/sleep", "/stream"])))
            pause(rng, 0.003)
        elif stage == "mid-stream":
            sock.sendall(request("GET", "/stream"))
            read_response(sock, limit=rng.randrange(1, STREAM_PIECES * len(STREAM_PIECE)))
        elif stage == "after the last byte":
            sock.sendall(request("GET", path))
            read_response(sock)
            pause(rng, 0.002)
        elif stage == "after keep-alive":
            sock.sendall(request("GET", path))
            read_response(sock)
            if rng.random() < 0.5:  # and reset during a second exchange
                sock.sendall(request("GET", rng.choice(["/sleep", "/stream", "/slowclose"])))
            pause(rng)
        elif stage == "during close":
            sock.sendall(request("GET", "/slowclose"))
            read_response(sock)
            pause(rng, 0.006)
        else:
            raise AssertionError(stage)
    except (OSError, h11.RemoteProtocolError):
        pass  # the server may refuse (503), close or go quiet: still reset below
    finally:
        reset(sock)


STAGES = [
    "before sending",
    "mid-head",
    "after the head",
    "mid-body",
    "app running",
    "mid-stream",
    "after the last byte",
    "after keep-alive",
    "during close",
]


def run_storm(address: tuple[str, int]) -> dict[str, int]:
    """Reset `CONNECTIONS` connections from `CLIENTS` threads (bounded by `STORM_SECONDS`);
    how many connections each stage made."""
    deadline = time.monotonic() + STORM_SECONDS
    made: dict[str, int] = dict.fromkeys(STAGES, 0)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client(number: int) -> None:
        rng = random.Random(SEED + number)
        try:
            for _ in range(CONNECTIONS // CLIENTS):
                if time.monotonic() >= deadline:
                    return
                stage = rng.choice(STAGES)
                try:
                    storm_one(address, rng, stage)
                except OSError:
                    continue  # connect refused or timed out (a backlog full): not counted
                with lock:
                    made[stage] += 1
        except BaseException as error:  # reported by the test, not lost in a thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STORM_SECONDS + 4 * CLIENT_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads), "a storm client never finished"
    assert not failures, f"a storm client failed: {failures[0]!r}"
    return made


def fresh_exchange(address: tuple[str, int], data: bytes) -> tuple[int, bytes]:
    """Send `data` on a new connection, read one response: (status, body)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "storm")]))
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, body


@pytest.mark.timeout(90)
@pytest.mark.parametrize("limit_concurrency", [0, 4], ids=["unlimited", "limit-concurrency-4"])
def test_reset_storm_leaves_nothing_behind(serve: Serve, limit_concurrency: int) -> None:
    app = StormApp()
    server = serve(app, threads=4, limit_concurrency=limit_concurrency)
    core = server.server

    made = run_storm(server.address)
    print(
        f"[storm] limit_concurrency={limit_concurrency}: {sum(made.values())} connections "
        f"reset: {made}"
    )

    def state() -> str:
        returned, closes = app.counts()
        return (
            f"in_flight={core.pool.in_flight}, connections={len(core.connections)}, "
            f"statistics={core.pool.statistics()}, iterables={returned}, closes={closes}"
        )

    try:
        wait_until(
            lambda: core.pool.in_flight == 0,
            "the pool's in-flight count to reach 0",
            timeout=SETTLE,
        )
        wait_until(
            lambda: not core.connections, "every reset connection to be gone", timeout=SETTLE
        )
        wait_until(
            lambda: app.counts()[0] == app.counts()[1],
            "every returned iterable to be closed",
            timeout=SETTLE,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; after the storm: {state()}") from None
    print(f"[storm] after: {state()}")

    stats = core.pool.statistics()
    assert (stats["busy"], stats["waiting"]) == (0, 0), state()
    returned, closes = app.counts()
    assert returned > 0, "the storm never reached the app"
    assert closes == returned, state()

    assert fresh_exchange(server.address, request("GET", "/now")) == (200, b"now"), state()
    body = b"x" * 5000
    posted = fresh_exchange(server.address, request("POST", "/read", len(body)) + body)
    assert posted == (200, b"5000"), state()
