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
import http.client
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    REPO_ROOT,
    BenchError,
    Pinning,
    Server,
    WrkResult,
    fmt_ms,
    fmt_pct,
    free_port,
    git_rev,
    median_opt,
    pkg_version,
    plan_pinning,
    run_main,
    run_wrk_argv,
    spread,
    wrk_version,
)
from benchmarks.procs import tree_cpu

TARGET_RATIO = 0.35
EXPECTED_BODY = b"Hello, World!"
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "quick.json"
DEFAULT_APP = "benchmarks.apps:hello"
DEFAULT_WSGISERVE_CMD = (
    "{python} -m wsgiserve {app} -b {host}:{port} --threads {threads} --log-level warning"
)
NOOP_CMD = "{python} -m benchmarks.noop_responder --host {host} --port {port}"
NOISY_SPREAD = 0.20
# A saturated server pinned to its own CPU should get nearly all of it; less means
# something else ran there (another benchmark, a test suite...) during the run.
STARVED_CPU_SHARE = 0.85
CLIENT_BOUND_SHARE = 0.95


def server_cpu(server: Server) -> float | None:
    """CPU seconds of the server's whole process tree: wsgiserve's work is done in its
    worker process, not in the supervisor whose pid we started."""
    return None if server.proc is None else tree_cpu(server.proc.pid)


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
    result, share = run_wrk_argv(
        argv, duration, pinning.preexec(pinning.wrk_cpu, die_with_parent=True)
    )
    return argv, result, share


def progress_line(run: Run, rounds: int) -> str:
    r = run.result
    err = f"errors {r.errors}"
    if r.errors:
        err += f" ({r.socket_errors}, non-2xx/3xx {r.non_2xx_3xx})"
    cpu = f"server cpu {fmt_pct(run.server_cpu_share):>4} wrk cpu {fmt_pct(run.wrk_cpu_share):>4}"
    flag = " STARVED" if is_starved(run) else " CLIENT-BOUND" if is_client_bound(run) else ""
    return (
        f"[round {run.round}/{rounds}] {run.server:<10} {r.rps:>11,.0f} req/s  "
        f"p50 {fmt_ms(r.latency_ms.get('50')):>8}  p99 {fmt_ms(r.latency_ms.get('99')):>8}  "
        f"{cpu}  {err}{flag}"
    )


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
        p50_ms=median_opt([r.latency_ms.get("50") for r in mine]),
        p99_ms=median_opt([r.latency_ms.get("99") for r in mine]),
        errors=sum(r.errors for r in mine),
        rps=[r.rps for r in mine],
        median_rps_per_cpu=statistics.median(per_cpu) if per_cpu else None,
    )


# --------------------------------------------------------------------------- main


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
                cpu0, t0 = server_cpu(srv), time.monotonic()
                argv, result, wrk_share = run_wrk(cfg, srv.url, cfg.duration, pinning)
                cpu1, t1 = server_cpu(srv), time.monotonic()
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
            f"{s.server:<10} {s.median_rps:>13,.0f} {per_cpu:>10} {fmt_ms(s.p50_ms):>9} "
            f"{fmt_ms(s.p99_ms):>9} {s.errors:>7}  " + " ".join(f"{v:,.0f}" for v in s.rps)
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
            "git_rev": git_rev(),
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
                "wrk": wrk_version(),
                "uvloop": pkg_version("uvloop"),
                "httptools": pkg_version("httptools"),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")

    return 1 if (args.fail_below and verdict != "PASS") else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(bench, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
