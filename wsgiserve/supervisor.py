"""The pre-fork supervisor: binds once, forks workers, keeps their number, reacts to signals.

Signal handlers only enqueue the signal and wake the loop through a pipe; the
supervisor's loop acts on them one at a time (gunicorn's meanings):

TERM, INT: graceful stop (workers finish their requests within --graceful-timeout);
a second INT while draining, or QUIT: fast stop.  HUP: reload the configuration and replace
every worker
without dropping a request.  TTIN / TTOU: one worker more / less.
USR1: reopen log files (here and in every worker).  CHLD: reap, and replace.

What the supervisor knows of each worker (heartbeats, deadlines, why it exited, the
back-off before a respawn) is kept in `roster`. `wsgiserve status` and each /metrics
scrape ask every worker for a fresh snapshot and wait up to `STATUS_WAIT` for the answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import build_info, logs
from .balance import SharedCounts
from .call import App
from .config import Hooks
from .control import ControlListeners
from .listeners import Listener, close_listener
from .metrics import add_counters, render
from .pidfile import PidFile
from .reload import start_watching
from .roster import Roster, WorkerProcess, kill
from .settings import Settings
from .version import __version__
from .worker import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR, reset_signals, run_worker

log = logging.getLogger("wsgiserve.error")

STATUS_WAIT = 0.5  # seconds `status` waits for the workers' fresh snapshots

HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


@dataclass
class Supervisor:
    """Runs `settings.workers` worker processes serving `listeners` until told to stop.

    Args:
        settings: the settings in force (replaced on HUP by `reload()`).
        listeners: bound sockets, shared by every worker.
        load_app: loads the app; called in each worker (or once here with --preload).
        reload: returns fresh settings on HUP (None: HUP only replaces the workers).
    """

    settings: Settings
    listeners: list[Listener]
    load_app: Callable[[], App]
    reload: Callable[[], Settings] | None = None
    hooks: Hooks = field(default_factory=Hooks)
    workers: dict[int, WorkerProcess] = field(default_factory=dict)
    target: int = 0
    generation: int = 0
    _signals: list[int] = field(default_factory=list)
    _wake_r: int = -1
    _wake_w: int = -1
    _exit_code: int | None = None
    _stopping_all: bool = False
    _control: ControlListeners | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    last_reload: dict[str, Any] | None = None  # for `status`: when, and whether it took
    retired_counters: dict[str, Any] = field(default_factory=dict)  # of workers gone
    pidfile: PidFile | None = None  # claimed by the command, or by run()
    control_socket: socket.socket | None = None  # bound by the command, or by run()
    _roster: Roster = field(init=False)
    # The workers' open connections, shared so that none takes more than its share.
    shared_counts: SharedCounts = field(default_factory=SharedCounts)

    def __post_init__(self) -> None:
        self._roster = Roster(self.workers, self.restarts)  # the same dicts: hooks see them

    def run(self) -> int:
        """Supervise until stopped; returns the process exit code."""
        self.target = self.settings.workers
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        for signum in HANDLED:
            signal.signal(signum, self._enqueue)
        self._call_hook("on_starting", self)
        if self.settings.preload_app:
            app = self.load_app()
            self.load_app = lambda: app
        self._write_pidfile()
        _set_title("master", self.settings.proc_name)
        log.info(
            "Starting wsgiserve %s (%s) supervisor with pid %d",
            __version__,
            build_info.describe(),
            os.getpid(),
        )
        for listener in self.listeners:
            log.info("Listening at: %s (%d)", listener.url, os.getpid())
        log.info("Using worker: event loop + %d threads", self.settings.threads)
        self._control = ControlListeners(
            self.settings.pidfile,
            self.settings.metrics_bind,
            self.status,
            self.metrics,
            control=self.control_socket,
        )
        self._call_hook("when_ready", self)
        if self.settings.reload:
            roots = [Path(os.getcwd())] + [
                Path(p.strip()).resolve()
                for p in (self.settings.pythonpath or "").split(",")
                if p.strip()
            ]
            extra, engine = self.settings.reload_extra_files, self.settings.reload_engine
            engine = start_watching(roots, self._on_change, extra, engine)
            log.info("--reload: watching %s with %s", ", ".join(map(str, roots)), engine)
        try:
            while self._exit_code is None:
                self._step()
        finally:
            # Stopped: a repeated TERM (a process manager, a test's clean-up) must not kill
            # the process with SIG_DFL while the interpreter shuts down and turn exit 0 into
            # "killed by SIGTERM".
            for signum in HANDLED:
                if signum != signal.SIGCHLD:
                    signal.signal(signum, signal.SIG_IGN)
            self._control.close()
            self._remove_pidfile()
            for listener in self.listeners:
                close_listener(listener)
        self._call_hook("on_exit", self)
        log.info("Shutdown complete")
        return self._exit_code

    # -- what `wsgiserve status` and the metrics see -------------------------------------------

    def status(self) -> dict[str, Any]:
        # What the workers do now, not at their last beat: a request that started a moment
        # ago must be listed. A worker that does not answer in time shows its older row.
        asked = self._roster.refresh(STATUS_WAIT)
        workers = sorted(self.workers.values(), key=lambda w: w.started)
        now = time.monotonic()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started,
            "target_workers": self.target,
            "workers": [
                {
                    **w.snapshot,
                    "pid": w.pid,
                    "booted": w.booted,
                    "stopping": w.stopping,
                    # How old the row is: about 0 when the worker answered just now.
                    "as_of": round(now - (w.reported or w.started), 3),
                    "answered": w.reported >= asked,
                }
                for w in workers
            ],
            "restarts": dict(self.restarts),
            "last_reload": self.last_reload,
        }

    def metrics(self) -> str:
        # Asked now, as `status` is: a heartbeat is up to a second old, and a scrape right
        # after traffic missed that second's requests.
        self._roster.refresh(STATUS_WAIT)
        snapshots = [
            {**w.snapshot, "pid": w.pid}
            for w in self.workers.values()
            if w.snapshot.get("metrics") is not None and "served" in w.snapshot
        ]
        return render(snapshots, self.restarts, self.retired_counters)

    # -- what hooks see (gunicorn's arbiter has the same names) -----------------------------

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def cfg(self) -> Settings:
        return self.settings

    @property
    def log(self) -> logging.Logger:
        return log

    def _call_hook(self, name: str, *args: object) -> None:
        hook = getattr(self.hooks, name)
        if hook is not None:
            try:
                hook(*args)
            except Exception:
                log.exception("the %s hook failed", name)

    # -- the loop ------------------------------------------------------------------------

    def _on_change(self, paths: list[str]) -> None:
        """From the watcher thread: replace the workers as a HUP would."""
        log.info("--reload: %s changed; restarting workers", ", ".join(paths[:3]))
        self._enqueue(signal.SIGHUP, None)

    def _enqueue(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _step(self) -> None:
        control = self._control.fds() if self._control is not None else []
        fds = [self._wake_r, *control, *(w.heartbeat_fd for w in self.workers.values())]
        try:
            readable, _, _ = select.select(fds, [], [], self._poll_interval())
        except InterruptedError:
            readable = []
        now = time.monotonic()
        for fd in readable:
            if fd in control:
                assert self._control is not None
                self._control.handle(fd)
            else:
                self._drain(fd, now)
        while self._signals:
            self._handle(self._signals.pop(0))
        self._reap()
        if self._exit_code is None:
            self._roster.kill_overdue(now, self.settings.timeout, self.settings.graceful_timeout)
            self._roster.recycle_oversized(self.settings.max_worker_memory)
            self._roster.keep_count(self.target, self.generation, now, self._spawn)

    def _poll_interval(self) -> float:
        timeout = self.settings.timeout
        return min(1.0, timeout / 4) if timeout else 1.0

    def _drain(self, fd: int, now: float) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return
        if fd == self._wake_r or not data:
            return
        self._roster.beat(fd, data, now)

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaped in _reap, every step
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            # A Ctrl-C, or `docker stop` with STOPSIGNAL SIGINT, must not cut responses in
            # half: INT drains like TERM. A second INT (or QUIT) is the impatient one.
            log.info("Handling signal: %s (graceful stop; INT again or QUIT: stop now)", name)
            self._stop(graceful=True)
        elif signum == signal.SIGQUIT:
            log.info("Handling signal: %s (fast stop)", name)
            self._stop(graceful=False)
        elif signum == signal.SIGHUP:
            log.info("Handling signal: HUP (reload)")
            self._reload()
        elif signum == signal.SIGTTIN:
            self._set_target(self.target + 1)
            log.info("Handling signal: TTIN: %d worker(s)", self.target)
        elif signum == signal.SIGTTOU:
            self._set_target(max(1, self.target - 1))
            log.info("Handling signal: TTOU: %d worker(s)", self.target)
        elif signum == signal.SIGUSR1:
            log.info("Handling signal: USR1 (reopen log files)")
            logs.reopen_files()
            self._roster.signal_all(signal.SIGUSR1)

    # -- workers -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()  # heartbeats: worker -> supervisor
        ask_r, ask_w = os.pipe()  # "report now": supervisor -> worker
        for fd in (read_fd, write_fd, ask_r, ask_w):
            os.set_blocking(fd, False)
        # --reload while no worker runs good code: a worker that cannot load the app answers
        # 500 with the error instead of exiting, until the file is fixed.
        serve_load_error = self.settings.reload and not self._roster.any_good_code()
        self._call_hook("pre_fork", self, _Booting(len(self.workers), log))
        slot = self.shared_counts.claim()
        # Signals wait while forking: a TERM that reached the child before it replaced the
        # supervisor's handlers would run `_enqueue` there and be lost (a worker forked as
        # a stop began then served on, and the stop waited out --graceful-timeout).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the child
            reset_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_fd)
            os.close(ask_w)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for worker in self.workers.values():
                os.close(worker.heartbeat_fd)
                os.close(worker.ask_fd)
            _set_title("worker", self.settings.proc_name)
            run_worker(
                self.load_app,
                self.settings,
                self.listeners,
                write_fd,
                os.getppid(),
                hooks=self.hooks,
                supervisor=self,
                ask_fd=ask_r,
                serve_load_error=serve_load_error,
                share=(self.shared_counts, slot) if slot >= 0 else None,
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        os.close(ask_r)
        now = time.monotonic()
        self.workers[pid] = WorkerProcess(
            pid, read_fd, self.generation, now, now, ask_fd=ask_w, slot=slot
        )

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                self._drain(self.workers[pid].heartbeat_fd, time.monotonic())  # a last beat
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._call_hook("child_exit", self, worker)
            os.close(worker.heartbeat_fd)
            os.close(worker.ask_fd)
            self.shared_counts.release(worker.slot)
            counters = worker.snapshot.get("metrics")
            if counters:  # summed counters must not go down when a worker leaves
                add_counters(self.retired_counters, counters)
            if worker.stopping or self._exit_code is not None:
                if worker.stopping and not self._stopping_all and worker.booted:
                    self._roster.count(worker.reason or "retired")
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_APP_LOAD_ERROR and self._reload_failed(worker):
                continue
            stop_code = self._roster.exited(worker, code)
            if stop_code is not None:
                self._halt(stop_code)
                if stop_code == EXIT_BOOT_ERROR:
                    return

    # -- stopping and reloading ------------------------------------------------------------

    def _stop(self, graceful: bool) -> None:
        self._stopping_all = True
        for listener in self.listeners:  # no new connections reach this server
            close_listener(listener)
        self._roster.signal_all(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + (self.settings.graceful_timeout if graceful else 2.0)
        while self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap_all()
            if graceful and any(s in (signal.SIGINT, signal.SIGQUIT) for s in self._signals):
                log.info("Fast stop requested while draining")
                self._signals.clear()
                return self._stop(graceful=False)
        if self.workers:
            log.warning("Killing %d worker(s) still running", len(self.workers))
            self._roster.signal_all(signal.SIGKILL)
            while self.workers:
                time.sleep(0.02)
                self._reap_all()
        self._exit_code = 0

    def _reap_all(self) -> None:
        for worker in list(self.workers.values()):
            worker.stopping = True
        self._reap()

    def _halt(self, code: int) -> None:
        self._roster.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.graceful_timeout
        while self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap_all()
        self._roster.signal_all(signal.SIGKILL)
        self._exit_code = code

    def _reload(self) -> None:
        if self.reload is not None:
            try:
                self.settings = self.reload()
            except Exception as error:
                log.error("Reload failed, keeping the running configuration: %s", error)
                return
        self._call_hook("on_reload", self)
        self._set_target(self.settings.workers)
        self.generation += 1  # new workers start now; the old ones retire once they beat
        self.last_reload = {"ok": True, "at": time.time()}

    def _set_target(self, count: int) -> None:
        old, self.target = self.target, count
        if count != old:
            self._call_hook("nworkers_changed", self, count, old)

    def _reload_failed(self, worker: WorkerProcess) -> bool:
        """A worker of a reload could not load the app while the previous workers still
        serve: roll the reload back instead of stopping the server. True if it was that."""
        previous = [
            w
            for w in self.workers.values()
            if w.generation < worker.generation and w.booted and not w.stopping
        ]
        if worker.generation != self.generation or not previous:
            return False
        for other in self.workers.values():
            if other.generation == worker.generation and not other.stopping:
                other.stopping = True
                kill(other.pid, signal.SIGTERM)
        self.generation = max(w.generation for w in previous)
        self.last_reload = {"ok": False, "at": time.time(), "pid": worker.pid}
        log.error(
            "Reload failed: the new workers cannot load the app (worker %d's error is above). "
            "The previous %d worker(s) keep serving the code they loaded; fix the app and send "
            "HUP again.",
            worker.pid,
            len(previous),
        )
        return True

    # -- pidfile -------------------------------------------------------------------------------

    def _write_pidfile(self) -> None:
        if self.pidfile is None and self.settings.pidfile:  # else the command claimed it
            self.pidfile = PidFile(self.settings.pidfile)
            self.pidfile.claim()

    def _remove_pidfile(self) -> None:
        if self.pidfile is not None:
            self.pidfile.release()


@dataclass
class _Booting:
    """What `pre_fork` receives as `worker`, before there is a process (gunicorn's names)."""

    age: int
    log: logging.Logger
    pid: str = "[booting]"


def _set_title(role: str, name: str | None) -> None:
    try:
        import setproctitle  # optional: `pip install setproctitle`
    except ImportError:
        return
    setproctitle.setproctitle(f"wsgiserve: {role} [{name or 'wsgiserve'}]")
