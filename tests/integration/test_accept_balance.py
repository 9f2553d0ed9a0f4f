"""New connections spread over the workers, and nothing waits on a worker that cannot accept.

All workers accept from one socket; without a rule the worker that happens to be awake took
whole bursts (32 connections: 30/2 and 32/0 were common with -w 2), so one slow or crashed
worker held most clients. Each worker now stops accepting while it holds more than the least
loaded accepting sibling plus a slack (wsgiserve/balance.py; the rule has unit tests).
"""

from __future__ import annotations

import collections
import json
import re
import signal
import socket
import time

import pytest

from .support import APPS, ServerProcess, start_server

pytestmark = pytest.mark.timeout(60)

APP = f"{APPS}.proxy_app:app"
BOOTING = re.compile(r"Booting worker with pid: (\d+)")
WAIT = 20.0  # seconds, for workers to boot
BURST = 32


def _burst(
    server: ServerProcess, path: str = "/env", count: int = BURST
) -> collections.Counter[int]:
    """Open `count` connections at once, then ask each which worker holds it."""
    host, port = server.host_port
    sockets = [socket.create_connection((host, port), timeout=30) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        pids: collections.Counter[int] = collections.Counter()
        for sock in sockets:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            pids[json.loads(data.partition(b"\r\n\r\n")[2])["pid"]] += 1
        return pids
    finally:
        for sock in sockets:
            sock.close()


def _serving(server: ServerProcess, workers: set[int]) -> bool:
    """Whether every worker has answered a request (a worker still loading its app takes
    no connection by design; "Booting" is logged before it loads)."""
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT
    while seen != workers and time.monotonic() < deadline:
        seen.update(_burst(server, count=4))
    return seen == workers


def test_a_burst_of_connections_is_shared_by_the_workers() -> None:
    server = start_server(APP, "-w", "2")
    try:
        workers = {int(m[1]) for m in server.log.wait_for(BOOTING, count=2, timeout=WAIT)}
        assert _serving(server, workers), "a worker never answered"
        totals: collections.Counter[int] = collections.Counter()
        splits = []
        for _ in range(3):
            pids = _burst(server)
            assert set(pids) == workers, f"{pids} from workers {workers}"
            totals.update(pids)
            splits.append(sorted(pids.values()))
        # The rule allows the least loaded + max(4, a quarter): far from 30/2. Judged over the
        # three bursts: on a busy machine one burst can arrive while a worker waits for its
        # core (6/26 was seen once under a parallel test run), without the rule being wrong.
        assert min(totals.values()) >= 3 * BURST // 4, f"uneven: {splits}"
    finally:
        server.stop()


def test_workers_being_replaced_hold_no_connection_back() -> None:
    # During a HUP the old workers drain (here one keeps a slow request) while the new
    # ones boot: a draining or booting worker must not make the others wait for it.
    server = start_server(APP, "-w", "2", "--graceful-timeout", "20")
    try:
        server.log.wait_for(BOOTING, count=2, timeout=WAIT)
        host, port = server.host_port
        slow = socket.create_connection((host, port), timeout=30)
        slow.sendall(b"GET /env?sleep=8 HTTP/1.1\r\nHost: t\r\n\r\n")
        server.proc.send_signal(signal.SIGHUP)
        server.log.wait_for(BOOTING, count=4, timeout=WAIT)
        pids = _burst(server)  # every one answered (the test's timeout bounds the wait)
        assert sum(pids.values()) == BURST
        slow.close()
    finally:
        server.stop()
