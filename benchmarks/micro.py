"""The Python cost of one request, both sides of the hop, without sockets or threads.

A real `HttpConnection` over a transport that only counts bytes, and a pool that runs
each request's app call in the measuring thread: what is left is the per-request Python
work of parsing, the environ, the exchange, the app call, the response and the
completion (the hand-over's futex and wake-up are not in it; `make bench` has them).
Because it needs no second core and no network, it is steady on a busy machine: use it
to see what a change to the hot path costs, and `make bench` for what a client sees.

    .venv/bin/python -m benchmarks.micro                 # µs per request, min of rounds
    .venv/bin/python -m benchmarks.micro --profile       # plus the top functions, calls/request
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import functools
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import apps
from wsgiserve.call import run_app
from wsgiserve.connection import HttpConnection
from wsgiserve.context import ConnectionContext
from wsgiserve.server import Server
from wsgiserve.settings import Settings

REQUESTS: dict[str, bytes] = {
    "hello": b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
    "close": b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
    "post": (
        b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 1024\r\n\r\n" + b"p" * 1024
    ),
}
APPS: dict[str, Callable[..., Any]] = {
    "hello": apps.hello,
    "close": apps.hello,
    "post": apps.echo_length,
}


class CountingTransport:
    """Just enough of an asyncio transport: it counts what is written."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.written += sum(map(len, pieces))

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class InlinePool:
    """The pool's loop-side face, running each job in this thread when asked."""

    crowded_at = 1 << 30

    def __init__(self, handler: Callable[[Any], None]) -> None:
        self.handler = handler
        self.in_flight = 0
        self.jobs: list[Any] = []
        self.completions: list[tuple[Callable[[Any], None], Any]] = []
        self.after: list[Callable[[], None]] = []

    def submit(self, job: Any) -> None:
        self.in_flight += 1
        self.jobs.append(job)

    def finished(self) -> None:
        self.in_flight -= 1

    def post(self, callback: Callable[[Any], None], argument: Any) -> None:
        self.completions.append((callback, argument))

    def after_batch(self, callback: Callable[[], None]) -> None:
        self.after.append(callback)

    def run(self) -> None:
        """The worker's turn, then the loop's batch of completions."""
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            self.handler(job)
        completions, self.completions = self.completions, []
        for callback, argument in completions:
            callback(argument)
        after, self.after = self.after, []
        for flush in after:
            flush()


class Bench:
    """One kind of request, ready to be served again and again: `one()` serves one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.request = REQUESTS[kind]
        app = APPS[kind]
        self.pool, self.context = asyncio.run(_context(app))
        self.transport = CountingTransport()
        self.connection = self._open()
        self.served = 0

    def _open(self) -> HttpConnection:
        connection = HttpConnection(self.context)
        connection.connection_made(self.transport)  # type: ignore[arg-type]
        return connection

    def one(self) -> None:
        if self.kind == "close":  # a connection per request, as with `Connection: close`
            self.transport = CountingTransport()
            self.connection = connection = self._open()
            connection.data_received(self.request)
            self.pool.run()
            if not self.transport.closed:
                raise SystemExit("close: the server kept the connection open")
            connection.connection_lost(None)
            self.served += connection.served
            return
        self.connection.data_received(self.request)
        self.pool.run()
        if self.transport.closed:
            raise SystemExit(f"{self.kind}: a request failed; the figure would mean nothing")
        self.served = self.connection.served


async def _context(app: Callable[..., Any]) -> tuple[InlinePool, ConnectionContext]:
    server = Server(app, Settings(threads=1))
    await server.start([])
    server.pool.stop()
    assert server.context is not None
    pool = InlinePool(functools.partial(run_app, app))
    context = dataclasses.replace(server.context, pool=pool, post=pool.post)
    return pool, context


def _time(kind: str, count: int) -> float:
    """CPU seconds per request over `count` requests."""
    bench = Bench(kind)
    one = bench.one
    for _ in range(200):  # warm the caches (targets, header keys, status lines)
        one()
    start = time.thread_time()  # CPU time: steady while neighbours take the cores
    for _ in range(count):
        one()
    elapsed = time.thread_time() - start
    if bench.served != count + 200:
        raise SystemExit(f"{kind}: {count + 200 - bench.served} request(s) failed")
    return elapsed / count


def _profile(kind: str, count: int, top: int) -> None:
    bench = Bench(kind)
    for _ in range(200):
        bench.one()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        bench.one()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n{kind}: {calls / count:.1f} Python-visible calls per request")
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="per round")
    parser.add_argument("--rounds", type=int, default=7, help="the minimum is reported")
    parser.add_argument("--kind", choices=sorted(REQUESTS), action="append")
    parser.add_argument("--profile", action="store_true", help="cProfile one round")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for kind in args.kind or sorted(REQUESTS):
        best = min(_time(kind, args.requests) for _ in range(args.rounds))
        print(f"{kind}: {best * 1e6:.2f} µs/request (min of {args.rounds} x {args.requests:,})")
        if args.profile:
            _profile(kind, args.requests // 4, args.top)


if __name__ == "__main__":
    main()
