"""Quick throughput check: wsgiserve vs. a do-nothing uvloop+httptools responder.

Both servers run in this session, each pinned to one CPU; ``wrk`` is pinned to
another. Runs are interleaved (noop, wsgiserve, noop, wsgiserve, ...) so that
machine noise hits both sides alike, and the median of each side is kept. The
result is the ratio ``wsgiserve / noop``; the target is >= 0.35.

Run from the repository root::

    python -m benchmarks.bench_quick [--duration 5] [--connections 64] [--threads 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import io
import json
import os
import platform
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

TARGET_RATIO = 0.35
HOST = "127.0.0.1"
EXPECTED_BODY = b"Hello, World!"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "quick.json"
DEFAULT_APP = "benchmarks.apps:hello"
DEFAULT_WSGISERVE_CMD = (
    "{python} -m wsgiserve {app} -b {host}:{port} --threads {threads} --log-level warning"
)
NOOP_CMD = "{python} -m benchmarks.noop_responder --host {host} --port {port}"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1
NOISY_SPREAD = 0.20
# A saturated server pinned to its own CPU should get nearly all of it; less means
# something else ran there (another benchmark, a test suite...) during the run.
STARVED_CPU_SHARE = 0.85
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_BOUND_SHARE = 0.95


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
    return WrkResult(
        rps=float(rps_m.group(1)),
        requests=requests,
        seconds=seconds,
        latency_avg_ms=_to_ms(avg_m.group(1), avg_m.group(2)) if avg_m else None,
        latency_ms=pcts,
        socket_errors=sock,
        non_2xx_3xx=int(non2xx_m.group(1)) if non2xx_m else 0,
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

    @property
    def cmdline(self) -> str:
        return shlex.join(self.argv)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def start(self) -> None:
        # Closed in stop(); a file (not a pipe) so a chatty server can never block on output.
        self.log = tempfile.TemporaryFile(prefix=f"bench-{self.name}-")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
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
        self._wait_ready(t0)
        self.startup_s = time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        """Poll-connect until the port accepts, the process dies, or time runs out."""
        deadline = t0 + READY_TIMEOUT
        while True:
            self.check_alive()
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name}: not accepting on {HOST}:{self.port} after "
                    f"{READY_TIMEOUT:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User+system CPU time of the server process (all threads), from /proc."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # After "pid (comm)": field 3 is state, so utime/stime (fields 14/15) are at 11/12.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

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


def sanity_check(server: Server) -> None:
    """One real GET before benchmarking: a fast stream of 500s is not a result."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{server.name}: GET / failed: {exc!r}\n{server.log_tail()}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(
            f"{server.name}: GET / returned {resp.status} {resp.reason}: {body[:200]!r}\n"
            f"{server.log_tail()}"
        )
    if body != EXPECTED_BODY:
        print(f"warning: {server.name}: GET / body is {body[:60]!r}, expected {EXPECTED_BODY!r}")


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[None]:
    try:
        for srv in servers:
            print(f"starting {srv.name}: {srv.cmdline}")
            srv.start()
            print(
                f"  {srv.name} ready on {srv.url} (pid {srv.proc.pid if srv.proc else '?'}, "
                f"{srv.startup_s:.2f}s)"
            )
            sanity_check(srv)
        yield
    finally:
        for srv in servers:
            srv.stop()


# --------------------------------------------------------------------------- wrk runs


@dataclass
class Run:
    server: str
    round: int
    result: WrkResult
    server_cpu_share: float | None = None  # server CPU seconds / wall seconds
    wrk_cpu_share: float | None = None  # wrk CPU seconds / wall seconds


@dataclass
class Config:
    duration: int
    connections: int
    wrk_threads: int
    warmup: int
    rounds: int
    wrk_timeout: str


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(
    cfg: Config, url: str, duration: int, pinning: Pinning
) -> tuple[list[str], WrkResult, float]:
    """Run wrk once; return its argv, parsed result and its own CPU share (cpu s / wall s)."""
    argv = pinning.wrap(
        [
            "wrk",
            f"-t{cfg.wrk_threads}",
            f"-c{cfg.connections}",
            f"-d{duration}s",
            f"--timeout={cfg.wrk_timeout}",
            "--latency",
            url,
        ],
        pinning.wrk_cpu,
    )
    cpu0, t0 = _children_cpu(), time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
            preexec_fn=pinning.preexec(pinning.wrk_cpu, die_with_parent=True),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {shlex.join(argv)}") from exc
    if proc.returncode != 0:
        raise BenchError(
            f"wrk failed (rc={proc.returncode}): {shlex.join(argv)}\n{proc.stdout}{proc.stderr}"
        )
    # Servers are reaped only at the end, so the children delta here is wrk alone.
    share = (_children_cpu() - cpu0) / (time.monotonic() - t0)
    return argv, parse_wrk(proc.stdout), share


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}us" if value < 1 else f"{value:.2f}ms"


def _median_opt(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def progress_line(run: Run, rounds: int) -> str:
    r = run.result
    err = f"errors {r.errors}"
    if r.errors:
        err += f" ({r.socket_errors}, non-2xx/3xx {r.non_2xx_3xx})"
    cpu = f"server cpu {_pct(run.server_cpu_share):>4} wrk cpu {_pct(run.wrk_cpu_share):>4}"
    flag = " STARVED" if is_starved(run) else " CLIENT-BOUND" if is_client_bound(run) else ""
    return (
        f"[round {run.round}/{rounds}] {run.server:<10} {r.rps:>11,.0f} req/s  "
        f"p50 {_fmt_ms(r.latency_ms.get('50')):>8}  p99 {_fmt_ms(r.latency_ms.get('99')):>8}  "
        f"{cpu}  {err}{flag}"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def is_client_bound(run: Run) -> bool:
    """wrk used (nearly) its whole CPU: the server may not have been saturated."""
    return run.wrk_cpu_share is not None and run.wrk_cpu_share >= CLIENT_BOUND_SHARE


def is_starved(run: Run) -> bool:
    """Neither side used its CPU fully: something else ran on the server's CPU."""
    share = run.server_cpu_share
    return share is not None and share < STARVED_CPU_SHARE and not is_client_bound(run)


@dataclass
class Summary:
    server: str
    median_rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    rps: list[float]
    # Requests per CPU-second of the server process: throughput with the CPU the
    # server actually got factored out. Far less sensitive to neighbours than req/s.
    median_rps_per_cpu: float | None


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: a crude run-to-run noise indicator."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def summarize(runs: Sequence[Run], name: str) -> Summary:
    mine_runs = [r for r in runs if r.server == name]
    mine = [r.result for r in mine_runs]
    per_cpu = [
        r.result.rps / r.server_cpu_share
        for r in mine_runs
        if r.server_cpu_share is not None and r.server_cpu_share > 0.05
    ]
    return Summary(
        server=name,
        median_rps=statistics.median(r.rps for r in mine),
        p50_ms=_median_opt([r.latency_ms.get("50") for r in mine]),
        p99_ms=_median_opt([r.latency_ms.get("99") for r in mine]),
        errors=sum(r.errors for r in mine),
        rps=[r.rps for r in mine],
        median_rps_per_cpu=statistics.median(per_cpu) if per_cpu else None,
    )


# --------------------------------------------------------------------------- main


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "?"


def _git_rev() -> str | None:
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


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_quick",
        description="wrk: wsgiserve vs. do-nothing uvloop+httptools responder (ratio target "
        f">= {TARGET_RATIO}).",
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=8, help="wsgiserve --threads (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    p.add_argument("--wrk-timeout", default="2s", help="wrk --timeout (default 2s)")
    p.add_argument(
        "--warmup", type=int, default=1, help="unrecorded warm-up seconds per server (default 1)"
    )
    p.add_argument("--app", default=DEFAULT_APP, help=f"WSGI app (default {DEFAULT_APP})")
    p.add_argument(
        "--wsgiserve-cmd",
        default=DEFAULT_WSGISERVE_CMD,
        help="command template for the server under test; placeholders {python} {app} "
        "{host} {port} {threads} (default: %(default)s)",
    )
    p.add_argument("--server-cpu", type=int, default=None, help="CPU for servers (default 1st)")
    p.add_argument("--wrk-cpu", type=int, default=None, help="CPU for wrk (default 2nd)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--target", type=float, default=TARGET_RATIO, help="ratio target")
    p.add_argument(
        "--fail-below", action="store_true", help="exit 1 if the ratio is below the target"
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="JSON result path")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON result")
    return p


def _validate(args: argparse.Namespace) -> None:
    for name in ("duration", "connections", "threads", "rounds", "wrk_threads"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        raise BenchError("--warmup must be >= 0")
    if args.connections < args.wrk_threads:
        raise BenchError("--connections must be >= --wrk-threads")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def bench(args: argparse.Namespace) -> int:
    _validate(args)
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found on PATH; install wrk: apt-get install -y wrk")
    pinning = plan_pinning(args.server_cpu, args.wrk_cpu, no_pin=args.no_pin)
    if pinning.server_cpu is not None:
        how = "taskset" if pinning.use_taskset else "sched_setaffinity"
        print(f"pinning: servers -> CPU {pinning.server_cpu}, wrk -> CPU {pinning.wrk_cpu} ({how})")
    load_before = os.getloadavg()
    print(f"load average: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")

    fields = {
        "python": shlex.quote(sys.executable),
        "app": shlex.quote(args.app),
        "host": HOST,
        "threads": str(args.threads),
    }
    servers: list[Server] = []
    for name, template in (("noop", NOOP_CMD), ("wsgiserve", args.wsgiserve_cmd)):
        port = free_port()
        try:
            base = shlex.split(template.format(port=port, **fields))
        except (KeyError, IndexError, ValueError) as exc:
            raise BenchError(f"bad command template {template!r}: {exc!r}") from exc
        servers.append(
            Server(
                name=name,
                argv=pinning.wrap(base, pinning.server_cpu),
                port=port,
                preexec=pinning.preexec(pinning.server_cpu, die_with_parent=True),
            )
        )

    cfg = Config(
        duration=args.duration,
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        warmup=args.warmup,
        rounds=args.rounds,
        wrk_timeout=args.wrk_timeout,
    )
    runs: list[Run] = []
    wrk_cmds: dict[str, str] = {}
    t_start = time.time()
    with running(servers):
        if cfg.warmup:
            for srv in servers:
                run_wrk(cfg, srv.url, cfg.warmup, pinning)  # result discarded
                srv.check_alive()
            print(f"warm-up done ({cfg.warmup}s each)")
        for rnd in range(1, cfg.rounds + 1):
            for srv in servers:
                srv.check_alive()
                cpu0, t0 = srv.cpu_seconds(), time.monotonic()
                argv, result, wrk_share = run_wrk(cfg, srv.url, cfg.duration, pinning)
                cpu1, t1 = srv.cpu_seconds(), time.monotonic()
                srv.check_alive()
                wrk_cmds[srv.name] = shlex.join(argv)
                share = (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else None
                run = Run(srv.name, rnd, result, server_cpu_share=share, wrk_cpu_share=wrk_share)
                runs.append(run)
                print(progress_line(run, cfg.rounds), flush=True)
    load_after = os.getloadavg()

    noop, wsgi = summarize(runs, "noop"), summarize(runs, "wsgiserve")
    ratio = wsgi.median_rps / noop.median_rps if noop.median_rps else 0.0
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        by_round.setdefault(r.round, {})[r.server] = r.result.rps
    round_ratios = [
        v["wsgiserve"] / v["noop"] for _, v in sorted(by_round.items()) if v.get("noop")
    ]
    verdict = "PASS" if ratio >= args.target else "BELOW"

    print()
    print("wrk command: " + wrk_cmds.get("noop", "?").replace(servers[0].url, "<url>"))
    for srv in servers:
        print(f"{srv.name} command: {srv.cmdline}")
    print()
    header = (
        f"{'server':<10} {'median req/s':>13} {'req/cpu-s':>10} {'p50':>9} {'p99':>9} "
        f"{'errors':>7}  runs req/s"
    )
    print(header)
    print("-" * len(header))
    for s in (noop, wsgi):
        per_cpu = "-" if s.median_rps_per_cpu is None else f"{s.median_rps_per_cpu:,.0f}"
        print(
            f"{s.server:<10} {s.median_rps:>13,.0f} {per_cpu:>10} {_fmt_ms(s.p50_ms):>9} "
            f"{_fmt_ms(s.p99_ms):>9} {s.errors:>7}  " + " ".join(f"{v:,.0f}" for v in s.rps)
        )
    print()
    print(f"ratio wsgiserve/noop: {ratio:.3f}   (target >= {args.target:.2f})   {verdict}")
    print(
        "per-round ratios:     "
        + " ".join(f"{x:.3f}" for x in round_ratios)
        + f"   (median {statistics.median(round_ratios):.3f})"
    )
    cpu_ratio = (
        wsgi.median_rps_per_cpu / noop.median_rps_per_cpu
        if wsgi.median_rps_per_cpu and noop.median_rps_per_cpu
        else None
    )
    if cpu_ratio is not None:
        print(
            f"per-CPU-second ratio: {cpu_ratio:.3f}   (req/cpu-s; cross-check, robust to "
            "a busy machine)"
        )
    noisy = [s.server for s in (noop, wsgi) if spread(s.rps) > NOISY_SPREAD]
    if noisy:
        print(
            f"NOISY: run-to-run spread above {NOISY_SPREAD:.0%} for {', '.join(noisy)} "
            "(machine busy?); rerun, or add --rounds, before trusting the ratio."
        )
    print(
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"({os.cpu_count()} CPUs)"
    )
    starved = [r for r in runs if is_starved(r)]
    if starved and pinning.server_cpu is not None:
        print(
            f"STARVED: {len(starved)} of {len(runs)} runs got < {STARVED_CPU_SHARE:.0%} of the "
            f"server CPU ({pinning.server_cpu}); something else was running there. Medians "
            "include them; rerun when the machine is quiet."
        )
    client_bound = [r for r in runs if is_client_bound(r)]
    if client_bound:
        names = sorted({r.server for r in client_bound})
        print(
            f"CLIENT-BOUND: wrk used >= {CLIENT_BOUND_SHARE:.0%} of its CPU in "
            f"{len(client_bound)} run(s) ({', '.join(names)}); those req/s are wrk's limit, "
            "not the server's (the ratio then flatters wsgiserve)."
        )
    if noop.errors or wsgi.errors:
        print(
            "WARNING: wrk reported socket errors or non-2xx/3xx responses (see progress "
            "lines); req/s for that server is not trustworthy."
        )

    if not args.no_json:
        payload: dict[str, Any] = {
            "timestamp": t_start,
            "git_rev": _git_rev(),
            "target": args.target,
            "ratio": ratio,
            "verdict": verdict,
            "round_ratios": round_ratios,
            "per_cpu_ratio": cpu_ratio,
            "noisy": noisy,
            "starved_runs": len(starved),
            "summary": {s.server: asdict(s) for s in (noop, wsgi)},
            "runs": [
                {
                    "server": r.server,
                    "round": r.round,
                    "server_cpu_share": r.server_cpu_share,
                    "wrk_cpu_share": r.wrk_cpu_share,
                    **asdict(r.result),
                }
                for r in runs
            ],
            "config": asdict(cfg) | {"wsgiserve_threads": args.threads, "app": args.app},
            "commands": {srv.name: srv.cmdline for srv in servers} | {"wrk": wrk_cmds},
            "env": {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "affinity": sorted(os.sched_getaffinity(0)),
                "server_cpu": pinning.server_cpu,
                "wrk_cpu": pinning.wrk_cpu,
                "load_before": load_before,
                "load_after": load_after,
                "wrk": _wrk_version(),
                "uvloop": _pkg_version("uvloop"),
                "httptools": _pkg_version("httptools"),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")

    return 1 if (args.fail_below and verdict != "PASS") else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up under make/tee
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return bench(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
