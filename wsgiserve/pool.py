"""The hop between the event loop and the worker threads.

Jobs go in through a `queue.SimpleQueue` (C-implemented, no lock dance in
Python). Results come back as `(callback, argument)` pairs on a deque; the first
worker to post into an empty batch schedules one `call_soon_threadsafe`, and the
loop then runs every pair queued by the time it gets there. Under load many
completions share one wake-up, which is what keeps the hop cheap.

Thread ownership: `submit`, `finished` and `statistics` run on the loop thread;
`post` runs on any thread.

Every submitted job is queued: a connection has at most one request in the pool, so
the queue is bounded by the connections (and --max-connections). Nothing is refused or
paused here: a bound on waiting jobs made each connection past it pause and resume its
reading, two system calls a request, which halved the throughput with 1,024 busy
connections, and bought nothing the per-connection bounds do not already give.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("wsgiserve.error")

Job = TypeVar("Job")

_STOP = object()

# Jobs waiting for a thread past which the pool is `crowded` (the server says so in
# its log: the app is slower than the traffic).
MAX_WAITING = 256


class WorkerPool(Generic[Job]):
    """A fixed set of threads that run `handler(job)` for every submitted job.

    Args:
        handler: called in a worker thread for each job; it must not raise.
        threads: how many worker threads to run.
        call_soon_threadsafe: the loop's `call_soon_threadsafe`, used to wake it.
        max_waiting: jobs waiting for a free thread past which `crowded` says so.
        batch_policy: run the threads under SCHED_BATCH (see `_use_batch_policy`).
    """

    def __init__(
        self,
        handler: Callable[[Job], None],
        threads: int,
        call_soon_threadsafe: Callable[..., Any],
        max_waiting: int | None = None,
        call_soon: Callable[..., Any] | None = None,
        batch_policy: bool = False,
    ) -> None:
        self._handler = handler
        self._batch_policy = batch_policy
        self._size = threads
        self._call_soon_threadsafe = call_soon_threadsafe
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Jobs submitted during one loop iteration, handed over together at its end:
        # the first put wakes one sleeping worker (a futex call), the rest cost nothing.
        self._call_soon = call_soon
        self._pending: list[Any] = []
        self._completions: collections.deque[tuple[Callable[[Any], None], Any]] = (
            collections.deque()
        )
        self._wake_pending = False
        self._threads: list[threading.Thread] = []
        # Jobs in flight (running or waiting) from which the pool is crowded.
        self.crowded_at = threads + (max_waiting if max_waiting is not None else MAX_WAITING)
        # Loop thread only: jobs submitted and not yet finished, running plus waiting.
        self.in_flight = 0
        self.wakeups = 0
        self.completed = 0
        self._after_batch: list[Callable[[], None]] = []
        self._stop_after = -1  # see stop_after
        self._on_stop_after: Callable[[], None] = _nothing

    def start(self) -> None:
        for number in range(self._size):
            thread = threading.Thread(
                target=self._work, name=f"wsgiserve-worker-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # -- loop thread -----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self.in_flight += 1
        if self._call_soon is None:
            self._jobs.put(job)
            return
        pending = self._pending
        pending.append(job)
        if len(pending) == 1:
            self._call_soon(self._hand_over)

    def _hand_over(self) -> None:
        pending, self._pending = self._pending, []
        put = self._jobs.put
        for job in pending:
            put(job)

    def finished(self) -> None:
        """Report that one submitted job has completed (called on the loop thread)."""
        self.in_flight -= 1
        self.completed += 1
        if self.completed == self._stop_after:
            self._on_stop_after()

    def stop_after(self, count: int, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop thread once `count` jobs have completed."""
        self._stop_after = count
        self._on_stop_after = callback

    def statistics(self) -> dict[str, int]:
        busy = min(self.in_flight, self._size)
        return {
            "threads": self._size,
            "busy": busy,
            "idle": self._size - busy,
            "waiting": max(0, self.in_flight - self._size),
        }

    def stop(self, timeout: float | None = None) -> None:
        """Ask every thread to exit once the jobs queued before this call are done."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    # -- any thread --------------------------------------------------------------------

    def post(self, callback: Callable[[Any], None], argument: Any) -> None:
        """Run `callback(argument)` on the loop thread, batched with other posts."""
        self._completions.append((callback, argument))
        if not self._wake_pending:
            self._wake_pending = True
            try:  # noqa: SIM105 - a plain try is cheaper than suppress() on this hot path
                self._call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the server is gone, nobody to tell
                pass

    # -- internals ---------------------------------------------------------------------

    def _drain(self) -> None:
        # Clear the flag before popping: a post that lands after this line
        # schedules a fresh wake-up, so nothing is ever left behind.
        self._wake_pending = False
        self.wakeups += 1
        pop = self._completions.popleft
        while True:
            try:
                callback, argument = pop()
            except IndexError:
                break
            try:
                callback(argument)
            except Exception:
                log.exception("error in a completion callback")
        if self._after_batch:
            after, self._after_batch = self._after_batch, []
            for flush in after:
                try:
                    flush()
                except Exception:
                    log.exception("error in an after-batch callback")

    def after_batch(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop once the current batch of completions is done."""
        self._after_batch.append(callback)

    def _work(self) -> None:
        if self._batch_policy:
            _use_batch_policy()
        get = self._jobs.get
        handler = self._handler
        while True:
            job = get()
            if job is _STOP:
                return
            try:
                handler(job)
            except BaseException:  # the handler catches app errors; this is a last resort
                log.exception("unexpected error in a worker thread")
            job = None  # an idle thread must not keep its last request (and body) alive


def _nothing() -> None:
    pass


def _use_batch_policy() -> None:
    """Put the calling thread under SCHED_BATCH (Linux; elsewhere nothing happens).

    A thread woken with work normally preempts the running one, which on a busy core
    is the loop thread holding the GIL: the woken thread can only block on the GIL
    again, and the two trade places several times per hand-over. Under SCHED_BATCH
    the woken thread waits for the loop to block in epoll, then finds the GIL free.
    Its CPU share (its nice value) is unchanged; no privilege is needed.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: this thread (Linux)
    except OSError as error:  # a sandbox may forbid it: a missed saving, not a fault
        log.debug("SCHED_BATCH not available for the app threads: %s", error)
