"""The per-connection write gate: how a worker thread waits for a slow client.

The loop flips it (`pause` / `resume` from the transport's `pause_writing` /
`resume_writing`, `written` once bytes reach the transport, `abort` on
disconnect); a worker calls `reserve(n)` before it posts `n` bytes. The worker
blocks while the transport is above its high-water mark, or while more than
`limit` bytes are on their way to the loop, so a client that stops reading
costs a bounded amount of memory and one parked thread.

The condition variable is created on the first wait only: most responses never
wait, and idle connections should stay small.
"""

from __future__ import annotations

import threading

from .errors import ClientDisconnected

IN_TRANSIT_LIMIT = 256 * 1024  # bytes posted by the worker but not yet given to the transport

_create_lock = threading.Lock()


class ResponseBudget:
    """The response bytes one worker process holds for clients that stopped reading.

    The loop counts what sits in the transports of stalled connections (`change`);
    past `limit`, `over` is set and every writer waits at its gate, so a crowd of
    slow readers costs a bounded amount of memory (and the minimum download rate
    frees them). `limit` 0: no budget.
    """

    __slots__ = ("_waiting", "limit", "over", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0  # loop thread
        self.over = False  # written by the loop, read by writers
        self._waiting: set[WriteGate] = set()  # gates whose writer waits for room

    def change(self, delta: int) -> None:
        """Loop thread: the stalled transports now hold `delta` more bytes."""
        self.used += delta
        over = bool(self.limit) and self.used > self.limit
        if over == self.over:
            return
        self.over = over
        if not over:
            for gate in list(self._waiting):  # copied whole under the GIL
                gate._wake()


class WriteGate:
    __slots__ = (
        "_budget",
        "_cond",
        "_posted",
        "_waiting",
        "_written",
        "closed",
        "limit",
        "paused",
    )

    def __init__(self, limit: int = IN_TRANSIT_LIMIT, budget: ResponseBudget | None = None) -> None:
        self.limit = limit
        self._budget = budget
        self.paused = False
        self.closed = False
        self._posted = 0  # written by the worker thread only
        self._written = 0  # written by the loop thread only
        self._waiting = False
        self._cond: threading.Condition | None = None

    # -- worker thread -----------------------------------------------------------------

    def reserve(self, size: int) -> None:
        """Block until `size` more bytes may be posted; raise `ClientDisconnected` if gone."""
        if self.closed:
            raise ClientDisconnected("client disconnected")
        budget = self._budget
        if (
            self.paused
            or self._posted - self._written > self.limit
            or (budget is not None and budget.over)
        ):
            self._wait()
        self._posted += size

    def _wait(self) -> None:
        cond = self._cond
        if cond is None:
            with _create_lock:
                if self._cond is None:
                    self._cond = threading.Condition()
                cond = self._cond
        budget = self._budget
        if budget is not None:
            budget._waiting.add(self)  # before the check below: a wake-up is never lost
        with cond:
            self._waiting = True
            try:
                while not self.closed and (
                    self.paused
                    or self._posted - self._written > self.limit
                    or (budget is not None and budget.over)
                ):
                    cond.wait()
            finally:
                self._waiting = False
                if budget is not None:
                    budget._waiting.discard(self)
        if self.closed:
            raise ClientDisconnected("client disconnected")

    # -- loop thread -------------------------------------------------------------------

    def written(self, size: int) -> None:
        self._written += size
        if self._waiting:
            self._wake()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if self._waiting:
            self._wake()

    def abort(self) -> None:
        """Open the gate for good: every waiter wakes and raises `ClientDisconnected`."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        # State is updated before `_cond` is read, and the worker re-checks the state
        # under the lock before it waits, so a wake-up can never be lost.
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()
