"""Workers' open connections, shared, so that no worker takes more than its share.

All workers accept from one listening socket, and the kernel hands each new
connection to whichever worker calls accept() first: the one that happens to be
awake takes a whole burst, and a keep-alive connection stays where it landed. So
one slow or crashed worker can hold most clients. Each worker writes its count of
open connections into a slot of a shared anonymous mapping (made by the
supervisor before it forks); a worker holding more than the least-loaded live
sibling plus some slack stops accepting until it is back within its share.
Connections it leaves in the kernel's queue are taken by its siblings: nothing is
refused or lost. Only siblings that accept count: a worker writes first once it
listens, and leaves when it stops; one that has not written for `STALE_AFTER`
seconds (wedged, or gone) does not count either, so no worker waits for one that
is loading its app, draining, stuck or dead.

Writes are single aligned 8-byte stores, so a reader sees each number whole;
counts and stamps may be one update apart, which only delays a decision.
"""

from __future__ import annotations

import mmap
import time

SLOTS = 256  # more workers than this share no balance (each still serves)
FIELDS = 3  # per slot: owner pid (0: free), open connections, last write (monotonic s)
STALE_AFTER = 3.0  # seconds: a slot older than this is a worker that cannot take connections
MIN_SLACK = 4  # connections: below this much imbalance nobody stops accepting


def over_share(mine: int, others: list[int]) -> bool:
    """Whether a worker with `mine` open connections should stop accepting, given the
    counts of its live siblings: above the least loaded one by more than a quarter of
    that count (and at least `MIN_SLACK`)."""
    if not others:
        return False
    least = min(others)
    return mine > least + max(MIN_SLACK, least // 4)


def back_in_share(mine: int, others: list[int]) -> bool:
    """Whether a worker that stopped accepting may start again: within half the slack of
    the least loaded live sibling (the gap keeps it from flapping), or alone."""
    if not others:
        return True
    least = min(others)
    return mine <= least + max(MIN_SLACK, least // 4) // 2


class SharedCounts:
    """The mapping of every worker's slot; made in the supervisor, inherited by forks.

    Cell 0 is one past the highest slot ever claimed (readers look no further); slot i
    is the cells 1 + 3i: taken (1.0) or free (0.0), open connections, last write.
    """

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, (1 + SLOTS * FIELDS) * 8)
        self._cells = memoryview(self._memory).cast("d")

    def claim(self) -> int:
        """Supervisor, before forking a worker: a free slot for it (-1 when none is)."""
        cells = self._cells
        for slot in range(SLOTS):
            at = 1 + slot * FIELDS
            if not cells[at]:
                cells[at + 1] = 0
                cells[at + 2] = 0.0  # not counted until the worker accepts (its first write)
                cells[at] = 1
                cells[0] = max(cells[0], slot + 1)
                return slot
        return -1

    def release(self, slot: int) -> None:
        """Supervisor: the worker of `slot` is gone."""
        if slot >= 0:
            self._cells[1 + slot * FIELDS] = 0

    def write(self, slot: int, count: int, now: float | None = None) -> None:
        """Worker: its open connections at `now` (monotonic seconds; default: now)."""
        cells = self._cells
        at = 1 + slot * FIELDS
        cells[at + 1] = count
        cells[at + 2] = time.monotonic() if now is None else now

    def leave(self, slot: int) -> None:
        """Worker: it accepts no more (stopping), so its count is no share to measure by."""
        self._cells[1 + slot * FIELDS + 2] = 0.0

    def others(self, slot: int, now: float | None = None) -> list[int]:
        """Worker: the open connections of its live siblings (written within
        `STALE_AFTER` seconds of `now`)."""
        cells = self._cells
        fresh = (time.monotonic() if now is None else now) - STALE_AFTER
        counts = []
        for other in range(int(cells[0])):
            at = 1 + other * FIELDS
            if other != slot and cells[at] and cells[at + 2] >= fresh:
                counts.append(int(cells[at + 1]))
        return counts
