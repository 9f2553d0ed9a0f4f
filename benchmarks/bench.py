"""wsgiserve against other WSGI servers, scenario by scenario (``make bench``).

Every server runs the same app from ``benchmarks/apps.py`` with the same number of
threads, in one process pinned to one CPU (``taskset -c 0``); wrk is pinned to
another (``taskset -c 1``). For each scenario all servers are started, then wrk runs
against them in interleaved rounds (A B C A B C ...) so that a busy moment on a
shared machine hits every server alike; the median of each figure is kept.

Run it from the repository root inside ``benchmarks/.venv-bench`` (``make bench``
creates it)::

    benchmarks/.venv-bench/bin/python -m benchmarks.bench \\
        [--scenarios hello,big] [--servers wsgiserve,granian] [--duration 3] [--rounds 3]

Output: a Markdown table per scenario (also ``benchmarks/results/bench.md``), the
JSON record ``benchmarks/results/bench.json`` and the chart ``bench.png`` beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import peers as peers_mod
from benchmarks import report
from benchmarks import scenarios as scenarios_mod
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
    plan_pinning,
    run_main,
    run_wrk_argv,
)
from benchmarks.peers import Launch, Peer
from benchmarks.procs import Holder, tree_cpu, tree_rss
from benchmarks.scenarios import Scenario

RESULTS = REPO_ROOT / "benchmarks" / "results"
BJOERN_NOTE = REPO_ROOT / "benchmarks" / ".venv-bench" / "bjoern-unavailable.txt"


@dataclass
class Run:
    """One wrk run against one server."""

    server: str
    round: int
    wrk: WrkResult
    rss_bytes: int | None  # whole process tree, right after the run
    server_cpu_share: float | None  # process tree CPU seconds / wall seconds
    wrk_cpu_share: float
    idle_open: int | None = None  # idle scenario: holder connections still open after the run


@dataclass
class ScenarioResult:
    scenario: Scenario
    threads: int
    runs: list[Run] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # server -> command line
    wrk_command: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # server -> why
    idle_ready: dict[str, str] = field(default_factory=dict)  # server -> holder's ready line


# --------------------------------------------------------------------------- one scenario


def sanity_check(server: Server, sc: Scenario) -> str | None:
    """One real request before measuring; a reason to skip the server, or None."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        if sc.post_body is None:
            conn.request("GET", "/")
        else:
            conn.request("POST", "/", body=sc.post_body)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"request failed: {exc!r}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"answered {resp.status} {resp.reason}: {body[:200]!r}"
    if body != sc.expect_body:
        return f"wrong body: {len(body)} bytes {body[:40]!r}..., expected {len(sc.expect_body)}"
    return None


def wrk_argv(sc: Scenario, url: str, duration: int, args: argparse.Namespace) -> list[str]:
    return [
        "wrk",
        f"-t{sc.wrk_threads}",
        f"-c{sc.connections}",
        f"-d{duration}s",
        f"--timeout={args.wrk_timeout}",
        "--latency",
        *sc.wrk_extra,
        url,
    ]


def progress_line(sc: Scenario, run: Run, rounds: int) -> str:
    w = run.wrk
    err = f"errors {w.errors}"
    if w.errors:
        err += f" ({w.socket_errors}, non-2xx/3xx {w.non_2xx_3xx})"
    rss = "-" if run.rss_bytes is None else f"{run.rss_bytes / (1 << 20):.0f}MiB"
    idle = "" if run.idle_open is None else f"  idle open {run.idle_open}"
    flag = (
        " CLIENT-BOUND"
        if run.wrk_cpu_share >= report.CLIENT_BOUND_SHARE
        else " STARVED"
        if report.is_starved(sc, run)
        else ""
    )
    return (
        f"[{sc.name} {run.round}/{rounds}] {run.server:<16} {w.rps:>10,.0f} req/s "
        f"{w.transfer_bytes_per_s / (1 << 20):>8.1f} MiB/s  p50 {fmt_ms(w.latency_ms.get('50')):>7}"
        f"  p99 {fmt_ms(w.latency_ms.get('99')):>8}  rss {rss:>6}  cpu server "
        f"{fmt_pct(run.server_cpu_share):>4} wrk {fmt_pct(run.wrk_cpu_share):>4}  {err}{idle}{flag}"
    )


@contextlib.contextmanager
def started(servers: list[Server], res: ScenarioResult, sc: Scenario) -> Iterator[list[Server]]:
    """Start every server at once; yield those that came up and answered correctly."""
    try:
        for srv in servers:
            print(f"  starting {srv.name}: {srv.cmdline}")
            srv.launch()
        ok: list[Server] = []
        for srv in servers:
            try:
                srv.wait_ready()
                problem = sanity_check(srv, sc)
            except BenchError as exc:
                problem = str(exc)
            if problem is None:
                ok.append(srv)
            else:
                res.skipped[srv.name] = problem.splitlines()[0]
                print(f"  SKIPPED {srv.name}: {problem}")
                srv.stop()
        yield ok
    finally:
        for srv in servers:
            srv.stop()


def measure(
    sc: Scenario, srv: Server, rnd: int, args: argparse.Namespace, pinning: Pinning,
    res: ScenarioResult,
) -> Run:  # fmt: skip
    assert srv.proc is not None
    holder = None
    try:
        if sc.idle_connections:
            holder = Holder(srv.port, sc.idle_connections, pinning)
            res.idle_ready[srv.name] = holder.start()
        argv = pinning.wrap(wrk_argv(sc, srv.url, args.duration, args), pinning.wrk_cpu)
        res.wrk_command = shlex.join(argv).replace(srv.url, "<url>")
        cpu0, t0 = tree_cpu(srv.proc.pid), time.monotonic()
        result, wrk_share = run_wrk_argv(
            argv, args.duration, pinning.preexec(pinning.wrk_cpu, die_with_parent=True)
        )
        cpu1, t1 = tree_cpu(srv.proc.pid), time.monotonic()
        srv.check_alive()
        share = (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else None
        idle_open = holder.open_count() if holder is not None else None
        return Run(srv.name, rnd, result, tree_rss(srv.proc.pid), share, wrk_share, idle_open)
    finally:
        if holder is not None:
            holder.stop()


def run_scenario(
    sc: Scenario, chosen: list[Peer], args: argparse.Namespace, pinning: Pinning
) -> ScenarioResult:
    res = ScenarioResult(sc, args.threads)
    pin = pinning if sc.pinned else Pinning(None, None, pinning.use_taskset)
    bindir = Path(sys.executable).parent
    servers: list[Server] = []
    for peer in chosen:
        if sc.workers > 1 and not peer.multi_process:
            res.skipped[peer.name] = "no multi-process mode"
            continue
        port = free_port()
        launch = Launch(sys.executable, bindir, sc.app, port, args.threads, sc.workers)
        servers.append(
            Server(
                name=peer.name,
                argv=pin.wrap(peer.argv(launch), pin.server_cpu),
                port=port,
                preexec=pin.preexec(pin.server_cpu, die_with_parent=True),
                env={"PYTHONPATH": str(REPO_ROOT)},
            )
        )
        res.commands[peer.name] = shlex.join(servers[-1].argv)
    with started(servers, res, sc) as live:
        for srv in live:
            if args.warmup:
                argv = pin.wrap(wrk_argv(sc, srv.url, args.warmup, args), pin.wrk_cpu)
                with contextlib.suppress(BenchError):
                    run_wrk_argv(argv, args.warmup, pin.preexec(pin.wrk_cpu, die_with_parent=True))
        failed: set[str] = set()
        for rnd in range(1, args.rounds + 1):
            for srv in live:
                if srv.name in failed:
                    continue
                try:
                    run = measure(sc, srv, rnd, args, pin, res)
                except BenchError as exc:
                    failed.add(srv.name)
                    res.skipped[srv.name] = f"failed in round {rnd}: {str(exc).splitlines()[0]}"
                    print(f"  FAILED {srv.name}: {exc}")
                    continue
                res.runs.append(run)
                print(progress_line(sc, run, args.rounds))
    return res


# --------------------------------------------------------------------------- main


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="wrk: wsgiserve vs. other WSGI servers, one process each, same app and "
        "thread count.",
    )
    p.add_argument(
        "--scenarios",
        type=_csv,
        default=None,
        help=f"comma-separated, default all: {','.join(scenarios_mod.SCENARIO_NAMES)}",
    )
    p.add_argument(
        "--servers",
        type=_csv,
        default=None,
        help=f"comma-separated, default all: {','.join(peers_mod.PEER_NAMES)}",
    )
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--threads", type=int, default=8, help="app threads per server (default 8)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded seconds per server")
    p.add_argument("--wrk-timeout", default="2s", help="wrk --timeout (default 2s)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return p


def _raise_fd_limit() -> None:
    """1,000 idle connections plus wrk's need more than the usual 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def bench(args: argparse.Namespace) -> int:
    for name in ("duration", "rounds", "threads"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name} must be >= 1")
    try:
        chosen_scenarios = scenarios_mod.select(args.scenarios)
        requested = peers_mod.select(args.servers)
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found on PATH; install it: apt-get install -y wrk")
    _raise_fd_limit()
    chosen: list[Peer] = []
    missing: dict[str, str] = {}
    for peer in requested:
        if peer.available():
            chosen.append(peer)
        else:
            why = peer.missing(sys.prefix)
            if peer.name == "bjoern" and BJOERN_NOTE.exists():
                why = BJOERN_NOTE.read_text().strip()
            missing[peer.name] = why
            print(f"note: {peer.name} skipped: {why}")
    if not chosen:
        raise BenchError("none of the chosen servers is installed")
    machine = report.machine_info()
    print(f"machine: {report.machine_line(machine)}")
    pinning = plan_pinning(None, None, no_pin=args.no_pin)
    if pinning.server_cpu is not None:
        print(f"pinning: servers -> CPU {pinning.server_cpu}, wrk -> CPU {pinning.wrk_cpu}")
    per_server = args.rounds * (args.duration + 0.6) + args.warmup + 1.0  # seconds
    est = len(chosen_scenarios) * len(chosen) * per_server
    print(
        f"plan: {len(chosen_scenarios)} scenario(s) x {len(chosen)} server(s) x {args.rounds} "
        f"round(s) x {args.duration}s, {args.threads} threads; about {est / 60:.0f} min"
    )
    t_start = time.time()
    results: list[ScenarioResult] = []
    for sc in chosen_scenarios:
        print(f"\n== {sc.name}: {sc.title}")
        if not sc.pinned:
            print(
                f"  note: {sc.workers} worker processes per server, nothing pinned; wrk "
                f"(-t{sc.wrk_threads}) shares the {os.cpu_count()} CPUs with the server"
            )
        if sc.app_sleep_s:
            print(f"  ideal: {sc.ideal_rps(args.threads):,.0f} req/s ({args.threads} threads "
                  f"/ {sc.app_sleep_s * 1000:.0f} ms); single-threaded servers: "
                  f"{1 / sc.app_sleep_s:,.0f}")  # fmt: skip
        res = run_scenario(sc, chosen, args, pinning)
        for name, why in missing.items():
            res.skipped.setdefault(name, why)
        results.append(res)
    machine["load_after"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = report.markdown(results, machine, t_start, args)
    print()
    print(markdown)
    (args.out / "bench.md").write_text(markdown)
    json_path = report.write_json(args.out / "bench.json", results, machine, t_start, args)
    print(f"wrote {args.out / 'bench.md'} and {json_path}")
    if not args.no_chart:
        print(f"wrote {report.write_chart(args.out / 'bench.png', results, machine, t_start)}")
    print(f"total time {(time.time() - t_start) / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(bench, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
