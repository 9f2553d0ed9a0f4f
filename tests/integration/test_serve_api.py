"""The Python entry points: `wsgiserve.serve()` in its own process, `background_server()` here."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import wsgiserve

from .apps.ops_app import HANG_MARKER, SLOW_MARKER
from .apps.plain_app import app as plain_app
from .support import ServerProcess, start_listening

SERVE_SCRIPT = (
    "import wsgiserve\n"
    "from tests.integration.apps.plain_app import app\n"
    "wsgiserve.serve(app, host='127.0.0.1', port=0, threads=2, access_logfile={log!r})\n"
)


def start_serve(access_log: Path) -> ServerProcess:
    return start_listening([sys.executable, "-c", SERVE_SCRIPT.format(log=str(access_log))])


def test_serve_blocks_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    server = start_serve(access_log)
    try:
        response = httpx.get(server.url + "/hello?who=serve", timeout=5)
        assert response.status_code == 200
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert "Shutdown complete" in server.log.text
    (line,) = access_log.read_text(encoding="utf-8").splitlines()
    assert '"GET /hello?who=serve HTTP/1.1" 200 ' in line
    assert line.startswith("127.0.0.1 - - [")


def test_serve_refuses_unknown_settings_before_binding() -> None:
    with pytest.raises(TypeError, match="unknown setting"):
        wsgiserve.serve(plain_app, port=0, thread=4)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"workers": 3}, "--workers 3"),
        ({"pidfile": "/run/x.pid"}, "--pid /run/x.pid"),
        ({"metrics_bind": "127.0.0.1:9100"}, "--metrics-bind 127.0.0.1:9100"),
        ({"user": "nobody", "group": "nogroup"}, "--user nobody --group nogroup"),
        ({"max_worker_memory": "512MB"}, "--max-worker-memory 512000000"),
    ],
)
def test_serve_refuses_settings_only_the_command_acts_on(
    settings: dict[str, Any], named: str
) -> None:
    # They used to be accepted and ignored: `user` included, as root.
    with pytest.raises(wsgiserve.StartupError, match="needs the command's supervisor") as error:
        wsgiserve.serve(plain_app, port=0, **settings)
    assert named in str(error.value)
    with pytest.raises(wsgiserve.StartupError), wsgiserve.background_server(plain_app, **settings):
        pass


def test_background_server_hands_back_a_listening_address() -> None:
    with wsgiserve.background_server(plain_app, threads=2) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/hello", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):  # stopped at the end of the block
        httpx.get(server.url + "/hello", timeout=2)


@pytest.mark.parametrize("mode", ["660", "0o660"])
def test_socket_mode_as_text_is_octal_as_in_a_config_file(tmp_path: Path, mode: str) -> None:
    sock = tmp_path / "app.sock"
    with wsgiserve.background_server(
        plain_app, bind=[f"unix:{sock}"], socket_mode=mode, threads=2
    ) as server:
        permissions = stat.S_IMODE(os.stat(sock).st_mode)
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport) as client:
            status = client.get("http://localhost/hello", timeout=5).status_code
    assert (permissions, status) == (0o660, 200), server.url


def test_background_server_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(wsgiserve.StartupError, match="already in use"),
            wsgiserve.background_server(plain_app, port=port),
        ):
            pass  # pragma: no cover - never entered


def _policy_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.sched_getscheduler(0)).encode()]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("batch", "SCHED_BATCH"), ("normal", "SCHED_OTHER")],
)
def test_app_threads_run_under_the_chosen_scheduling_policy(policy: str, expected: str) -> None:
    with wsgiserve.background_server(_policy_app, threads=2, thread_policy=policy) as server:
        seen = httpx.get(server.url + "/", timeout=5).text
    assert int(seen) == getattr(os, expected)


def test_an_unknown_thread_policy_is_refused() -> None:
    with (
        pytest.raises(ValueError, match="thread_policy must be one of batch, normal"),
        wsgiserve.background_server(plain_app, thread_policy="fifo"),
    ):
        pass  # pragma: no cover - never entered


OPS_SERVE_SCRIPT = (
    "import wsgiserve\n"
    "from tests.integration.apps.ops_app import app\n"
    "wsgiserve.serve(app, host='127.0.0.1', port=0, threads=2, graceful_timeout=60)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_drains_a_request_in_flight_on_int_and_term(sig: signal.Signals) -> None:
    server = start_listening([sys.executable, "-c", OPS_SERVE_SCRIPT])
    try:
        with httpx.Client(timeout=10) as client:
            pending = InFlight(client, server.url + "/slow?s=1")
            server.log.wait_for(re.compile(SLOW_MARKER))
            server.proc.send_signal(sig)
            pending.join()
            code = server.proc.wait(30)  # it stops by itself once drained
    finally:
        server.stop(signal.SIGKILL)  # only if it overstayed
    assert pending.status == 200
    assert code == 0


def test_serve_stops_at_once_on_quit_despite_a_hanging_request() -> None:
    server = start_listening([sys.executable, "-c", OPS_SERVE_SCRIPT])
    try:
        with httpx.Client(timeout=10) as client:
            pending = InFlight(client, server.url + "/hang")
            server.log.wait_for(re.compile(HANG_MARKER))
            code = server.stop(signal.SIGQUIT)
            pending.join()
    finally:
        server.stop(signal.SIGKILL)
    assert code != 0  # not a clean drain: the process left at once
    assert pending.status is None


class InFlight(threading.Thread):
    """One request on a thread; its status, or None when the connection was dropped."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        super().__init__(daemon=True)
        self.client, self.url = client, url
        self.status: int | None = None
        self.start()

    def run(self) -> None:
        try:
            self.status = self.client.get(self.url).status_code
        except httpx.HTTPError:
            self.status = None
