"""One worker process, after the fork: load the app, serve on the inherited sockets.

The supervisor owns the process model; a worker only answers its own signals
(TERM: graceful stop, INT/QUIT: stop now, USR1: reopen log files, ABRT: the
supervisor gave up on it, after its worker_abort hook), beats its heartbeat
pipe once a second from the event loop and whenever the supervisor asks (a byte
in the ask pipe), and leaves when its supervisor is gone or it has served
`--max-requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import signal
from collections.abc import Callable

import uvloop

from . import affinity, logs, tls
from .balance import SharedCounts
from .call import App
from .config import Hooks
from .errors import AppLoadError
from .listeners import Listener
from .metrics import SNAPSHOT_LIMIT, resident_bytes
from .server import Server
from .settings import Settings

log = logging.getLogger("wsgiserve.error")

EXIT_BOOT_ERROR = 3
EXIT_APP_LOAD_ERROR = 4
EXIT_ABORTED = 1  # SIGABRT from the supervisor, for a missed heartbeat

# Signals that belong to the supervisor; a worker must not act on them.
SUPERVISOR_ONLY = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


def run_worker(
    load_app: Callable[[], App],
    settings: Settings,
    listeners: list[Listener],
    heartbeat_fd: int,
    supervisor_pid: int,
    hooks: Hooks | None = None,
    supervisor: object = None,
    ask_fd: int = -1,
    serve_load_error: bool = False,
    share: tuple[SharedCounts, int] | None = None,
) -> None:
    """Serve until told to stop; never returns (the process exits with a status code).

    `ask_fd` is the read end of the pipe where the supervisor asks for a snapshot now.
    `serve_load_error` (--reload with no good code running): an app that cannot be loaded
    is replaced by one that answers 500 with the error, instead of exiting.
    `share`: the workers' shared connection counts and this worker's slot in them.
    """
    code = 0
    info = WorkerInfo(os.getpid(), settings)
    hooks = hooks or Hooks()
    try:
        code = _serve(
            load_app,
            settings,
            listeners,
            (heartbeat_fd, ask_fd),
            supervisor_pid,
            hooks,
            supervisor,
            info,
            serve_load_error,
            share,
        )
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        code = EXIT_BOOT_ERROR
    finally:
        if hooks.worker_exit is not None:
            _call(hooks.worker_exit, supervisor, info)
        logging.shutdown()
        os._exit(code)


def reset_signals() -> None:
    """A worker's signal dispositions until its loop installs its own handlers: the
    supervisor's signals ignored, the rest at their defaults (a TERM while booting ends the
    worker, which has no request yet). Called first thing after the fork."""
    for signum in SUPERVISOR_ONLY:
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


class WorkerInfo:
    """What hooks receive as `worker` (gunicorn's names: pid, age, cfg, log)."""

    def __init__(self, pid: int, settings: Settings) -> None:
        self.pid = pid
        self.ppid = os.getppid()
        self.cfg = settings
        self.log = log
        self.age = 0


def _call(hook: Callable[..., object], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("hook %s failed", getattr(hook, "__name__", hook))


def _serve(
    load_app: Callable[[], App],
    settings: Settings,
    listeners: list[Listener],
    pipes: tuple[int, int],
    supervisor_pid: int,
    hooks: Hooks,
    supervisor: object,
    info: WorkerInfo,
    serve_load_error: bool,
    share: tuple[SharedCounts, int] | None = None,
) -> int:
    heartbeat_fd, ask_fd = pipes
    reset_signals()
    # First, while this process has one thread: the app's and the pool's threads inherit it.
    affinity.pin_worker(settings.cpu_affinity, settings.workers, share[1] if share else -1)
    # A plain handler, not the loop's: the supervisor sends ABRT because the loop is stuck,
    # and Python runs this on the main thread even then (between bytecodes, or when a
    # blocking call is interrupted).
    signal.signal(signal.SIGABRT, functools.partial(_abort, hooks, info))
    if hooks.post_fork is not None:
        _call(hooks.post_fork, supervisor, info)
    load_error = ""
    try:
        app = load_app()
    except AppLoadError as error:
        log.error("worker %d cannot load the app: %s", os.getpid(), error)
        if not serve_load_error:
            return EXIT_APP_LOAD_ERROR
        log.error("--reload: answering 500 with this error until the code is fixed and saved")
        load_error = str(error)
        app = load_error_app(load_error)
    if hooks.post_worker_init is not None:
        _call(hooks.post_worker_init, info)
    limit = settings.max_requests
    if limit and settings.max_requests_jitter:
        limit += random.randint(0, settings.max_requests_jitter)
    server = Server(app, settings)
    if hooks.ssl_context is not None and server.ssl is not None:
        # gunicorn's hook: build the context, starting from ours if it likes.
        server.ssl = hooks.ssl_context(settings, functools.partial(tls.server_context, settings))
    server.owns_listeners = False
    if settings.workers > 1:  # one worker alone has nobody to share with
        server.share = share
    server.clock.pre_request = hooks.pre_request
    server.clock.post_request = hooks.post_request
    server.clock.hook_worker = info

    def beat() -> None:
        if os.getppid() != supervisor_pid:
            log.warning("worker %d: the supervisor is gone; stopping", os.getpid())
            server.request_shutdown()
            return
        snapshot = {**server.snapshot(), "rss": resident_bytes()}
        if load_error:
            snapshot["app_error"] = True  # the supervisor: this worker has no good code
        with contextlib.suppress(BlockingIOError):  # a full pipe: the supervisor is behind
            os.write(heartbeat_fd, heartbeat_line(snapshot))

    def answer() -> None:
        try:
            asked = os.read(ask_fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asked = b""
        if not asked:  # the supervisor closed its end: it is gone
            asyncio.get_running_loop().remove_reader(ask_fd)
            return
        beat()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.request_shutdown)
        # A terminal's Ctrl-C reaches the workers too: drain like TERM; a second one, or
        # QUIT, stops now.
        loop.add_signal_handler(signal.SIGINT, _interrupt, server, hooks, info)
        loop.add_signal_handler(signal.SIGQUIT, _quit, hooks, info)
        loop.add_signal_handler(signal.SIGUSR1, logs.reopen_files)
        # Beat well inside --timeout, so that a healthy loop is never taken for a stuck one.
        interval = min(1.0, settings.timeout / 4) if settings.timeout else 1.0

        def beat_periodically() -> None:
            beat()
            loop.call_later(interval, beat_periodically)

        await server.start(listeners)
        if limit:  # checked as each request completes, not once a beat
            server.pool.stop_after(limit, functools.partial(_recycle, server))
        log.info("Booting worker with pid: %d", os.getpid())
        if ask_fd >= 0:
            loop.add_reader(ask_fd, answer)
        beat_periodically()
        await server.serve_until_stopped()
        beat()  # a last one: the supervisor keeps what this worker counted

    uvloop.run(main())
    return 0


def heartbeat_line(snapshot: dict[str, object]) -> bytes:
    """The snapshot as one JSON line, small enough for the pipe to take it whole."""
    line = json.dumps(snapshot, separators=(",", ":")).encode() + b"\n"
    if len(line) > SNAPSHOT_LIMIT:
        snapshot = {**snapshot, "oldest": []}
        line = json.dumps(snapshot, separators=(",", ":")).encode() + b"\n"
    return line if len(line) <= SNAPSHOT_LIMIT else b"{}\n"


def load_error_app(message: str) -> App:
    """An app that answers every request with 500 and `message` (--reload, broken code)."""
    body = (
        f"wsgiserve --reload: the app could not be loaded.\n\n{message}\n\n"
        "Fix the code and save the file: the server reloads it.\n"
    ).encode()

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def _abort(hooks: Hooks, info: WorkerInfo, _signum: int, _frame: object) -> None:
    # gunicorn's meaning: the supervisor gave up on this worker; the hook may leave a note.
    log.error("worker %d aborted by the supervisor (missed heartbeat)", os.getpid())
    if hooks.worker_abort is not None:
        _call(hooks.worker_abort, info)
    os._exit(EXIT_ABORTED)


def _recycle(server: Server) -> None:
    log.info(
        "worker %d served %d requests (--max-requests): restarting", os.getpid(), server.completed
    )
    server.request_shutdown()


def _interrupt(server: Server, hooks: Hooks, info: WorkerInfo) -> None:
    if hooks.worker_int is not None:
        _call(hooks.worker_int, info)
    if server.stop_requested:
        _stop_now()
    server.request_shutdown()


def _quit(hooks: Hooks, info: WorkerInfo) -> None:
    if hooks.worker_int is not None:
        _call(hooks.worker_int, info)
    _stop_now()


def _stop_now() -> None:
    logging.shutdown()
    os._exit(0)
