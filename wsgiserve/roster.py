"""The supervisor's roster of its workers: how many, their heartbeats, and what each exit means.

A worker writes a snapshot line into its own pipe once a second, and at once when the
supervisor writes a byte into the worker's "ask" pipe (`refresh`, for `wsgiserve status`).
One silent for longer than --timeout has a stuck event loop: it gets SIGABRT (its
`worker_abort` hook runs), then SIGKILL if it is still there, and the supervisor replaces it.
One grown past --max-worker-memory is retired gracefully. Each exit is counted by reason,
and workers that keep dying before their first heartbeat are respawned with a growing
back-off, until the supervisor gives up. Forking is the supervisor's; everything here runs in
its loop, on its main thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .worker import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR

log = logging.getLogger("wsgiserve.error")

BOOT_FAILURES_ALLOWED = 5  # consecutive workers dying before their first heartbeat
MAX_BACKOFF = 10.0  # seconds between respawns of a worker that keeps dying at boot
ABORT_GRACE = 1.0  # seconds a worker sent SIGABRT has for its worker_abort hook before SIGKILL


@dataclass
class WorkerProcess:
    pid: int
    heartbeat_fd: int  # the supervisor's read end
    generation: int
    started: float
    last_beat: float
    booted: bool = False
    stopping: bool = False
    killed: bool = False  # for a missed heartbeat (SIGABRT, then SIGKILL)
    ask_fd: int = -1  # the supervisor's write end of the worker's "report now" pipe
    reported: float = 0.0  # time.monotonic() of its latest snapshot
    aborted_at: float = 0.0  # when it was sent SIGABRT; 0: never
    reason: str | None = None  # why the supervisor retired it, if not for a reload or TTOU
    snapshot: dict[str, Any] = field(default_factory=dict)  # its latest heartbeat
    _partial: bytes = b""  # the start of a line the pipe has not finished delivering
    slot: int = -1  # its connection count's place in the shared counts (balance.py)

    def beat(self, data: bytes, now: float) -> bool:
        """Record a heartbeat that brought `data`; return whether it was the worker's first."""
        self.last_beat = now
        first = not self.booted
        self.booted = True
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                self.snapshot = json.loads(line)
                self.reported = now
                break
        return first

    def ask(self) -> bool:
        """Ask the worker for a snapshot now; False if the request could not be written."""
        try:
            os.write(self.ask_fd, b"?")
        except BlockingIOError:
            return True  # earlier asks are still unread: an answer is coming
        except OSError:
            return False
        return True


@dataclass
class Roster:
    """The worker processes by pid, why workers were replaced, and when the next may be forked.

    Args:
        workers: the supervisor's table of its workers, kept here.
        restarts: replacements counted by reason (what `wsgiserve status` and metrics show).
    """

    workers: dict[int, WorkerProcess]
    restarts: dict[str, int]
    boot_failures: int = 0  # consecutive
    next_spawn: float = 0.0  # time.monotonic() before which none is forked

    def beat(self, fd: int, data: bytes, now: float) -> None:
        """Record the heartbeat that brought `data` through the pipe `fd`."""
        for worker in self.workers.values():
            if worker.heartbeat_fd == fd and worker.beat(data, now):
                self.boot_failures = 0

    def refresh(self, wait: float) -> float:
        """Ask every live worker for a snapshot and take the answers that arrive within
        `wait` seconds. A worker that does not answer keeps its older snapshot.

        Returns:
            when the workers were asked (`time.monotonic()`): a newer `reported` answered.
        """
        asked = time.monotonic()
        waiting = {
            w.heartbeat_fd: w
            for w in self.workers.values()
            if not w.aborted_at and w.ask_fd >= 0 and w.ask()
        }
        deadline = asked + wait
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select(list(waiting), [], [], left)
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # the worker is gone: nothing more will come
                    del waiting[fd]
                    continue
                self.beat(fd, data, now)
                if waiting[fd].reported >= asked:
                    del waiting[fd]
        return asked

    def any_good_code(self) -> bool:
        """Whether a running worker serves the app (not --reload's stand-in for one that
        failed to load)."""
        return any(
            w.booted and not w.stopping and not w.snapshot.get("app_error")
            for w in self.workers.values()
        )

    def keep_count(
        self, target: int, generation: int, now: float, spawn: Callable[[], None]
    ) -> None:
        """Retire surplus workers of `generation`, `spawn` missing ones (unless backing off),
        and retire older generations once the current one is up and beating."""
        current = [
            w for w in self.workers.values() if not w.stopping and w.generation == generation
        ]
        surplus = len(current) - target
        for worker in sorted(current, key=lambda w: w.started)[: max(0, surplus)]:
            self.retire(worker)
        if len(current) < target and now >= self.next_spawn:
            for _ in range(target - len(current)):
                spawn()
        # Old generation (after HUP): retire once the new one is up and beating.
        booted_new = sum(1 for w in current if w.booted)
        if booted_new >= min(target, len(current)) and booted_new:
            for worker in list(self.workers.values()):
                if worker.generation != generation and not worker.stopping:
                    self.retire(worker)

    def retire(self, worker: WorkerProcess, reason: str | None = None) -> None:
        worker.stopping = True
        worker.reason = reason
        worker.last_beat = time.monotonic()  # it now has --graceful-timeout, not --timeout
        kill(worker.pid, signal.SIGTERM)

    def kill_overdue(self, now: float, timeout: float, graceful_timeout: float) -> None:
        """Stop each worker silent for longer than `timeout` (0: never): SIGABRT, which runs
        its worker_abort hook, then SIGKILL after `ABORT_GRACE`. SIGKILL at once a stopping
        worker silent for longer than `graceful_timeout` + 1. Times are in seconds."""
        for worker in self.workers.values():
            if worker.aborted_at:
                if not worker.killed and now - worker.aborted_at > ABORT_GRACE:
                    log.warning("Worker %d is still there after SIGABRT; killing it", worker.pid)
                    worker.killed = True
                    kill(worker.pid, signal.SIGKILL)
                continue
            limit = graceful_timeout + 1 if worker.stopping else timeout
            if not limit or worker.killed or now - worker.last_beat <= limit:
                continue
            if worker.stopping:
                log.warning("Worker %d did not stop in time; killing it", worker.pid)
                worker.killed = True
                kill(worker.pid, signal.SIGKILL)
                continue
            log.critical(
                "Worker %d missed its heartbeat for %.0f s (--timeout %g): aborting it",
                worker.pid,
                now - worker.last_beat,
                timeout,
            )
            # gunicorn's way: SIGABRT lets the worker run its worker_abort hook first.
            worker.aborted_at = now
            kill(worker.pid, signal.SIGABRT)

    def recycle_oversized(self, limit: int) -> None:
        """Retire gracefully each worker whose last snapshot shows more resident memory than
        `limit` bytes (0: no limit); its replacement starts at once."""
        if not limit:
            return
        for worker in self.workers.values():
            rss = worker.snapshot.get("rss")
            if worker.stopping or not isinstance(rss, int) or rss <= limit:
                continue
            log.warning(
                "Worker %d uses %s of memory, over --max-worker-memory %s: restarting it "
                "gracefully",
                worker.pid,
                format_size(rss),
                format_size(limit),
            )
            self.retire(worker, "memory")

    def signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            kill(worker.pid, signum)

    def exited(self, worker: WorkerProcess, code: int) -> int | None:
        """Count and log the exit of `worker`, which the supervisor did not ask for.

        Returns:
            the exit code the supervisor should stop with, or None: replace the worker.
        """
        if code == EXIT_APP_LOAD_ERROR:
            log.error("App failed to load in worker %d: stopping", worker.pid)
            return EXIT_APP_LOAD_ERROR
        if not worker.booted and code != 0:
            self.count("boot_failure")
            self.boot_failures += 1
            if self.boot_failures >= BOOT_FAILURES_ALLOWED:
                log.error("Workers failed to boot %d times: stopping", self.boot_failures)
                return EXIT_BOOT_ERROR
            delay = min(MAX_BACKOFF, 0.1 * 2**self.boot_failures)
            self.next_spawn = time.monotonic() + delay
            log.warning(
                "Worker %d died at boot (exit %d); retrying in %.1f s", worker.pid, code, delay
            )
        elif code == 0:
            self.count("recycled")
            log.info("Worker %d exited (recycled); replacing it", worker.pid)
        else:
            self.count("heartbeat" if worker.killed or worker.aborted_at else "died")
            log.warning("Worker %d died (exit %d); replacing it", worker.pid, code)
        return None

    def count(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1


def kill(pid: int, signum: int) -> None:
    """Send `signum` to `pid`, which may have exited already."""
    try:
        os.kill(pid, signum)
    except OSError as error:
        if error.errno != errno.ESRCH:
            raise


def format_size(size: int) -> str:
    """`size` bytes for a person: 512.0 MiB (1 MiB = 1024 KiB), with the exact count."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} ({size} bytes)"
    return f"{size} bytes"
