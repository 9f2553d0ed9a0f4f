"""Per-worker statistics, their once-a-second snapshot, and the Prometheus text format.

A worker records each finished request (`WorkerStats.observe`, any thread), and its
loop adds a snapshot of its gauges to the heartbeat it sends the supervisor. The
supervisor keeps the latest snapshot of every worker and renders them, per worker
and summed, in the Prometheus text exposition format. No shared memory, no files,
no extra dependency: the heartbeat pipe already connects every worker to the one
process that can see them all.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

# Request duration buckets, in seconds (Prometheus' usual spread for web requests).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SNAPSHOT_LIMIT = 3800  # bytes: a heartbeat line must stay below PIPE_BUF to be written whole


def resident_bytes() -> int | None:
    """This process's resident memory (RSS) in bytes; None where /proc is not there.

    /proc/self/statm's second field is the resident page count: one small read, no
    walk of the memory map (unlike /proc/self/status or smaps).
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class WorkerStats:
    """Counters of one worker process. `observe` may be called from any worker thread.

    With `statsd_host` ("host:port"), each request is also sent as statsd metrics under
    gunicorn's names (gunicorn.requests, gunicorn.request.duration,
    gunicorn.request.status.CODE), so existing dashboards keep working.
    """

    def __init__(self, statsd_host: str | None = None, statsd_prefix: str = "") -> None:
        self._lock = threading.Lock()
        self._statsd: tuple[socket.socket, tuple[str, int]] | None = None
        if statsd_host:
            host, _, port = statsd_host.rpartition(":")
            address = (host.strip("[]") or "127.0.0.1", int(port or 8125))
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setblocking(False)
            self._statsd = (udp, address)
        prefix = statsd_prefix
        if prefix and not prefix.endswith("."):
            prefix += "."
        self._prefix = prefix + "gunicorn."
        self.requests: dict[tuple[str, int], int] = {}  # (method, status // 100) -> count
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.bytes_in = 0
        self.bytes_out = 0

    def observe(self, method: str, status: int, duration: float, sent: int, received: int) -> None:
        key = (method, status // 100)  # made into text once a second, not per request
        index = bisect.bisect_left(BUCKETS, duration)  # "le" buckets: duration <= bound
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.buckets[index] += 1
            self.duration_sum += duration
            self.bytes_out += sent
            self.bytes_in += received
        if self._statsd is not None:
            prefix = self._prefix
            packet = (
                f"{prefix}requests:1|c\n{prefix}request.duration:{duration * 1000:.3f}|ms\n"
                f"{prefix}request.status.{status}:1|c"
            ).encode()
            udp, address = self._statsd
            with contextlib.suppress(OSError):  # metrics must never fail a request
                udp.sendto(packet, address)

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {f"{m} {s}xx": n for (m, s), n in self.requests.items()},
                "buckets": list(self.buckets),
                "duration_sum": self.duration_sum,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in labels.items())
    return "{" + inner + "}"


def add_counters(total: dict[str, Any], counters: Mapping[str, Any]) -> None:
    """Add one worker's counters (`WorkerStats.counters()`) into `total`, in place."""
    requests = total.setdefault("requests", {})
    for key, count in counters.get("requests", {}).items():
        requests[key] = requests.get(key, 0) + count
    buckets = total.setdefault("buckets", [0] * (len(BUCKETS) + 1))
    for index, count in enumerate(counters.get("buckets", [])):
        buckets[index] += count
    for key in ("duration_sum", "bytes_in", "bytes_out"):
        total[key] = total.get(key, 0) + counters.get(key, 0)


def render(
    workers: Iterable[Mapping[str, Any]],
    restarts: Mapping[str, int],
    retired: Mapping[str, Any] | None = None,
) -> str:
    """Prometheus text format for the latest snapshot of each worker, and their sums.

    `retired` holds the counters of workers that have exited (`add_counters`): the
    server-wide counters include them, so a sum never goes down when a worker retires.
    """
    snapshots = [w for w in workers if w]
    lines: list[str] = []
    past: list[Mapping[str, Any]] = [{"pid": 0, "metrics": retired}] if retired else []

    def family(name: str, kind: str, helptext: str) -> None:
        lines.append(f"# HELP {name} {helptext}")
        lines.append(f"# TYPE {name} {kind}")

    for scope, prefix in (("worker", "wsgiserve_worker_"), ("server", "wsgiserve_")):
        per = scope == "worker"

        def tag(snapshot: Mapping[str, Any], per: bool = per, **extra: object) -> str:
            return _labels(**({"worker": snapshot["pid"]} if per else {}), **extra)

        groups: list[list[Mapping[str, Any]]] = [[s] for s in snapshots] if per else [snapshots]
        # Counters: the server-wide sum includes retired workers; gauges are live only.
        counted = groups if per else [snapshots + past]
        family(
            f"{prefix}requests_total", "counter", "Requests finished, by method and status class."
        )
        for group in counted:
            totals: dict[str, int] = {}
            for snapshot in group:
                for key, count in snapshot["metrics"]["requests"].items():
                    totals[key] = totals.get(key, 0) + count
            for key, count in sorted(totals.items()):
                method, status = key.split(" ")
                first = group[0] if group else {"pid": 0}
                lines.append(
                    f"{prefix}requests_total{tag(first, method=method, status=status)} {count}"
                )
        family(
            f"{prefix}request_duration_seconds",
            "histogram",
            "Time from request head to response end.",
        )
        for group in counted:
            if not group:
                continue
            buckets = [
                sum(s["metrics"]["buckets"][i] for s in group) for i in range(len(BUCKETS) + 1)
            ]
            running = 0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], buckets, strict=True):
                running += count
                lines.append(
                    f"{prefix}request_duration_seconds_bucket{tag(group[0], le=bound)} {running}"
                )
            total = sum(s["metrics"]["duration_sum"] for s in group)
            lines.append(f"{prefix}request_duration_seconds_sum{tag(group[0])} {total}")
            lines.append(f"{prefix}request_duration_seconds_count{tag(group[0])} {running}")
        for name, key, kind, helptext in (
            ("received_bytes_total", "bytes_in", "counter", "Request body bytes received."),
            ("sent_bytes_total", "bytes_out", "counter", "Response body bytes sent."),
        ):
            family(f"{prefix}{name}", kind, helptext)
            for group in counted:
                if group:
                    value = sum(s["metrics"][key] for s in group)
                    lines.append(f"{prefix}{name}{tag(group[0])} {value}")
        for name, key, helptext in (
            ("open_connections", "connections", "Open client connections."),
            ("requests_in_flight", "in_flight", "Requests waiting for or running in a thread."),
            ("requests_queued", "queued", "Requests waiting for a free thread."),
            ("threads_busy", "busy", "Worker threads running a request."),
            ("threads_idle", "idle", "Worker threads waiting for a request."),
            ("memory_bytes", "rss", "Resident memory (RSS) of the worker processes."),
        ):
            family(f"{prefix}{name}", "gauge", helptext)
            for group in groups:
                if group:
                    total = sum(s.get(key) or 0 for s in group)
                    lines.append(f"{prefix}{name}{tag(group[0])} {total}")
    family("wsgiserve_workers", "gauge", "Worker processes running.")
    lines.append(f"wsgiserve_workers {len(snapshots)}")
    family("wsgiserve_worker_restarts_total", "counter", "Workers replaced, by reason.")
    for reason, count in sorted(restarts.items()):
        lines.append(f"wsgiserve_worker_restarts_total{_labels(reason=reason)} {count}")
    return "\n".join(lines) + "\n"
