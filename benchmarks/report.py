"""``bench``'s output: medians per server, Markdown tables, the JSON record, the chart."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import fmt_ms, git_rev, median_opt, pkg_version, spread, wrk_version
from benchmarks.peers import BASELINE, PEERS

if TYPE_CHECKING:
    from benchmarks.bench import Run, ScenarioResult
    from benchmarks.scenarios import Scenario

MIB = float(1 << 20)
NOISY_SPREAD = 0.20
# A saturated server pinned to its own CPU should get nearly all of it; less means
# something else ran there (the machine is shared) or wrk could not keep it busy.
STARVED_CPU_SHARE = 0.85
CLIENT_BOUND_SHARE = 0.95
_THREADED = {p.name: p.threaded for p in PEERS}
_NOTES = {p.name: p.note for p in PEERS}
_PACKAGES = ("wsgiserve", "gunicorn", "waitress", "granian", "cheroot", "pyruvate", "uvicorn",
             "a2wsgi", "bjoern", "uvloop", "httptools")  # fmt: skip


def is_starved(sc: Scenario, run: Run) -> bool:
    """A pinned, CPU-bound run in which the server got clearly less than its core."""
    share = run.server_cpu_share
    return (
        sc.pinned
        and sc.cpu_bound
        and run.wrk.requests > 0
        and share is not None
        and share < STARVED_CPU_SHARE
        and run.wrk_cpu_share < CLIENT_BOUND_SHARE
    )


@dataclass
class Summary:
    """Medians over one server's runs in one scenario."""

    server: str
    rps: float
    mib_s: float
    p50_ms: float | None
    p99_ms: float | None
    rss_mib: float | None
    errors: int  # socket errors (connect, read, write, timeout), all runs
    non_2xx: int  # non-2xx/3xx responses, all runs
    server_cpu: float | None
    rps_per_cpu: float | None  # req/s over the CPU share the server got: robust to neighbours
    starved_runs: int  # pinned runs where the server got < STARVED_CPU_SHARE of its CPU
    idle_open: float | None
    all_rps: list[float]


def summarize(res: ScenarioResult) -> list[Summary]:
    names = list(dict.fromkeys(r.server for r in res.runs))
    out = []
    for name in names:
        runs = [r for r in res.runs if r.server == name]
        answered = [r for r in runs if r.wrk.requests]  # wrk prints 0us latencies otherwise
        rss = median_opt([float(r.rss_bytes) if r.rss_bytes else None for r in runs])
        idle = median_opt([float(r.idle_open) if r.idle_open is not None else None for r in runs])
        out.append(
            Summary(
                server=name,
                rps=statistics.median(r.wrk.rps for r in runs),
                mib_s=statistics.median(r.wrk.transfer_bytes_per_s for r in runs) / MIB,
                p50_ms=median_opt([r.wrk.latency_ms.get("50") for r in answered]),
                p99_ms=median_opt([r.wrk.latency_ms.get("99") for r in answered]),
                rss_mib=None if rss is None else rss / MIB,
                errors=sum(sum(r.wrk.socket_errors.values()) for r in runs),
                non_2xx=sum(r.wrk.non_2xx_3xx for r in runs),
                server_cpu=median_opt([r.server_cpu_share for r in runs]),
                rps_per_cpu=median_opt(
                    [
                        r.wrk.rps / r.server_cpu_share
                        for r in runs
                        if r.server_cpu_share and r.server_cpu_share > 0.05
                    ]
                ),
                starved_runs=sum(is_starved(res.scenario, r) for r in runs),
                idle_open=idle,
                all_rps=[r.wrk.rps for r in runs],
            )
        )
    return out


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_before": list(os.getloadavg()),
        "wrk": wrk_version(),
        "packages": {name: pkg_version(name) for name in _PACKAGES},
        "git_rev": git_rev(),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu_model']}, {m['cpu_count']} CPUs (usable {m['affinity']}), "
        f"Python {m['python']}, {m['platform']}"
    )


def _date(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------- Markdown


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _ms(value: float | None) -> str:
    return fmt_ms(value).replace("us", " us").replace("ms", " ms")


def scenario_table(res: ScenarioResult) -> str:
    sc = res.scenario
    rows = summarize(res)
    base = next((s for s in rows if s.server == BASELINE), None)
    idle = sc.idle_connections > 0
    ideal = sc.ideal_rps(res.threads)
    head = ["server", "req/s", "vs wsgiserve", "req/cpu-s", "MiB/s", "p50", "p99", "RSS MiB",
            "errors", "non-2xx"]  # fmt: skip
    if ideal:
        head.append("% of ideal")
    if idle:
        head.append("idle held")
    lines = [f"### {sc.name}: {sc.title}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    lines[-1] = "|---" + lines[-1][5:]
    for s in sorted(rows, key=lambda s: -s.rps):
        ratio = f"{s.rps / base.rps:.2f}" if base and base.rps else "-"
        name = f"**{s.server}**" if s.server == BASELINE else s.server
        cells = [name, f"{s.rps:,.0f}", ratio, _fmt(s.rps_per_cpu, ",.0f"), f"{s.mib_s:,.1f}",
                 _ms(s.p50_ms), _ms(s.p99_ms), _fmt(s.rss_mib, ",.0f"), str(s.errors),
                 str(s.non_2xx)]  # fmt: skip
        if ideal:
            own_ideal = ideal if _THREADED.get(s.server, True) else 1 / sc.app_sleep_s
            cells.append(f"{s.rps / own_ideal:.0%}")
        if idle:
            cells.append(_fmt(s.idle_open, ",.0f", f"/{sc.idle_connections:,}"))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if ideal:
        notes.append(
            f"ideal = {res.threads} threads / {sc.app_sleep_s * 1000:.0f} ms = {ideal:,.0f} req/s "
            f"(single-threaded servers: {1 / sc.app_sleep_s:,.0f})"
        )
    noisy = [s.server for s in rows if len(s.all_rps) > 1 and spread(s.all_rps) > NOISY_SPREAD]
    if noisy:
        notes.append(f"NOISY (run-to-run spread > {NOISY_SPREAD:.0%}): {', '.join(noisy)}")
    starved = [f"{s.server} {s.starved_runs}/{len(s.all_rps)}" for s in rows if s.starved_runs]
    if starved:
        notes.append(
            f"STARVED runs (the server got < {STARVED_CPU_SHARE:.0%} of its pinned CPU: the "
            "machine was busy, req/s is low for reasons that are not the server's; compare "
            "req/cpu-s): " + ", ".join(starved)
        )
    notes += [f"{s.server}: no responses at all (wrk got nothing back)" for s in rows if not s.rps]
    notes += [f"{name}: {why}" for name, why in res.skipped.items()]
    notes += [f"{s.server}: {_NOTES[s.server]}" for s in rows if _NOTES.get(s.server)]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def markdown(
    results: list[ScenarioResult], machine: dict[str, Any], t_start: float,
    args: argparse.Namespace,
) -> str:  # fmt: skip
    out = [
        f"## wsgiserve vs. other WSGI servers ({_date(t_start)})",
        "",
        f"Machine: {machine_line(machine)}; load average before "
        f"{machine['load_before'][0]:.2f}, after {machine.get('load_after', [0.0])[0]:.2f}.",
        f"{args.threads} app threads per server, one process (except multicore), "
        f"{args.rounds} interleaved rounds of {args.duration} s; medians shown. "
        "Server pinned to CPU 0, wrk to CPU 1 unless said otherwise. "
        "MiB/s counts response bytes (head + body). RSS is the whole process tree after "
        "each run.",
    ]
    for res in results:
        out += ["", scenario_table(res)]
    out += ["", "Commands (`<port>` varies):", ""]
    seen: dict[str, str] = {}
    for res in results:
        for name, cmd in res.commands.items():
            seen.setdefault(f"{name} ({res.scenario.name})", cmd)
        out.append(f"- wrk ({res.scenario.name}): `{res.wrk_command}`")
    out += [f"- {k}: `{v}`" for k, v in seen.items()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- JSON and chart


def write_json(
    path: Path, results: list[ScenarioResult], machine: dict[str, Any], t_start: float,
    args: argparse.Namespace,
) -> Path:  # fmt: skip
    payload: dict[str, Any] = {
        "date": _date(t_start),
        "timestamp": t_start,
        "machine": machine,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "scenarios": {
            res.scenario.name: {
                "title": res.scenario.title,
                "ideal_rps": res.scenario.ideal_rps(res.threads),
                "summary": {s.server: asdict(s) for s in summarize(res)},
                "skipped": res.skipped,
                "commands": res.commands,
                "wrk_command": res.wrk_command,
                "idle_holder_ready": res.idle_ready,
                "runs": [asdict(r) | {"errors": r.wrk.errors} for r in res.runs],
            }
            for res in results
        },
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# wsgiserve in red, its compiled build in orange, every peer in grey.
_COLORS = {BASELINE: "#d62728", "wsgiserve-compiled": "#ff7f0e"}


def write_chart(
    path: Path, results: list[ScenarioResult], machine: dict[str, Any], t_start: float
) -> Path:
    """One horizontal bar chart of median req/s per scenario, wsgiserve highlighted."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    n = max(1, len(results))
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 2.8 * rows + 1.0), squeeze=False)
    for ax, res in zip(axes.flat, results, strict=False):
        data = sorted(summarize(res), key=lambda s: s.rps)
        base = next((s.rps for s in data if s.server == BASELINE), None)
        colors = [_COLORS.get(s.server, "#7f7f7f") for s in data]
        bars = ax.barh([s.server for s in data], [s.rps for s in data], color=colors)
        for bar, s in zip(bars, data, strict=True):
            label = f" {s.rps:,.0f}" + (f" ({s.rps / base:.2f}x)" if base else "")
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label,
                    va="center", fontsize=7)  # fmt: skip
        ax.set_title(f"{res.scenario.name}: {res.scenario.title}", fontsize=9)
        ax.set_xlabel("req/s (median)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(
        f"wsgiserve vs. other WSGI servers, {_date(t_start)}\n{machine_line(machine)}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
