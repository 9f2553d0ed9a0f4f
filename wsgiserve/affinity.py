"""Which CPUs a worker process runs on (--cpu-affinity).

A worker is one event-loop thread and its app threads, all taking turns on one GIL.
Left free, the kernel spreads them over the cores, and every hand-over of the GIL
becomes a wake-up on another core: with `-w 2` on two cores, workers pinned one to
a core served about twice the requests of unpinned ones (52k against 28k req/s for
a hello app here) on the same CPU time.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("wsgiserve.error")

AUTO = "auto"
OFF = "off"


def check(setting: str) -> None:
    """Raise ValueError unless `setting` is auto, off or a whole number of CPUs."""
    if setting in (AUTO, OFF):
        return
    if not setting.isdigit() or int(setting) < 1:
        raise ValueError(
            f"cpu_affinity: {setting!r} is not auto, off or a number of CPUs per worker "
            "(uWSGI's cpu-affinity): use --cpu-affinity auto, off or 1, 2, ..."
        )


def worker_cpus(setting: str, workers: int, slot: int, available: list[int]) -> set[int] | None:
    """The CPUs the worker in `slot` is pinned to, or None to leave it to the kernel.

    Args:
        setting: auto (one CPU per worker when there are at least as many workers as
            CPUs, so that no worker has cores to itself it could use), off, or N CPUs
            per worker, handed out in turn as uWSGI's cpu-affinity does.
        workers: the number of worker processes.
        slot: the worker's place among them (0, 1, ...); -1 when it has none.
        available: the CPUs this process may run on, in order.
    """
    if setting == OFF or slot < 0 or not available:
        return None
    count = len(available)
    if setting == AUTO:
        if count < 2 or workers < count:
            return None
        per_worker = 1
    else:
        per_worker = min(int(setting), count)
    first = slot * per_worker
    return {available[(first + step) % count] for step in range(per_worker)}


def pin_worker(setting: str, workers: int, slot: int) -> None:
    """Pin this (just forked, single-threaded) worker; threads it starts later inherit it."""
    if not hasattr(os, "sched_setaffinity"):
        return  # not Linux: the kernel decides
    cpus = worker_cpus(setting, workers, slot, sorted(os.sched_getaffinity(0)))
    if cpus is None:
        return
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as error:  # a container's cpuset may forbid it: run unpinned
        log.warning("worker %d cannot be pinned to CPUs %s: %s", os.getpid(), sorted(cpus), error)
