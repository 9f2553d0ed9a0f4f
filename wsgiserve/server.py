"""One process's server: the uvloop loop, its connections, the once-a-second clock,
graceful shutdown, `serve()` and the background runner for tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import uvloop

from . import accesslog, logs, tls
from .call import App, run_app
from .connection import Connection
from .environ import server_environ
from .exchange import Exchange, ServerClock
from .listeners import Listener, close_listener, open_listener, systemd_listeners
from .metrics import WorkerStats
from .pool import WorkerPool
from .protocol import HttpProtocol
from .proxy import TrustedProxies
from .response import FileWrapper
from .settings import Settings

log = logging.getLogger("wsgiserve.error")

SERVER_NAME = "wsgiserve"
FIRST_REQUEST_GRACE = 2.0  # seconds a fresh connection may still send a request on shutdown


class Server:
    """Serves one WSGI app on a set of listeners from the running event loop.

    Thread ownership: everything here runs on the loop thread, except
    `request_shutdown`, which may be called from any thread.
    """

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.clock = ServerClock(SERVER_NAME)
        if settings.access_logfile or settings.log_config:
            self.clock.access_log = accesslog.AccessLog(
                settings.access_logformat, settings.access_log_json
            )
        self.connections: set[Connection] = set()
        self.ssl = tls.server_context(settings)
        self.proxies = TrustedProxies.parse(settings.forwarded_allow_ips)
        if settings.metrics_bind or settings.statsd_host:
            self.clock.stats = WorkerStats(settings.statsd_host, settings.statsd_prefix)
        self.started = time.time()
        self.environ_base = server_environ(
            "https" if self.ssl else "http", settings.workers > 1, FileWrapper
        )
        # Bytes a request head may take before we answer 431, whatever its shape.
        self.head_limit = (
            settings.limit_request_line
            + settings.limit_request_fields * (settings.limit_request_field_size + 2)
        )
        self.pool: WorkerPool[Any] = WorkerPool(lambda job: None, 1, lambda *a: None)
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
        self._tick()
        self.listeners = listeners
        await self._listen()

    async def _listen(self) -> None:
        # Each server gets a duplicate of the listening socket, so that closing it to stop
        # accepting (at --max-connections) leaves the shared socket open for the others.
        assert self._loop is not None
        for listener in self.listeners:
            server = await self._loop.create_server(
                lambda: HttpProtocol(self),
                sock=listener.sock.dup(),
                backlog=self.settings.backlog,
                ssl=self.ssl,
            )
            self._servers.append(server)
        self.accepting = True

    def connection_opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self.accepting and len(self.connections) >= self.max_connections:
            log.warning("%d connections (--max-connections): not accepting more for now",
                        len(self.connections))
            self.accepting = False
            for server in self._servers:
                server.close()
            self._servers.clear()

    def connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if (
            not self.accepting
            and not self.stop_requested
            and not self._resuming
            and len(self.connections) < self.max_connections * 0.9
            and self._loop is not None
        ):
            self._resuming = True
            self._loop.create_task(self._resume_accepting())

    async def _resume_accepting(self) -> None:
        try:
            if not self.stop_requested:
                await self._listen()
                log.info("accepting connections again")
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
        while True:
            newcomers_welcome = time.monotonic() < grace_until
            for connection in list(self.connections):
                connection.close_if_idle(spare_newcomers=newcomers_welcome)
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if self.connections:
            log.warning("graceful timeout: closing %d connection(s) still busy",
                        len(self.connections))
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
        clock.date_header = f"Date: {formatdate(usegmt=True)}\r\n".encode("ascii")
        settings = self.settings
        report_after = settings.slow_request_threshold or settings.timeout
        flag = "--slow-request-threshold" if settings.slow_request_threshold else "--timeout"
        for connection in list(self.connections):
            connection.check_timers(now)
            exchange = connection.current
            if report_after and exchange is not None and not exchange.reported:
                _report_if_slow(exchange, report_after, flag)
        for callback in self.tick_callbacks:
            try:
                callback()
            except Exception:
                log.exception("error in a periodic callback")
        self._ticker = loop.call_at(now + 1.0, self._tick)

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
                [round(now - e.started_at, 3), e.environ["REQUEST_METHOD"],
                 e.environ["PATH_INFO"][:120], e.environ.get("wsgiserve.request_id", "")]
                for e in running[:5]
            ],
            "metrics": stats.counters() if stats is not None else {},
        }

    @property
    def completed(self) -> int:
        """Requests this server has finished (answered or aborted)."""
        return self.pool.completed


def default_max_connections() -> int:
    """Connections per worker when --max-connections is 0: what the open-file limit allows,
    keeping some descriptors spare for the app (files, database connections, logs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(16, soft - max(64, soft // 10))


def _report_if_slow(exchange: Exchange, threshold: float, flag: str) -> None:
    """Log a request running longer than `threshold` with the stack of its thread, once."""
    age = time.monotonic() - exchange.started_at
    thread_id = exchange.thread_id
    if age < threshold or thread_id is None:
        return
    exchange.reported = True
    frame = sys._current_frames().get(thread_id)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)\n"
    environ = exchange.environ
    log.warning(
        "request running for %.1f s (over %s %g): %s %s (request id %s)\n"
        "its thread's stack:\n%s",
        age, flag, threshold, environ["REQUEST_METHOD"], environ["PATH_INFO"],
        environ.get("wsgiserve.request_id", "-"), stack.rstrip(),
    )


def settings_for(host: str, port: int, overrides: dict[str, Any]) -> Settings:
    """Settings from `serve()`-style arguments: host and port unless `bind` is given."""
    if "bind" not in overrides:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        overrides = {**overrides, "bind": (address,)}
    return Settings.from_mapping(overrides)


def open_listeners(settings: Settings) -> list[Listener]:
    scheme = "https" if settings.certfile else "http"
    listeners = systemd_listeners(scheme)
    if listeners:
        log.info("Using %d socket(s) from systemd socket activation", len(listeners))
        return listeners
    try:
        for spec in settings.bind:
            listeners.append(
                open_listener(spec, settings.backlog, scheme=scheme, reuse_port=settings.reuse_port)
            )
    except BaseException:
        for listener in listeners:
            close_listener(listener)
        raise
    return listeners


def run(app: App, settings: Settings, listeners: list[Listener] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully. Call from the main thread."""
    if listeners is None:
        listeners = open_listeners(settings)
    server = Server(app, settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _on_signal, server, signum)
        await server.start(listeners)
        for listener in listeners:
            log.info("Listening at: %s (%d)", listener.url, os.getpid())
        await server.serve_until_stopped()
        log.info("Shutdown complete")

    uvloop.run(main())


def _on_signal(server: Server, signum: int) -> None:
    name = signal.Signals(signum).name
    if server.stop_requested:
        if signum == signal.SIGINT:  # a second Ctrl-C: the user is not waiting any more
            log.warning("second %s: stopping now", name)
            os._exit(1)
        return
    log.info("%s: stopping gracefully", name)
    server.request_shutdown()


def serve(app: App, host: str = "127.0.0.1", port: int = 8000, **settings: Any) -> None:
    """Serve `app` until SIGINT or SIGTERM; blocks.

    Args:
        app: the WSGI application.
        host, port: where to listen, unless `bind=[...]` is given.
        **settings: any field of `wsgiserve.Settings`, e.g. `threads=16`.

    Raises:
        StartupError: the address cannot be bound.
        TypeError: an unknown setting was given.
    """
    resolved = settings_for(host, port, settings)
    logs.configure(
        resolved.log_level,
        resolved.access_logfile,
        error_logfile=resolved.error_logfile,
        log_config=resolved.log_config,
        capture_output=resolved.capture_output,
    )
    run(app, resolved)


class BackgroundServer:
    """A server running in a thread of this process; see `background_server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        listener = server.listeners[0]
        self.url = listener.url
        address = listener.sock.getsockname()
        self.host: str = address[0] if isinstance(address, tuple) else ""
        self.port: int = address[1] if isinstance(address, tuple) else 0
        self.urls = [item.url for item in server.listeners]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@contextlib.contextmanager
def background_server(
    app: App, host: str = "127.0.0.1", port: int = 0, **settings: Any
) -> Iterator[BackgroundServer]:
    """Run `app` in a background thread for the length of a `with` block.

    The server is listening when the block starts (port 0 picks a free port;
    read it from `.url` or `.port`) and is stopped gracefully when it ends.
    """
    resolved = settings_for(host, port, settings)
    if resolved.access_logfile or resolved.log_config or resolved.error_logfile:
        logs.configure(
            resolved.log_level,
            resolved.access_logfile,
            error_logfile=resolved.error_logfile,
            log_config=resolved.log_config,
            capture_output=resolved.capture_output,
        )
    listeners = open_listeners(resolved)
    server = Server(app, resolved)
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            await server.start(listeners)
        finally:
            ready.set()
        await server.serve_until_stopped()

    def target() -> None:
        try:
            uvloop.run(main())
        except BaseException as error:
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=target, name="wsgiserve-background", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield BackgroundServer(server)
    finally:
        server.request_shutdown()
        thread.join(resolved.graceful_timeout + 5)
