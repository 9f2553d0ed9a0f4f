"""Metrics, the live status view and statsd, across a multi-worker server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import eventually, wait_until
from wsgiserve.control import query_status

from .apps.lifecycle_app import HOLD_MARKER
from .gate_support import Gate
from .support import ServerProcess, run_cli, start_server, subprocess_env

APP = "tests.integration.apps.plain_app:app"
LIFECYCLE_APP = "tests.integration.apps.lifecycle_app:app"
METRICS_AT = re.compile(r"Metrics at: (\S+/metrics)")


def metrics_url(server: ServerProcess) -> str:
    """Where the server's --metrics-bind 127.0.0.1:0 landed, as its log line says."""
    [logged] = server.log.wait_for(METRICS_AT)
    return logged[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def wait_for_beats(
    server: ServerProcess, url: str, predicate: Callable[[str], bool], timeout: float = 10
) -> str:
    """Scrape `url` until `predicate` holds for the text (the workers' beats carry the counts)."""
    text = ""

    def matched() -> bool:
        nonlocal text
        text = httpx.get(url, timeout=5).text
        return predicate(text)

    if not eventually(matched, timeout):
        raise AssertionError(f"metrics never matched; last scrape:\n{text}\n{server.log.text}")
    return text


def test_metrics_scrape_cleanly_per_worker_and_summed() -> None:
    server = start_server(APP, "-w", "2", "--metrics-bind", "127.0.0.1:0")
    try:
        url = metrics_url(server)
        for _ in range(10):  # new connections, so both workers may take some
            assert httpx.get(server.url + "/hello", timeout=5).status_code == 200
        httpx.get(server.url + "/missing-page", timeout=5)

        def settled(text: str) -> bool:
            found = samples(text)
            key = ("wsgiserve_requests_total", (("method", "GET"), ("status", "2xx")))
            return found.get(key) == 10 and found.get(("wsgiserve_workers", ())) == 2

        found = samples(wait_for_beats(server, url, settled))
        assert found[("wsgiserve_request_duration_seconds_count", ())] == 11
        per_worker = [
            value
            for (name, labels), value in found.items()
            if name == "wsgiserve_worker_requests_total" and ("status", "2xx") in labels
        ]
        assert sum(per_worker) == 10
        assert found[("wsgiserve_threads_busy", ())] == 0
        assert found[("wsgiserve_sent_bytes_total", ())] > 0
    finally:
        assert server.stop() == 0


def test_a_scrape_counts_the_requests_answered_just_before_it() -> None:
    # Each scrape asks the workers, as `status` does: a heartbeat is up to a second old,
    # and a scrape right after traffic missed the requests of that second.
    server = start_server(APP, "-w", "2", "--metrics-bind", "127.0.0.1:0")
    try:
        url = metrics_url(server)
        wait_for_beats(server, url, lambda t: samples(t).get(("wsgiserve_workers", ())) == 2)
        for _ in range(10):
            assert httpx.get(server.url + "/hello", timeout=5).status_code == 200
        found = samples(httpx.get(url, timeout=5).text)  # one scrape, at once
        key = ("wsgiserve_requests_total", (("method", "GET"), ("status", "2xx")))
        assert found.get(key) == 10
    finally:
        assert server.stop() == 0


def test_worker_restarts_are_counted_by_reason() -> None:
    server = start_server(APP, "-w", "1", "--max-requests", "2", "--metrics-bind", "127.0.0.1:0")
    try:
        url = metrics_url(server)
        for _ in range(6):
            httpx.get(server.url + "/hello", timeout=5, headers={"Connection": "close"})
        text = wait_for_beats(
            server,
            url,
            lambda t: 'wsgiserve_worker_restarts_total{reason="recycled"}' in t,
        )
        assert samples(text)[("wsgiserve_worker_restarts_total", (("reason", "recycled"),))] >= 1
    finally:
        assert server.stop() == 0


def test_status_shows_workers_and_the_oldest_request_in_flight(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server(APP, "-w", "2", "-p", str(pidfile))
    slow = threading.Thread(
        target=lambda: httpx.get(server.url + "/slow?s=4", timeout=10), daemon=True
    )
    try:
        slow.start()
        server.log.wait_for(re.compile("SLOW-REQUEST-STARTED"), timeout=10)
        status: dict[str, object] = {}

        def in_flight() -> bool:
            nonlocal status
            result = run_cli("status", "-p", str(pidfile), "--json")
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)
            workers = status["workers"]
            assert isinstance(workers, list)
            return any(worker.get("oldest") for worker in workers)

        wait_until(in_flight, "the slow request in the status view")
        assert status["pid"] == server.pid
        workers = status["workers"]
        assert isinstance(workers, list)
        assert len(workers) == 2
        oldest = [entry for worker in workers for entry in worker["oldest"]]
        (age, method, path, request_id) = oldest[0]
        assert (method, path) == ("GET", "/slow")
        assert age > 0
        assert request_id
        text = run_cli("status", "-p", str(pidfile))
        assert text.returncode == 0
        assert "GET /slow" in text.stdout
        assert "oldest requests in flight" in text.stdout
    finally:
        slow.join(10)
        assert server.stop() == 0


def test_status_of_a_server_that_is_not_running_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("status", "-p", str(tmp_path / "nothing.pid"))
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


def test_statsd_receives_gunicorns_metric_names() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        server = start_server(APP, "--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "shop")
        try:
            httpx.get(server.url + "/hello", timeout=5)
            packet = receiver.recv(65536).decode()
        finally:
            assert server.stop() == 0
    lines = packet.splitlines()
    assert "shop.gunicorn.requests:1|c" in lines
    assert "shop.gunicorn.request.status.200:1|c" in lines
    assert any(line.startswith("shop.gunicorn.request.duration:") for line in lines)


def test_summed_counters_never_go_down_when_workers_retire() -> None:
    # A retired worker's counts used to vanish from the sums (requests_total 245 -> 26 on
    # a TTOU), which every rate() graph shows as a false spike.
    server = start_server(APP, "-w", "2", "--metrics-bind", "127.0.0.1:0")
    key = ("wsgiserve_requests_total", (("method", "GET"), ("status", "2xx")))
    try:
        url = metrics_url(server)
        for _ in range(20):  # new connections, so both workers take some
            httpx.get(server.url + "/hello", timeout=5, headers={"Connection": "close"})
        wait_for_beats(server, url, lambda t: samples(t).get(key) == 20)
        server.proc.send_signal(signal.SIGTTOU)
        text = wait_for_beats(server, url, lambda t: samples(t).get(("wsgiserve_workers", ())) == 1)
        assert samples(text)[key] == 20
        server.proc.send_signal(signal.SIGHUP)  # every worker replaced
        server.log.wait_for(re.compile("Handling signal: HUP"))
        for _ in range(5):
            httpx.get(server.url + "/hello", timeout=5, headers={"Connection": "close"})
        text = wait_for_beats(server, url, lambda t: samples(t).get(key) == 25)
        assert samples(text)[("wsgiserve_request_duration_seconds_count", ())] == 25
    finally:
        assert server.stop() == 0


def test_status_escapes_request_data_and_ends_quietly_on_a_closed_pipe(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server(APP, "-w", "1", "-p", str(pidfile))
    # An escape sequence in the path: printed raw, it would recolour the operator's terminal.
    slow = threading.Thread(
        target=lambda: httpx.get(server.url + "/slow/%1b[31mred?s=4", timeout=10), daemon=True
    )
    try:
        slow.start()
        server.log.wait_for(re.compile("SLOW-REQUEST-STARTED"), timeout=10)

        def listed() -> bool:
            return "red" in run_cli("status", "-p", str(pidfile)).stdout

        wait_until(listed, "the slow request in the status view")
        text = run_cli("status", "-p", str(pidfile)).stdout
        assert "\x1b" not in text
        assert "/slow/\\x1b[31mred" in text

        # `wsgiserve status | head`: the reader goes away before the output is written.
        reader_gone = subprocess.Popen(
            [sys.executable, "-m", "wsgiserve", "status", "-p", str(pidfile), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        assert reader_gone.stdout is not None
        reader_gone.stdout.close()
        _, errors = reader_gone.communicate(timeout=30)
        assert reader_gone.returncode == 0, errors
        assert b"Traceback" not in errors
    finally:
        slow.join(10)
        assert server.stop() == 0


def raw_answer(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_server_made_answers_reach_the_access_log_and_the_metrics(tmp_path: Path) -> None:
    # Refusals, 503s and aborts never reached either: 4 responses sent, 1 logged.
    access = tmp_path / "access.log"
    server = start_server(
        APP,
        "-w",
        "1",
        "--access-logfile",
        str(access),
        "--metrics-bind",
        "127.0.0.1:0",
        "--limit-request-line",
        "100",
    )
    try:
        url = metrics_url(server)
        refusals = {
            414: b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
            501: b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n",
            400: b"GET /no-host HTTP/1.1\r\n\r\n",
        }
        for status, data in refusals.items():
            assert raw_answer(server.host_port, data).startswith(b"HTTP/1.1 %d " % status)
        assert httpx.get(server.url + "/hello", timeout=5).status_code == 200

        def logged() -> bool:
            return access.exists() and len(access.read_text().splitlines()) >= 4

        wait_until(logged, "four access-log lines")
        lines = access.read_text().splitlines()
        assert any('"BREW' in line and " 501 " in line for line in lines), lines
        assert any('"GET /no-host' in line and " 400 " in line for line in lines), lines
        assert any(" 414 " in line for line in lines), lines

        def counted(text: str) -> bool:
            found = samples(text)
            four = sum(
                v
                for (n, labels), v in found.items()
                if n == "wsgiserve_requests_total" and ("status", "4xx") in labels
            )
            five = sum(
                v
                for (n, labels), v in found.items()
                if n == "wsgiserve_requests_total" and ("status", "5xx") in labels
            )
            return four == 2 and five == 1

        wait_for_beats(server, url, counted)
    finally:
        assert server.stop() == 0


def wait_for_workers(pidfile: Path, count: int) -> None:
    """Until `count` workers are up and reporting (the status view has their rows)."""

    def up() -> bool:
        workers = query_status(str(pidfile))["workers"]
        return len([worker for worker in workers if "served" in worker]) == count

    wait_until(up, f"{count} workers reporting")


def held_request(
    server: ServerProcess, gate: Gate, answers: list[httpx.Response]
) -> threading.Thread:
    """A request that waits at `gate` in the app; its response lands in `answers`."""
    thread = threading.Thread(
        target=lambda: answers.append(httpx.get(f"{server.url}/hold?port={gate.port}", timeout=30)),
        daemon=True,
    )
    thread.start()
    return thread


def test_status_lists_a_request_that_started_just_before_it(tmp_path: Path) -> None:
    # The view was the workers' last heartbeat, up to a second old: a request that started
    # 0.3 s before the call was not listed. Now the supervisor asks the workers.
    pidfile = tmp_path / "server.pid"
    server = start_server(LIFECYCLE_APP, "-w", "2", "-p", str(pidfile))
    wait_for_workers(pidfile, 2)
    answers: list[httpx.Response] = []
    with Gate() as gate:
        held = held_request(server, gate, answers)
        try:
            server.log.wait_for(re.compile(HOLD_MARKER))
            status = query_status(str(pidfile))  # what `wsgiserve status` reads, asked once
            listed = [
                (worker["pid"], entry[1], entry[2])
                for worker in status["workers"]
                for entry in worker["oldest"]
            ]
            assert [(method, path) for _, method, path in listed] == [("GET", "/hold")], status
            assert all(worker["answered"] for worker in status["workers"])
            text = run_cli("status", "-p", str(pidfile))
            assert text.returncode == 0, text.stderr
            assert "GET /hold" in text.stdout
            assert "as of" not in text.stdout  # every worker answered: no row is old
        finally:
            gate.release()
            held.join(30)
    try:
        assert [answer.text for answer in answers] == ["released"]
    finally:
        assert server.stop() == 0


def test_a_worker_that_does_not_answer_shows_how_old_its_row_is(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server(LIFECYCLE_APP, "-w", "2", "-p", str(pidfile))
    try:
        wait_for_workers(pidfile, 2)
        stopped, running = sorted(server.worker_pids())
        os.kill(stopped, signal.SIGSTOP)  # a worker that cannot answer
        try:
            status = query_status(str(pidfile))
            text = run_cli("status", "-p", str(pidfile)).stdout
        finally:
            os.kill(stopped, signal.SIGCONT)
        answered = {worker["pid"]: worker["answered"] for worker in status["workers"]}
        assert answered == {stopped: False, running: True}
        [stale_row] = [line for line in text.splitlines() if "no answer" in line]
        assert stale_row.split()[0] == str(stopped)
        assert re.search(r"as of \d+\.\ds ago", stale_row)
    finally:
        assert server.stop() == 0


def test_status_and_metrics_show_each_workers_memory(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server(
        LIFECYCLE_APP, "-w", "2", "-p", str(pidfile), "--metrics-bind", "127.0.0.1:0"
    )
    try:
        url = metrics_url(server)
        wait_for_workers(pidfile, 2)
        status = query_status(str(pidfile))
        for worker in status["workers"]:
            # What the kernel says of the same process, within the growth of a few pages.
            actual = psutil.Process(worker["pid"]).memory_info().rss
            assert abs(worker["rss"] - actual) < 8 << 20, (worker["rss"], actual)
        text = run_cli("status", "-p", str(pidfile)).stdout
        assert "memory" in text.splitlines()[2]
        assert re.search(r"\d+\.\dM", text)
        found = samples(httpx.get(url, timeout=5).text)
        per_worker = {
            dict(labels)["worker"]: value
            for (name, labels), value in found.items()
            if name == "wsgiserve_worker_memory_bytes"
        }
        assert set(per_worker) == {str(pid) for pid in server.worker_pids()}
        assert all(value > 1 << 20 for value in per_worker.values())
        assert found[("wsgiserve_memory_bytes", ())] == sum(per_worker.values())
    finally:
        assert server.stop() == 0


def test_a_worker_grown_past_max_worker_memory_is_replaced_gracefully(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    server = start_server(
        LIFECYCLE_APP,
        "-w",
        "1",
        "-p",
        str(pidfile),
        "--max-worker-memory",
        "100MB",
        "--metrics-bind",
        "127.0.0.1:0",
    )
    answers: list[httpx.Response] = []
    try:
        url = metrics_url(server)
        first = httpx.get(server.url + "/pid", timeout=5).text
        with Gate() as gate:
            held = held_request(server, gate, answers)  # in flight while the worker recycles
            try:
                server.log.wait_for(re.compile(HOLD_MARKER))
                assert httpx.get(server.url + "/grow?mb=120", timeout=30).text == first
                [line] = server.log.wait_for(
                    re.compile(
                        r"Worker (\d+) uses ([\d.]+) MiB \((\d+) bytes\) of memory, "
                        r"over --max-worker-memory 95\.4 MiB \(100000000 bytes\)"
                    )
                )
                assert line[1] == first
                assert int(line[3]) > 120 << 20
            finally:
                gate.release()
                held.join(30)
        assert [answer.text for answer in answers] == ["released"]
        wait_until(
            lambda: httpx.get(server.url + "/pid", timeout=5).text != first,
            "a fresh worker answering",
        )
        text = wait_for_beats(
            server, url, lambda t: 'wsgiserve_worker_restarts_total{reason="memory"}' in t
        )
        assert samples(text)[("wsgiserve_worker_restarts_total", (("reason", "memory"),))] == 1
        assert query_status(str(pidfile))["restarts"] == {"memory": 1}
    finally:
        assert server.stop() == 0
