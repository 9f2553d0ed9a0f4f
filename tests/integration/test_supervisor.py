"""The pre-fork supervisor under real signals: worker count, respawn, reload, stops,
recycling, --preload, the pidfile, heartbeats, --timeout stack dumps and log reopening.

Every wait is bounded; nothing asserts how long something took.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.polling import eventually, wait_until

from .apps.ops_app import HANG_MARKER, IMPORT_MARKER, SLOW_MARKER
from .support import APPS, STOP_TIMEOUT, ServerProcess, StartServer, run_cli

pytestmark = pytest.mark.timeout(90)

APP = f"{APPS}.ops_app:app"
BOOTING = re.compile(r"Booting worker with pid: (\d+)")
WAIT = 20.0  # seconds: the bound on every poll below
EXIT_APP_LOAD = 4
# Common to every server here: quick stops, small pools.
FAST = ("--graceful-timeout", "5")

ClientMaker = Callable[[str], httpx.Client]


# -- helpers -------------------------------------------------------------------------------


def worker_pids(server: ServerProcess) -> set[int]:
    return server.worker_pids()


def wait_for_workers(server: ServerProcess, count: int) -> set[int]:
    """Wait until the supervisor has exactly ``count`` live workers; their pids."""
    seen: set[int] = set()

    def settled() -> bool:
        nonlocal seen
        seen = worker_pids(server)
        return len(seen) == count

    assert eventually(settled, WAIT), f"{count} workers never settled; last seen: {seen}"
    return seen


def booted(server: ServerProcess, count: int) -> set[int]:
    """Wait for ``count`` "Booting worker" lines in total; the pids they name."""
    return {int(m[1]) for m in server.log.wait_for(BOOTING, count=count, timeout=WAIT)}


@pytest.fixture
def client() -> Iterator[ClientMaker]:
    """Clients that open a fresh connection per request (``Connection: close``)."""
    opened: list[httpx.Client] = []

    def make(url: str) -> httpx.Client:
        made = httpx.Client(base_url=url, timeout=10.0, headers={"Connection": "close"})
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


def answering_pid(http: httpx.Client) -> int:
    response = http.get("/pid")
    assert response.status_code == 200, response.text
    return int(response.text)


def pids_seen(http: httpx.Client, want: int, attempts: int = 400) -> set[int]:
    """Ask /pid over fresh connections until ``want`` distinct pids answered (bounded)."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(answering_pid(http))
        if len(seen) >= want:
            break
    return seen


class InFlight:
    """One request on its own thread, so a signal can arrive while it runs."""

    def __init__(self, url: str, path: str) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, path), daemon=True)
        self._thread.start()

    def _run(self, url: str, path: str) -> None:
        try:
            self.response = httpx.get(url + path, timeout=STOP_TIMEOUT)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(STOP_TIMEOUT + 5)
        assert not self._thread.is_alive(), "the in-flight request never returned"


# -- worker processes ----------------------------------------------------------------------


def test_two_workers_both_serve(server_factory: StartServer, client: ClientMaker) -> None:
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    workers = wait_for_workers(server, 2)

    seen = pids_seen(client(server.url), want=2)

    assert seen == workers
    assert server.pid not in seen


def test_killed_worker_is_replaced(server_factory: StartServer, client: ClientMaker) -> None:
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    before = booted(server, 2)
    victim = min(before)

    os.kill(victim, signal.SIGKILL)
    replacement = booted(server, 3) - before
    after = wait_for_workers(server, 2)

    assert len(replacement) == 1
    assert victim not in after
    assert replacement <= after
    http = client(server.url)
    for _ in range(20):
        assert answering_pid(http) in after
    assert re.search(rf"Worker {victim} died", server.log.text), server.log.text


def test_ttin_adds_and_ttou_removes_a_worker(server_factory: StartServer) -> None:
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    first = booted(server, 2)
    wait_for_workers(server, 2)

    server.proc.send_signal(signal.SIGTTIN)
    three = wait_for_workers(server, 3)
    assert len(booted(server, 3)) == 3
    assert first < three

    server.proc.send_signal(signal.SIGTTOU)
    two = wait_for_workers(server, 2)
    assert two < three


def test_hup_replaces_every_worker_without_failing_a_request(
    server_factory: StartServer, client: ClientMaker
) -> None:
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    old = booted(server, 2)
    wait_for_workers(server, 2)
    http = client(server.url)
    answered: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        for _ in range(3000):  # a bound, in case `stop` is never set
            if stop.is_set() and len(answered) >= 200:
                return
            try:
                answered.append(answering_pid(http))
            except BaseException as exc:
                failures.append(repr(exc))

    loader = threading.Thread(target=hammer, daemon=True)
    loader.start()
    try:
        wait_until(lambda: len(answered) >= 20, "requests before the HUP", WAIT)
        server.proc.send_signal(signal.SIGHUP)
        new = booted(server, 4) - old
        wait_until(lambda: worker_pids(server) == new, f"only the new workers {new}", WAIT)
        mark = len(answered)
        wait_until(lambda: len(answered) >= mark + 20, "requests after the HUP", WAIT)
    finally:
        stop.set()
        loader.join(60)

    assert not loader.is_alive()
    assert failures == []
    assert len(new) == 2
    assert not old & new
    assert set(answered[-10:]) <= new
    assert server.proc.poll() is None


# -- stopping ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_term_and_int_let_an_in_flight_request_finish(
    server_factory: StartServer, sig: signal.Signals
) -> None:
    # INT drains like TERM: a Ctrl-C or `docker stop` with STOPSIGNAL SIGINT used to cut
    # responses in half.
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    booted(server, 2)
    request = InFlight(server.url, "/slow?s=1")
    server.log.wait_for(re.compile(SLOW_MARKER), timeout=WAIT)

    code = server.stop(sig)
    request.join()

    assert request.error is None, request.error
    assert request.response is not None
    assert request.response.status_code == 200
    assert request.response.text == "done"
    assert code == 0, server.log.text
    assert "Traceback" not in server.log.text


@pytest.mark.parametrize("how", ["QUIT", "INT twice"])
def test_quit_or_a_second_int_stops_promptly_despite_a_hanging_request(
    server_factory: StartServer, how: str
) -> None:
    # A graceful stop would wait --graceful-timeout (60 s) for /hang; these must not.
    server = server_factory(APP, "-w", "2", "--graceful-timeout", "60", threads=2)
    booted(server, 2)
    request = InFlight(server.url, "/hang")
    server.log.wait_for(re.compile(HANG_MARKER), timeout=WAIT)
    workers = worker_pids(server)

    if how == "QUIT":
        code = server.stop(signal.SIGQUIT, timeout=STOP_TIMEOUT)
    else:
        server.proc.send_signal(signal.SIGINT)
        server.log.wait_for(re.compile("graceful stop"), timeout=WAIT)
        code = server.stop(signal.SIGINT, timeout=STOP_TIMEOUT)
    request.join()

    assert code == 0, server.log.text
    assert request.response is None  # the connection was dropped, not answered
    assert not any(psutil.pid_exists(pid) for pid in workers)


# -- recycling, preload, pidfile, load errors ------------------------------------------------


def test_max_requests_recycles_workers_as_requests_complete(
    server_factory: StartServer, client: ClientMaker
) -> None:
    # Checked as each request completes: once a second, a worker overshot by a second's
    # worth of requests (25 quick requests all served by one worker at --max-requests 20).
    server = server_factory(APP, "-w", "1", "--max-requests", "5", *FAST, threads=2)
    first = booted(server, 1)
    http = client(server.url)

    answered = [answering_pid(http) for _ in range(12)]

    counts = Counter(answered)
    assert max(counts.values()) <= 5, counts
    assert len(counts) >= 3, counts
    assert set(answered) & first
    server.log.wait_for(re.compile(r"served 5 requests \(--max-requests\): restarting"))
    assert "Traceback" not in server.log.text


def test_preload_imports_the_app_once_in_the_supervisor(server_factory: StartServer) -> None:
    server = server_factory(APP, "-w", "2", "--preload", *FAST, threads=2)
    booted(server, 2)

    imports = re.findall(rf"{IMPORT_MARKER} pid=(\d+)", server.log.text)
    assert imports == [str(server.pid)]


def test_without_preload_each_worker_imports_the_app(server_factory: StartServer) -> None:
    server = server_factory(APP, "-w", "2", *FAST, threads=2)
    workers = booted(server, 2)

    marker = re.compile(rf"{IMPORT_MARKER} pid=(\d+)")
    imports = {int(m[1]) for m in server.log.wait_for(marker, count=2, timeout=WAIT)}
    assert imports == workers


def test_pidfile_holds_the_supervisor_pid_until_term(
    server_factory: StartServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "wsgiserve.pid"
    server = server_factory(APP, "-w", "2", "-p", str(pidfile), *FAST, threads=2)
    booted(server, 2)

    assert pidfile.read_text().strip() == str(server.pid)
    assert server.stop(signal.SIGTERM) == 0
    assert not pidfile.exists()


def test_app_that_fails_to_import_exits_4_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "explodes_on_import.py").write_text(
        'raise ImportError("explodes_on_import needs a database")\n'
    )

    result = run_cli(
        "explodes_on_import:app",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        *FAST,
        "--pythonpath",
        str(tmp_path),
    )

    assert result.returncode == EXIT_APP_LOAD, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "\n\n" not in result.stderr.strip(), result.stderr
    assert "explodes_on_import" in result.stderr
    assert "needs a database" in result.stderr


# -- heartbeats and --timeout ----------------------------------------------------------------


def test_stopped_worker_misses_its_heartbeat_and_is_replaced(
    server_factory: StartServer,
) -> None:
    server = server_factory(APP, "-w", "2", "-t", "2", *FAST, threads=2)
    before = booted(server, 2)
    wait_for_workers(server, 2)
    victim = min(before)

    os.kill(victim, signal.SIGSTOP)
    try:
        server.log.wait_for(re.compile(rf"Worker {victim} missed its heartbeat"), timeout=WAIT)
        replacement = booted(server, 3) - before
        after = wait_for_workers(server, 2)
    finally:
        if psutil.pid_exists(victim):  # still ours if the supervisor never killed it
            os.kill(victim, signal.SIGKILL)

    assert len(replacement) == 1
    assert victim not in after
    assert replacement <= after


ABORT_CONF = """
def worker_abort(worker):
    with open({marks!r}, "a") as marks:
        marks.write(f"worker_abort {{worker.pid}}\\n")
"""


def test_a_worker_killed_for_a_missed_heartbeat_runs_worker_abort_first(
    server_factory: StartServer, client: ClientMaker, tmp_path: Path
) -> None:
    # gunicorn's meaning: SIGABRT, whose handler calls the hook, before the worker is gone.
    # It was accepted and never called.
    marks = tmp_path / "marks.txt"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(ABORT_CONF.format(marks=str(marks)))
    server = server_factory(f"{APPS}.lifecycle_app:app", "-c", str(conf), "-t", "1", *FAST)
    http = client(server.url)
    (stuck,) = booted(server, 1)
    assert answering_pid(http) == stuck
    with socket.create_connection(server.host_port, timeout=WAIT) as wedging:
        # The app wedges the worker's event loop (see lifecycle_app's /wedge).
        wedging.sendall(b"GET /wedge HTTP/1.1\r\nHost: t\r\n\r\n")
        server.log.wait_for(re.compile(rf"Worker {stuck} missed its heartbeat"), timeout=WAIT)
        wait_until(
            lambda: marks.exists() and marks.read_text() == f"worker_abort {stuck}\n",
            "the worker_abort hook's mark",
            WAIT,
        )
        assert wedging.recv(65536) == b""  # the stuck worker is gone, its connection too
    (replacement,) = booted(server, 2) - {stuck}
    assert answering_pid(http) == replacement
    assert "still there after SIGABRT" not in server.log.text  # the hook had its chance


@pytest.mark.parametrize("timeout", [1, 2])
def test_timeout_logs_a_slow_requests_stack_once(
    server_factory: StartServer, client: ClientMaker, timeout: int
) -> None:
    # The app sleeps in a pool thread: the event loop stays free, so the worker keeps
    # beating and must not be killed; only the request is reported, with its stack.
    server = server_factory(APP, "-t", str(timeout), *FAST, threads=2)
    booted(server, 1)

    response = client(server.url).get(f"/slow?s={timeout + 2}")

    assert response.status_code == 200
    assert response.text == "done"
    warning = re.compile(r"\[WARNING\].*request running for .*/slow")
    server.log.wait_for(warning, timeout=WAIT)
    server.log.wait_for(re.compile("its thread's stack"), timeout=WAIT)
    server.log.wait_for(re.compile(r"sleepy_handler"), timeout=WAIT)
    assert len(re.findall(warning, server.log.text)) == 1
    assert "missed its heartbeat" not in server.log.text


# -- log files -------------------------------------------------------------------------------


def test_usr1_reopens_the_access_log(
    server_factory: StartServer, client: ClientMaker, tmp_path: Path
) -> None:
    access = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    server = server_factory(APP, "-w", "2", "--access-logfile", str(access), *FAST, threads=2)
    booted(server, 2)
    http = client(server.url)
    assert http.get("/hello?before-rotation").status_code == 200
    wait_until(
        lambda: access.exists() and "before-rotation" in access.read_text(),
        "the first access log line",
        WAIT,
    )

    access.rename(rotated)
    server.proc.send_signal(signal.SIGUSR1)
    server.log.wait_for(re.compile(r"Handling signal: USR1"), timeout=WAIT)

    # The workers reopen on their own loops: ask until a request lands in the new file.
    def logged_anew() -> bool:
        assert http.get("/hello?after-rotation").status_code == 200
        return access.exists() and "after-rotation" in access.read_text()

    wait_until(logged_anew, "a request logged in the reopened access log", WAIT)
    assert "before-rotation" not in access.read_text()
    assert "before-rotation" in rotated.read_text()
    assert server.proc.poll() is None


GOOD_APP = (
    "import os\n"
    "def app(environ, start_response):\n"
    "    body = ('%s %d' % (VERSION, os.getpid())).encode()\n"
    "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)


def test_a_reload_whose_code_fails_to_import_keeps_the_old_workers(
    server_factory: StartServer, client: ClientMaker, tmp_path: Path
) -> None:
    module = tmp_path / "deployed_app.py"
    module.write_text("VERSION = 'v1'\n" + GOOD_APP)
    pidfile = tmp_path / "server.pid"
    server = server_factory(
        "deployed_app:app",
        "-w",
        "2",
        "--pythonpath",
        str(tmp_path),
        "-p",
        str(pidfile),
        *FAST,
        threads=2,
    )
    old = booted(server, 2)
    http = client(server.url)

    module.write_text("VERSION = 'v2'\nthis is not python\n")  # a broken deploy
    server.proc.send_signal(signal.SIGHUP)
    server.log.wait_for(re.compile("Reload failed"), timeout=WAIT)

    assert server.proc.poll() is None  # used to exit 4, the healthy workers with it
    for _ in range(6):
        version, pid = http.get("/").text.split()
        assert version == "v1"
        assert int(pid) in old
    # The reload's other new worker was told to stop as the first failed; it may take a moment.
    wait_until(lambda: worker_pids(server) == old, "only the old workers", WAIT)
    status = run_cli("status", "-p", str(pidfile))
    assert "last reload FAILED" in status.stdout, status.stdout

    module.write_text("VERSION = 'v3'\n" + GOOD_APP)  # fixed: the next HUP takes
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not old & worker_pids(server), "the old workers to retire", WAIT)
    assert http.get("/").text.split()[0] == "v3"


def test_a_second_instance_with_the_same_pidfile_refuses_to_start(
    server_factory: StartServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "wsgiserve.pid"
    server = server_factory(APP, "-w", "1", "-p", str(pidfile), *FAST, threads=2)
    booted(server, 1)

    second = run_cli(APP, "-b", "127.0.0.1:0", "-w", "1", "-p", str(pidfile), *FAST)

    assert second.returncode == 1, second.stderr
    assert f"already running as PID {server.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    # The running server's pidfile and control socket are untouched.
    assert pidfile.read_text().strip() == str(server.pid)
    assert run_cli("status", "-p", str(pidfile)).returncode == 0


def test_a_stale_pidfile_is_replaced_with_a_note(
    server_factory: StartServer, tmp_path: Path
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile = tmp_path / "wsgiserve.pid"
    pidfile.write_text(f"{gone.pid}\n")
    server = server_factory(APP, "-w", "1", "-p", str(pidfile), *FAST, threads=2)
    booted(server, 1)

    assert pidfile.read_text().strip() == str(server.pid)
    assert f"stale pidfile {pidfile}: PID {gone.pid} is not running" in server.log.text
    assert server.stop(signal.SIGTERM) == 0
    assert not pidfile.exists()


def test_a_pidfile_that_cannot_be_written_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli(APP, "-b", "127.0.0.1:0", "-p", str(tmp_path / "missing" / "x.pid"))

    assert result.returncode == 1, result.stderr
    assert "cannot write the pidfile" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_pidfile_in_a_root_owned_directory_works_with_user_and_group(
    server_factory: StartServer,
) -> None:
    # Like /run: root's, and not writable by the user the server becomes. (pytest's own
    # temporary folders are root's 0700: that user could not even reach them.)
    run = Path(tempfile.mkdtemp(prefix="wsgiserve-run-"))
    try:
        run.chmod(0o755)
        pidfile = run / "wsgiserve.pid"
        server = server_factory(
            APP,
            "-w",
            "1",
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "-p",
            str(pidfile),
            *FAST,
            threads=2,
        )
        booted(server, 1)
        assert pidfile.read_text().strip() == str(server.pid)
        assert server.stop(signal.SIGTERM) == 0, server.log.text
        assert pidfile.read_text().strip() == ""  # emptied: the next start finds it stale
    finally:
        shutil.rmtree(run)
