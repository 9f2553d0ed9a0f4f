"""--cpu-affinity pins each worker process, threads included, to its share of the CPUs."""

from __future__ import annotations

import os
import re

import pytest

from .support import APPS, ServerProcess, start_server

pytestmark = pytest.mark.timeout(60)

APP = f"{APPS}.proxy_app:app"
BOOTING = re.compile(r"Booting worker with pid: (\d+)")


def _workers(server: ServerProcess, count: int) -> list[int]:
    return [int(m[1]) for m in server.log.wait_for(BOOTING, count=count, timeout=20)]


def _threads_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets the worker's threads may run on (one set when they all agree)."""
    return {
        frozenset(os.sched_getaffinity(int(thread))) for thread in os.listdir(f"/proc/{pid}/task")
    }


def test_one_cpu_per_worker_each_on_its_own() -> None:
    available = sorted(os.sched_getaffinity(0))
    server = start_server(APP, "-w", "2", "--cpu-affinity", "1")
    try:
        workers = _workers(server, 2)
        pinned = sorted(sorted(cpus) for pid in workers for cpus in _threads_cpus(pid))
        expected = sorted([[available[0]], [available[1 % len(available)]]])
        assert pinned == expected  # and every thread of a worker on its worker's CPU
        assert len(_threads_cpus(workers[0])) == 1
    finally:
        server.stop()


def test_off_leaves_the_workers_on_every_cpu() -> None:
    available = frozenset(os.sched_getaffinity(0))
    server = start_server(APP, "-w", "2", "--cpu-affinity", "off")
    try:
        for pid in _workers(server, 2):
            assert _threads_cpus(pid) == {available}
    finally:
        server.stop()
