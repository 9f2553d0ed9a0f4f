"""One process's server: its listeners and connections, the thread pool, the
once-a-second clock, and the graceful shutdown. `serving` runs it on a loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from . import accesslog, logs, tls
from .balance import MIN_SLACK, SharedCounts, back_in_share, over_share
from .call import App, run_app
from .connection import HttpConnection
from .context import ConnectionContext, limits_from
from .environ import server_environ
from .exchange import Exchange, ServerClock
from .flow import ResponseBudget
from .listeners import Listener, close_listener
from .metrics import WorkerStats
from .parser import Parser, RequestParser, RequestSink
from .pool import WorkerPool
from .proxy import TrustedProxies, mount_prefix
from .proxy_protocol import ProxyPreamble
from .response import FileWrapper
from .settings import Settings
from .throttle import RepeatedLine
from .uwsgi import UwsgiParser

log = logging.getLogger("wsgiserve.error")

SERVER_NAME = "wsgiserve"
TICK = 1.0  # seconds between runs of _tick: the clock's and the timers' resolution
DATE_SLACK = 0.002  # seconds past the second's start: never format the second before
FIRST_REQUEST_GRACE = 2.0  # seconds a fresh connection may still send a request on shutdown
ParserFactory = Callable[[RequestSink, dict[str, Any]], Parser]
LIMIT_LOG_INTERVAL = 60.0  # seconds between "at --max-connections" lines
SHARE_RECHECK = 0.02  # seconds between looks at the siblings while out of its share
DRAIN_QUIET = 1.0  # seconds a kept-alive connection must be quiet before a stop closes it


class Server:
    """Serves one WSGI app on a set of listeners from the running event loop.

    Thread ownership: everything here runs on the loop thread, except
    `request_shutdown`, which may be called from any thread.
    """

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.clock = ServerClock(SERVER_NAME)
        if logs.wants_access_log(settings):
            self.clock.access_log = accesslog.AccessLog(
                settings.access_logformat, settings.access_log_json
            )
        self.connections: set[HttpConnection] = set()
        self.ssl = tls.server_context(settings)
        self.proxies = TrustedProxies.parse(settings.forwarded_allow_ips)
        self.uwsgi_peers = TrustedProxies.parse(settings.uwsgi_allow_ips)
        if settings.metrics_bind or settings.statsd_host:
            self.clock.stats = WorkerStats(settings.statsd_host, settings.statsd_prefix)
        self.started = time.time()
        # gunicorn mounts the app at $SCRIPT_NAME (which -e may set) unless told otherwise.
        root = settings.root_path or mount_prefix(os.environ.get("SCRIPT_NAME") or "/") or ""
        self.environ_base = server_environ(
            "https" if self.ssl else "http", settings.workers > 1, FileWrapper, root
        )
        # Bytes a request head may take before we answer 431, whatever its shape.
        self.head_limit = settings.limit_request_line + settings.limit_request_fields * (
            settings.limit_request_field_size + 2
        )
        self.pool: WorkerPool[Any] = WorkerPool(lambda job: None, 1, lambda *a: None)
        self.context: ConnectionContext | None = None  # made once the pool runs
        self.listeners: list[Listener] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.stop_requested = False
        self.owns_listeners = True
        self.accepting = False
        self._resuming = False
        self.max_connections = settings.max_connections or default_max_connections()
        self._at_limit = RepeatedLine(
            log,
            "%d connections (--max-connections): not accepting more for now",
            LIMIT_LOG_INTERVAL,
        )
        self._warnings: dict[str, RepeatedLine] = {}
        # A worker of several: the shared connection counts and its slot (see balance.py).
        self.share: tuple[SharedCounts, int] | None = None
        self._over_share = False  # stopped accepting to leave new connections to siblings
        # Called once a second on the loop thread (a worker process adds its heartbeat here).
        self.tick_callbacks: list[Callable[[], None]] = []

    async def start(self, listeners: list[Listener]) -> None:
        """Start the threads and accept connections on `listeners`."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        self.pool = WorkerPool(
            functools.partial(run_app, self.app),
            self.settings.threads,
            loop.call_soon_threadsafe,
            call_soon=loop.call_soon,
            batch_policy=self.settings.thread_policy == "batch",
        )
        self.pool.start()
        self.context = ConnectionContext(
            settings=self.settings,
            limits=limits_from(self.settings),
            clock=self.clock,
            pool=self.pool,
            proxies=self.proxies,
            environ_base=self.environ_base,
            head_limit=self.head_limit,
            opened=self.connection_opened,
            closed=self.connection_closed,
            post=self.pool.post,
            limit_concurrency=self.settings.limit_concurrency,
            body_preread=self.settings.body_preread,
            budget=ResponseBudget(self.settings.response_budget),
            make_parser=self._with_preamble(self._http_parser),
            warn=self.warn,
            note=self.note,
        )
        self._tick()
        self.listeners = listeners
        await self._listen()
        self._publish()  # counted by the siblings from now on

    async def _listen(self) -> None:
        # Each server gets a duplicate of the listening socket, so that closing it to stop
        # accepting (at --max-connections) leaves the shared socket open for the others.
        assert self._loop is not None
        context = self.context
        assert context is not None
        for listener in self.listeners:
            if listener.protocol == "uwsgi":
                listener_context = dataclasses.replace(
                    context, make_parser=self._with_preamble(self._uwsgi_parser)
                )
            else:
                listener_context = context
            server = await self._loop.create_server(
                functools.partial(HttpConnection, listener_context),
                sock=listener.sock.dup(),
                backlog=self.settings.backlog,
                ssl=self.ssl,
                # A client that never completes its TLS handshake is held no longer than one
                # that never sends its request head.
                ssl_handshake_timeout=(
                    (self.settings.header_timeout or None) if self.ssl else None
                ),
            )
            self._servers.append(server)
        self.accepting = True

    def _http_parser(self, sink: RequestSink, environ_base: dict[str, Any]) -> Parser:
        return RequestParser(sink, self.settings, environ_base, self.proxies, self.head_limit)

    def _uwsgi_parser(self, sink: RequestSink, environ_base: dict[str, Any]) -> Parser:
        # A unix-socket peer (no address) is a local process: always allowed.
        allowed = self.uwsgi_peers.trusts(environ_base["REMOTE_ADDR"])
        return UwsgiParser(sink, self.settings, environ_base, allowed, self.head_limit)

    def _with_preamble(self, make_parser: ParserFactory) -> ParserFactory:
        """`make_parser`, behind a PROXY protocol preamble when --proxy-protocol is on."""
        mode = self.settings.proxy_protocol
        if mode == "off":
            return make_parser
        balancers = TrustedProxies.parse(self.settings.proxy_allow_ips)

        def preamble(sink: RequestSink, environ_base: dict[str, Any]) -> Parser:
            allowed = balancers.trusts(environ_base["REMOTE_ADDR"])
            return ProxyPreamble(sink, environ_base, make_parser, mode, allowed)

        return preamble

    def warn(self, message: str, *args: object) -> None:
        """A warning about the set-up that clients may trigger often: once a minute, counted."""
        self._repeated(message, logging.WARNING).hit(*args)

    def note(self, message: str, *args: object) -> None:
        """An INFO line about a client (a timeout): a flood of clients makes it once a minute,
        counted, not once each."""
        self._repeated(message, logging.INFO).hit(*args)

    def _repeated(self, message: str, level: int) -> RepeatedLine:
        line = self._warnings.get(message)
        if line is None:
            line = self._warnings[message] = RepeatedLine(log, message, LIMIT_LOG_INTERVAL, level)
        return line

    def connection_opened(self, connection: HttpConnection) -> None:
        self.connections.add(connection)
        if self.accepting and len(self.connections) >= self.max_connections:
            # A server at its limit reaches it again and again: one line a minute, counted.
            self._at_limit.hit(len(self.connections))
            self._stop_accepting()
        elif self.share is not None and not self.stop_requested:
            counts, slot = self.share
            mine = len(self.connections)
            counts.write(slot, mine)
            if self.accepting and mine > MIN_SLACK and over_share(mine, counts.others(slot)):
                self._over_share = True  # siblings take the next ones (see balance.py)
                self._stop_accepting()
                assert self._loop is not None
                self._loop.call_later(SHARE_RECHECK, self._recheck_share)

    def connection_closed(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        self._publish()
        self._resume_if_room()

    def _recheck_share(self) -> None:
        """While out of its share, look again soon: siblings' counts change as they accept."""
        self._resume_if_room()
        if self._over_share and not self.stop_requested and self._loop is not None:
            self._loop.call_later(SHARE_RECHECK, self._recheck_share)

    def _publish(self) -> None:
        """This worker's open connections, for its siblings (while it accepts)."""
        if self.share is not None and not self.stop_requested:
            self.share[0].write(self.share[1], len(self.connections))

    def _stop_accepting(self) -> None:
        self.accepting = False
        for server in self._servers:
            server.close()
        self._servers.clear()

    def _resume_if_room(self) -> None:
        if self.accepting or self.stop_requested or self._resuming or self._loop is None:
            return
        if self._over_share:
            assert self.share is not None
            counts, slot = self.share
            if not back_in_share(len(self.connections), counts.others(slot)):
                return
            self._over_share = False
        if len(self.connections) < self.max_connections * 0.9:
            self._resuming = True
            self._loop.create_task(self._resume_accepting())

    async def _resume_accepting(self) -> None:
        try:
            if not self.stop_requested:
                await self._listen()
        finally:
            self._resuming = False

    async def serve_until_stopped(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()
        await self.shutdown()

    def request_shutdown(self) -> None:
        """Begin a graceful stop; safe to call from any thread or a signal handler."""
        loop, stopping = self._loop, self._stopping
        if loop is None or stopping is None:
            return
        self.stop_requested = True
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stopping.set)

    async def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish within the graceful timeout, close."""
        self.clock.draining = True
        self.stop_requested = True
        if self.share is not None:  # no share to measure siblings by from now on
            self.share[0].leave(self.share[1])
        for server in self._servers:
            server.close()
        self._servers.clear()
        for listener in self.listeners:
            # A worker process shares its sockets: only their owner removes a unix socket file.
            close_listener(listener, unlink=self.owns_listeners)
        # A connection accepted in the loop's last iteration is announced (connection_made)
        # by a callback that has not run yet: let it run, or we would exit under its feet.
        for _ in range(3):
            await asyncio.sleep(0)
        started = time.monotonic()
        deadline = started + self.settings.graceful_timeout
        # A connection accepted just before we stopped listening gets a short chance to
        # send its first request: its client could not know we were about to stop.
        grace_until = started + min(FIRST_REQUEST_GRACE, self.settings.graceful_timeout)
        loop = asyncio.get_running_loop()
        quiet: dict[HttpConnection, tuple[int, float]] = {}  # served, quiet since (monotonic)
        while True:
            now = time.monotonic()
            for connection in list(self.connections):
                since = connection.idle_since()
                if since is None:
                    connection.close_if_idle()  # ends a linger; leaves a busy one alone
                    quiet.pop(connection, None)
                elif connection.served == 0:
                    if now >= grace_until:
                        connection.close_if_idle()
                else:
                    # A kept-alive connection may carry a request its client is sending
                    # right now: closing it would lose that request. Its next response says
                    # `Connection: close`; it is closed only once quiet for DRAIN_QUIET.
                    mark = quiet.get(connection)
                    if mark is None or mark[0] != connection.served:
                        # `since` is the coarse clock, up to a tick early.
                        idle = max(0.0, loop.time() - since - TICK)
                        mark = quiet[connection] = (connection.served, now - idle)
                    if now - mark[1] >= DRAIN_QUIET:
                        connection.close_if_idle()
            if not self.connections or now >= deadline:
                break
            await asyncio.sleep(0.05)
        if self.connections:
            log.warning(
                "graceful timeout: closing %d connection(s) still busy", len(self.connections)
            )
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run
        self.pool.stop(timeout=0.5)

    def _tick(self) -> None:
        """Once a second: the cached Date header, the clock, idle keep-alive connections."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        clock = self.clock
        clock.now = now
        wall = time.time()
        clock.date_header = f"Date: {formatdate(wall, usegmt=True)}\r\n".encode("ascii")
        settings = self.settings
        report_after = settings.slow_request_threshold or settings.timeout
        flag = "--slow-request-threshold" if settings.slow_request_threshold else "--timeout"
        # A connection's time stamps are `clock.now`, which lags by up to one tick; timers
        # measured against a tick ago never fire before their full duration (a keep-alive
        # connection closed early races the proxy in front reusing it).
        horizon = now - TICK
        for connection in list(self.connections):
            connection.check_timers(horizon)
            exchange = connection.current
            if report_after and exchange is not None and not exchange.reported:
                _report_if_slow(exchange, report_after, flag)
        if self.share is not None:  # fresh, so siblings know this worker is alive
            self._publish()
            self._resume_if_room()
        for callback in self.tick_callbacks:
            try:
                callback()
            except Exception:
                log.exception("error in a periodic callback")
        # The next tick runs just after the next wall-clock second begins, so the Date
        # header changes on the second rather than up to a tick late.
        self._ticker = loop.call_at(now + next_second_delay(wall), self._tick)

    def snapshot(self) -> dict[str, Any]:
        """What this worker is doing now: for `wsgiserve status` and the metrics."""
        pool = self.pool.statistics()
        now = time.monotonic()
        running = sorted(
            (c.current for c in self.connections if c.current is not None),
            key=lambda exchange: exchange.started_at,
        )
        stats = self.clock.stats
        return {
            "pid": os.getpid(),
            "started": self.started,
            "served": self.completed,
            "connections": len(self.connections),
            "in_flight": self.pool.in_flight,
            "queued": pool["waiting"],
            "busy": pool["busy"],
            "idle": pool["idle"],
            "threads": pool["threads"],
            "oldest": [
                [
                    round(now - e.started_at, 3),
                    e.environ["REQUEST_METHOD"],
                    e.environ["PATH_INFO"][:120],
                    e.environ.get("wsgiserve.request_id", ""),
                ]
                for e in running[:5]
            ],
            "metrics": stats.counters() if stats is not None else {},
        }

    @property
    def completed(self) -> int:
        """Requests this server has finished (answered or aborted)."""
        return self.pool.completed


def next_second_delay(wall: float) -> float:
    """Seconds from wall-clock time `wall` to just past the start of the next second."""
    return TICK - (wall % TICK) + DATE_SLACK


def default_max_connections() -> int:
    """Connections per worker when --max-connections is 0: what the open-file limit allows,
    keeping some descriptors spare for the app (files, database connections, logs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(16, soft - max(64, soft // 10))


def _report_if_slow(exchange: Exchange, threshold: float, flag: str) -> None:
    """Log a request running longer than `threshold` with the stack of its thread, once."""
    thread_id = exchange.thread_id
    if thread_id is None:
        return  # still waiting for a thread: that wait is not the app's
    age = time.monotonic() - exchange.app_started
    if age < threshold:
        return
    exchange.reported = True
    frame = sys._current_frames().get(thread_id)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)\n"
    environ = exchange.environ
    # The stack goes in the record's stack_info, which the error log prints as ordinary
    # lines (a message's newlines are escaped: request data must not forge log lines).
    record = log.makeRecord(
        log.name,
        logging.WARNING,
        __file__,
        0,
        "request running for %.1f s (over %s %g; it waited %.1f s for a thread before): "
        "%s %s (request id %s); its thread's stack follows",
        (
            age,
            flag,
            threshold,
            exchange.app_started - exchange.started_at,
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"],
            environ.get("wsgiserve.request_id", "-"),
        ),
        None,
        sinfo="Stack of the request's thread:\n" + stack.rstrip(),
    )
    log.handle(record)
