"""No request is lost on any restart path: keep-alive clients that never retry, driven
through HUPs, a TTIN/TTOU burst, --max-requests recycling and a TERM with slow requests in
flight. Every request sent is answered exactly once (issue 11)."""

from __future__ import annotations

import itertools
import random
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from tests.support.polling import wait_until

from .support import ServerProcess, start_server

APP = "tests.integration.apps.ops_app:app"
CLIENTS = 32


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    answered: Counter[int] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)

    def record(self, ident: int | None, failure: str | None = None) -> None:
        with self.lock:
            if failure is not None:
                self.lost.append(failure)
            elif ident is not None:
                self.answered[ident] += 1


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bool] | None:
    """One response (Content-Length framed): (body, the server closes after it), or None
    if the connection ended first."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    start = len(head) + 4
    while len(buffer) < start + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    body = bytes(buffer[start : start + length])
    del buffer[: start + length]
    return body, close


class Client(threading.Thread):
    """Requests one after another on one keep-alive connection, pausing 0-20 ms; a new
    connection only after the server said `Connection: close`. Never retries a request."""

    def __init__(
        self,
        address: tuple[str, int],
        tally: Tally,
        ids: itertools.count[int],
        seed: int,
        stop: threading.Event,
        no_new: threading.Event,
        slow: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.address, self.tally, self.ids = address, tally, ids
        self.rng = random.Random(seed)
        self.stop, self.no_new, self.slow = stop, no_new, slow

    def run(self) -> None:
        sock: socket.socket | None = None
        buffer = bytearray()
        while not self.stop.is_set():
            if sock is None:
                if self.no_new.is_set():
                    return
                try:
                    sock = socket.create_connection(self.address, timeout=30)
                except OSError:
                    time.sleep(0.01)  # not accepted: nothing was sent
                    continue
                buffer.clear()
            ident = next(self.ids)
            path = f"/slow?s=0.5&id={ident}" if self.slow else f"/id?id={ident}"
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            except OSError as error:
                self.tally.record(ident, f"{ident}: send failed: {error}")
                sock.close()
                sock = None
                continue
            with self.tally.lock:
                self.tally.sent += 1
            try:
                got = read_response(sock, buffer)
            except OSError as error:
                got = None
                reason = str(error)
            else:
                reason = "closed without an answer"
            if got is None:
                self.tally.record(ident, f"{ident}: {reason}")
                sock.close()
                sock = None
                continue
            body, close = got
            self.tally.record(
                ident if body in (str(ident).encode(), b"done") else None,
                None if body in (str(ident).encode(), b"done") else f"{ident}: wrong body {body!r}",
            )
            if close:
                sock.close()
                sock = None
            time.sleep(self.rng.uniform(0, 0.02))
        if sock is not None:
            sock.close()


def drive(
    server: ServerProcess, slow: int = 0
) -> tuple[Tally, threading.Event, threading.Event, list[Client]]:
    tally, stop, no_new = Tally(), threading.Event(), threading.Event()
    ids = itertools.count(1)
    clients = [
        Client(server.host_port, tally, ids, seed, stop, no_new, slow=seed < slow)
        for seed in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    return tally, stop, no_new, clients


def finish(tally: Tally, stop: threading.Event, clients: list[Client]) -> None:
    stop.set()
    for client in clients:
        client.join(40)
    assert not any(client.is_alive() for client in clients)
    assert tally.lost == [], f"{len(tally.lost)} of {tally.sent} requests lost: {tally.lost[:5]}"
    twice = [ident for ident, count in tally.answered.items() if count > 1]
    assert twice == []
    assert sum(tally.answered.values()) == tally.sent


def served_more(tally: Tally, count: int) -> None:
    start = sum(tally.answered.values())
    wait_until(lambda: sum(tally.answered.values()) >= start + count, f"{count} more answers")


def retired(server: ServerProcess, old: set[int]) -> bool:
    return not old & server.worker_pids()


def test_hups_and_a_ttin_ttou_burst_lose_no_request() -> None:
    server = start_server(APP, "-w", "2", "--threads", "4")
    try:
        tally, stop, _, clients = drive(server)
        served_more(tally, 200)
        for _ in range(10):
            before = server.worker_pids()
            server.proc.send_signal(signal.SIGHUP)
            wait_until(partial(retired, server, before), "the old workers to retire")
            served_more(tally, 100)
        for sig in (signal.SIGTTIN, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTTOU):
            server.proc.send_signal(sig)
            served_more(tally, 50)
        finish(tally, stop, clients)
    finally:
        assert server.stop() == 0


def test_max_requests_recycling_loses_no_request() -> None:
    server = start_server(
        APP, "-w", "2", "--threads", "4", "--max-requests", "200", "--max-requests-jitter", "20"
    )
    try:
        tally, stop, _, clients = drive(server)
        served_more(tally, 2000)  # ten recycles or more
        finish(tally, stop, clients)
        assert "(--max-requests): restarting" in server.log.text
    finally:
        assert server.stop() == 0


def test_term_with_slow_requests_in_flight_loses_no_request() -> None:
    server = start_server(APP, "-w", "2", "--threads", "8")
    tally, stop, no_new, clients = drive(server, slow=4)
    try:
        served_more(tally, 300)
        no_new.set()  # the listeners are about to close: a new connection may be refused
        server.proc.send_signal(signal.SIGTERM)
        for client in clients:  # each ends on a Connection: close answer
            client.join(40)
        finish(tally, stop, clients)
    finally:
        assert server.stop() == 0
