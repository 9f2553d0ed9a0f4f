"""The Python entry points: `wsgiserve.serve()` in its own process, `background_server()` here."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import wsgiserve

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


def test_background_server_hands_back_a_listening_address() -> None:
    with wsgiserve.background_server(plain_app, threads=2) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/hello", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):  # stopped at the end of the block
        httpx.get(server.url + "/hello", timeout=2)


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
