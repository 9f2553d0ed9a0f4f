"""Pieces shared by the benchmark harnesses: wrk, CPU pinning, server processes.

``bench_quick`` (wsgiserve vs. a do-nothing responder) and ``bench`` (wsgiserve vs.
other WSGI servers) both build on these.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 20.0  # seconds
STOP_TIMEOUT = 5.0  # seconds
PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """A setup or run failure that aborts the benchmark with a clear message."""


# --------------------------------------------------------------------------- wrk output


@dataclass
class WrkResult:
    rps: float
    requests: int
    seconds: float
    latency_avg_ms: float | None
    latency_ms: dict[str, float]  # percentile ("50", "99", ...) -> milliseconds
    socket_errors: dict[str, int]  # connect/read/write/timeout
    non_2xx_3xx: int
    # Response bytes (head and body) per second; wrk counts in binary units (1 KB = 1024 B).
    transfer_bytes_per_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RE_LAT_AVG = re.compile(rf"^\s*Latency\s+{_TIME}", re.MULTILINE)
_RE_PCT = re.compile(rf"^\s*(\d+(?:\.\d+)?)%\s+{_TIME}\s*$", re.MULTILINE)
_RE_SOCK = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_RE_TRANSFER = re.compile(r"^Transfer/sec:\s+([\d.]+)([KMGTP]?)B", re.MULTILINE)
_BINARY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Parse the text wrk 4.x prints (with ``--latency``)."""
    rps_m = _RE_RPS.search(output)
    if rps_m is None:
        raise BenchError(f"could not find Requests/sec in wrk output:\n{output}")
    total_m = _RE_TOTAL.search(output)
    requests = int(total_m.group(1)) if total_m else 0
    seconds = _to_ms(total_m.group(2), total_m.group(3)) / 1000.0 if total_m else 0.0
    avg_m = _RE_LAT_AVG.search(output)
    pcts = {
        m.group(1).removesuffix(".0"): _to_ms(m.group(2), m.group(3))
        for m in _RE_PCT.finditer(output)
    }
    sock_m = _RE_SOCK.search(output)
    sock = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock_m.groups()), strict=True))
        if sock_m
        else {}
    )
    non2xx_m = _RE_NON2XX.search(output)
    transfer_m = _RE_TRANSFER.search(output)
    return WrkResult(
        rps=float(rps_m.group(1)),
        requests=requests,
        seconds=seconds,
        latency_avg_ms=_to_ms(avg_m.group(1), avg_m.group(2)) if avg_m else None,
        latency_ms=pcts,
        socket_errors=sock,
        non_2xx_3xx=int(non2xx_m.group(1)) if non2xx_m else 0,
        transfer_bytes_per_s=(
            float(transfer_m.group(1)) * _BINARY_UNITS[transfer_m.group(2)] if transfer_m else 0.0
        ),
    )


# --------------------------------------------------------------------------- CPU pinning


@dataclass(frozen=True)
class Pinning:
    server_cpu: int | None
    wrk_cpu: int | None
    use_taskset: bool

    def wrap(self, argv: list[str], cpu: int | None) -> list[str]:
        """Prefix ``taskset -c CPU`` when pinning via taskset."""
        if cpu is None or not self.use_taskset:
            return argv
        return ["taskset", "-c", str(cpu), *argv]

    def preexec(self, cpu: int | None, *, die_with_parent: bool) -> Callable[[], None] | None:
        """Child-side setup: affinity (if no taskset) and parent-death signal."""
        set_cpu = cpu if (cpu is not None and not self.use_taskset) else None
        if set_cpu is None and not die_with_parent:
            return None

        def _setup() -> None:
            if set_cpu is not None:
                os.sched_setaffinity(0, {set_cpu})
            if die_with_parent:
                _set_parent_death_signal()

        return _setup


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this (child) process if the benchmark dies abruptly."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def plan_pinning(server_cpu: int | None, wrk_cpu: int | None, *, no_pin: bool) -> Pinning:
    use_taskset = shutil.which("taskset") is not None
    if no_pin:
        print("note: --no-pin given; server and wrk run unpinned")
        return Pinning(None, None, use_taskset)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print(
            f"note: only {len(cpus)} usable CPU(s) {cpus}; need 2 to pin server and wrk "
            "apart. Running UNPINNED: server and wrk share the CPU, numbers are not "
            "comparable with pinned runs."
        )
        return Pinning(None, None, use_taskset)
    s_cpu = cpus[0] if server_cpu is None else server_cpu
    w_cpu = next(c for c in cpus if c != s_cpu) if wrk_cpu is None else wrk_cpu
    if s_cpu == w_cpu or s_cpu not in cpus or w_cpu not in cpus:
        raise BenchError(f"bad CPU choice server={s_cpu} wrk={w_cpu}; usable CPUs: {cpus}")
    return Pinning(s_cpu, w_cpu, use_taskset)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    argv: list[str]  # full command line, including any taskset prefix
    port: int
    preexec: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    startup_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    _t0: float = 0.0  # monotonic time of launch()

    @property
    def cmdline(self) -> str:
        return shlex.join(self.argv)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def start(self) -> None:
        """Launch the process and wait until its port accepts connections."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting (so several servers can boot at once)."""
        # Closed in stop(); a file (not a pipe) so a chatty server can never block on output.
        self.log = tempfile.TemporaryFile(prefix=f"bench-{self.name}-")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1") | self.env
        self._t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: we stop the whole group by id
                preexec_fn=self.preexec,  # harness is single-threaded
            )
        except OSError as exc:
            raise BenchError(f"{self.name}: cannot start {self.cmdline}: {exc}") from exc

    def wait_ready(self) -> None:
        """Poll-connect until the port accepts, the process dies, or time runs out."""
        deadline = self._t0 + READY_TIMEOUT
        while True:
            self.check_alive()
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name}: not accepting on {HOST}:{self.port} after "
                    f"{READY_TIMEOUT:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.startup_s = time.monotonic() - self._t0

    def check_alive(self) -> None:
        if self.proc is None:
            raise BenchError(f"{self.name}: not started")
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(f"{self.name}: exited with code {rc}\n{self.log_tail()}")

    def log_tail(self, limit: int = 4000) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - limit))
        text = self.log.read().decode("utf-8", "replace").rstrip()
        return f"--- {self.name} output (tail) ---\n{text}\n---" if text else "(no output)"

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # start_new_session=True made proc.pid the id of its own process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} (pid {proc.pid}) ignored SIGTERM; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        if self.log is not None:
            self.log.close()
            self.log = None


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}us" if value < 1 else f"{value:.2f}ms"


def median_opt(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: a crude run-to-run noise indicator."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "?"


def git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def run_wrk_argv(
    argv: list[str], duration: float, preexec: Callable[[], None] | None
) -> tuple[WrkResult, float]:
    """Run one wrk command; return the parsed result and wrk's CPU share (cpu s / wall s).

    The share comes from this process's reaped-children CPU time, so no other child
    may be reaped while wrk runs (servers are reaped only when they are stopped).

    Raises:
        BenchError: wrk failed or hung.
    """
    cpu0, t0 = children_cpu(), time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {shlex.join(argv)}") from exc
    if proc.returncode != 0:
        raise BenchError(
            f"wrk failed (rc={proc.returncode}): {shlex.join(argv)}\n{proc.stdout}{proc.stderr}"
        )
    share = (children_cpu() - cpu0) / (time.monotonic() - t0)
    return parse_wrk(proc.stdout), share


def line_buffered_stdout() -> None:
    """Progress lines show up at once under make or tee."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def run_main(bench: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """A benchmark's entry point: line-buffered progress, SIGTERM and Ctrl-C stop the
    servers cleanly, a setup failure is one line and exit status 2."""
    line_buffered_stdout()
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return bench(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
