"""The ways in from Python: `serve()` blocks, `background_server()` runs a server in a
thread for tests, and `run()` is what the command line calls in a single process.

Each resolves its settings, opens the listeners (or takes systemd's) and runs a
`server.Server` on a uvloop loop until it is asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvloop

from . import logs
from .call import App
from .errors import StartupError
from .listeners import Listener, close_listener, open_listener, systemd_listeners
from .server import Server
from .settings import Settings

log = logging.getLogger("wsgiserve.error")


# Settings only the command's supervisor acts on: pre-forked workers and their recycling,
# the pidfile and status socket, the metrics endpoint, switching user, loading the app by
# name. serve() runs one process with the app it is given.
SUPERVISOR_ONLY = (
    "workers",
    "metrics_bind",
    "max_requests",
    "max_requests_jitter",
    "max_worker_memory",
    "preload_app",
    "pidfile",
    "proc_name",
    "umask",
    "user",
    "group",
    "initgroups",
    "factory",
    "reload",
    "reload_engine",
    "reload_extra_files",
    "chdir",
    "pythonpath",
    "raw_env",
)


def settings_for(host: str, port: int, overrides: dict[str, Any]) -> Settings:
    """Settings from `serve()`-style arguments: host and port unless `bind` is given.

    Raises:
        StartupError: a setting only the command can act on was given (never ignored).
    """
    if "bind" not in overrides:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        overrides = {**overrides, "bind": (address,)}
    settings = Settings.from_mapping(overrides)
    defaults = Settings()
    unused = [
        name for name in SUPERVISOR_ONLY if getattr(settings, name) != getattr(defaults, name)
    ]
    if unused:
        flags = " ".join(_flag(name, getattr(settings, name)) for name in unused)
        raise StartupError(
            f"serve() runs one process and cannot act on {', '.join(unused)}: that needs the "
            f"command's supervisor. Run the command instead, e.g. "
            f"`wsgiserve yourmodule:app {flags}`."
        )
    return settings


def _flag(name: str, value: Any) -> str:
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    flag = str(field.metadata["flags"][-1])
    if value is True:
        return flag
    if isinstance(value, tuple):
        return " ".join(f"{flag} {item}" for item in value)
    return f"{flag} {value}"


def _configure_logs(settings: Settings) -> None:
    logs.configure_from(settings)


def open_listeners(settings: Settings) -> list[Listener]:
    scheme = "https" if settings.certfile else "http"
    listeners = systemd_listeners(scheme)
    if listeners:
        log.info("Using %d socket(s) from systemd socket activation", len(listeners))
        return [dataclasses.replace(each, protocol=settings.protocol) for each in listeners]
    try:
        for spec in settings.bind:
            listeners.append(
                open_listener(
                    spec,
                    settings.backlog,
                    scheme=scheme,
                    reuse_port=settings.reuse_port,
                    protocol=settings.protocol,
                    socket_mode=settings.socket_mode,
                    socket_group=settings.socket_group,
                )
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
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(signum, _on_signal, server, signum)
        await server.start(listeners)
        for listener in listeners:
            log.info("Listening at: %s (%d)", listener.url, os.getpid())
        await server.serve_until_stopped()
        log.info("Shutdown complete")

    uvloop.run(main())


def _on_signal(server: Server, signum: int) -> None:
    name = signal.Signals(signum).name
    if signum == signal.SIGQUIT or (server.stop_requested and signum == signal.SIGINT):
        # QUIT, or a second Ctrl-C: the user is not waiting any more.
        log.warning("%s: stopping now", name)
        os._exit(1)
    if not server.stop_requested:
        log.info("%s: stopping gracefully (INT again or QUIT: stop now)", name)
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
    _configure_logs(resolved)
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
    # In a test process, logging is left alone unless a log destination was asked for.
    if logs.wants_access_log(resolved) or resolved.error_logfile or resolved.syslog:
        _configure_logs(resolved)
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
