"""Process helpers for ``bench``: a server's process-tree RSS and CPU, the idle holder."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO

import psutil

from benchmarks.common import REPO_ROOT, BenchError, Pinning

HOLDER_READY_TIMEOUT = 15.0  # seconds


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int | None:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    procs = _tree(pid)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total if procs else None


def tree_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process and its live descendants."""
    total = 0.0
    procs = _tree(pid)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total if procs else None


class Holder:
    """The idle-connection holder process (``benchmarks.idle_holder``) for one run."""

    def __init__(self, port: int, count: int, pinning: Pinning) -> None:
        self.argv = pinning.wrap(
            [sys.executable, "-m", "benchmarks.idle_holder", "--port", str(port),
             "--connections", str(count), "--lifetime", "300"],
            pinning.wrk_cpu,
        )  # fmt: skip
        self._preexec = pinning.preexec(pinning.wrk_cpu, die_with_parent=True)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start it and return its ``ready ...`` line."""
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        return self._line("ready", HOLDER_READY_TIMEOUT + 10)

    def open_count(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGUSR1)
        line = self._line("status", 5.0)
        for word in line.split():
            if word.startswith("open="):
                return int(word.removeprefix("open="))
        return None

    def _line(self, prefix: str, timeout: float) -> str:
        out: IO[str] | None = self.proc.stdout if self.proc is not None else None
        if out is None:
            raise BenchError("idle holder not started")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([out], [], [], left)
            if not ready:
                break
            line = out.readline()
            if not line:
                raise BenchError("idle holder exited early")
            if line.startswith(prefix):
                return line.strip()
        raise BenchError(f"idle holder printed no {prefix!r} line in {timeout:.0f}s")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
