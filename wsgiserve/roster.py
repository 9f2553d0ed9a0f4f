"""The supervisor's roster of its workers: how many, their heartbeats, and what each exit means.

A worker beats a byte into its own pipe once a second; one silent for longer than --timeout
has a stuck event loop and is killed, and the supervisor replaces it. Each exit is counted by
reason, and workers that keep dying before their first heartbeat are respawned with a growing
back-off, until the supervisor gives up. Forking is the supervisor's; everything here runs in
its loop, on its main thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .worker import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR

log = logging.getLogger("wsgiserve.error")

BOOT_FAILURES_ALLOWED = 5  # consecutive workers dying before their first heartbeat
MAX_BACKOFF = 10.0  # seconds between respawns of a worker that keeps dying at boot


@dataclass
class WorkerProcess:
    pid: int
    heartbeat_fd: int  # the supervisor's read end
    generation: int
    started: float
    last_beat: float
    booted: bool = False
    stopping: bool = False
    killed: bool = False
    snapshot: dict[str, Any] = field(default_factory=dict)  # its latest heartbeat
    slot: int = -1  # its connection count's place in the shared counts (balance.py)

    def beat(self, data: bytes, now: float) -> bool:
        """Record a heartbeat that brought `data`; return whether it was the worker's first."""
        self.last_beat = now
        first = not self.booted
        self.booted = True
        lines = data.rstrip(b"\n").rsplit(b"\n", 1)
        with contextlib.suppress(ValueError):
            self.snapshot = json.loads(lines[-1])
        return first


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

    def retire(self, worker: WorkerProcess) -> None:
        worker.stopping = True
        worker.last_beat = time.monotonic()  # it now has --graceful-timeout, not --timeout
        kill(worker.pid, signal.SIGTERM)

    def kill_overdue(self, now: float, timeout: float, graceful_timeout: float) -> None:
        """SIGKILL each worker silent for longer than `timeout` (0: never), or than
        `graceful_timeout` + 1 once it is stopping. Times are in seconds."""
        for worker in self.workers.values():
            limit = graceful_timeout + 1 if worker.stopping else timeout
            if limit and not worker.killed and now - worker.last_beat > limit:
                if worker.stopping:
                    log.warning("Worker %d did not stop in time; killing it", worker.pid)
                else:
                    log.critical(
                        "Worker %d missed its heartbeat for %.0f s (--timeout %g): killing it",
                        worker.pid,
                        now - worker.last_beat,
                        timeout,
                    )
                worker.killed = True
                kill(worker.pid, signal.SIGKILL)

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
            self.count("heartbeat" if worker.killed else "died")
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
