"""The ``python -m wsgiserve`` command line: flags, start-up errors, signals and binds."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

import httpx
import pytest

import wsgiserve
from wsgiserve.build_info import COMPILED_MODULES

from .apps.plain_app import SLOW_MARKER
from .support import APPS, STOP_TIMEOUT, StartServer, run_cli

pytestmark = pytest.mark.timeout(60)

APP = f"{APPS}.plain_app:app"
EXIT_APP_LOAD = 4  # gunicorn's APP_LOAD_ERROR
EXIT_BIND = 1


def test_version() -> None:
    result = run_cli("--version")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert wsgiserve.__version__ in output
    assert re.search(r"\d+\.\d+", output)
    # Which build answers: `make test-compiled` runs this suite on the compiled one.
    compiled = os.environ.get("WSGISERVE_EXPECT_COMPILED") == "1"
    build = f"compiled, {len(COMPILED_MODULES)} modules" if compiled else "pure Python"
    assert f"({build})" in output


def test_help_mentions_every_documented_flag() -> None:
    result = run_cli("--help")

    assert result.returncode == 0, result.stderr
    for flag in (
        "-b",
        "--threads",
        "--keep-alive",
        "--graceful-timeout",
        "--backlog",
        "--log-level",
        "--access-logfile",
        "--version",
        "--help",
        "MODULE:APP",
    ):
        assert flag in result.stdout, flag
    for level in ("debug", "info", "warning", "error"):
        assert level in result.stdout, level


def _assert_one_paragraph(stderr: str) -> None:
    assert stderr.strip(), "expected an error message on stderr"
    assert "Traceback" not in stderr, stderr
    assert "\n\n" not in stderr.strip(), f"more than one paragraph:\n{stderr}"


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        pytest.param(f"{APPS}.no_such_module:app", ["no_such_module"], id="missing-module"),
        pytest.param(f"{APPS}.broken_app:app", ["broken_app", "refuses to import"], id="raises"),
        pytest.param(f"{APPS}.plain_app:no_such_attr", ["no_such_attr"], id="missing-attr"),
    ],
)
def test_app_load_failure_is_one_clear_paragraph(spec: str, names: list[str]) -> None:
    result = run_cli(spec, "-b", "127.0.0.1:0")

    _assert_one_paragraph(result.stderr)
    for name in names:
        assert name in result.stderr, result.stderr
    assert result.returncode == EXIT_APP_LOAD, result.stderr


def test_port_in_use_is_one_clear_paragraph() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = run_cli(APP, "-b", f"127.0.0.1:{port}")

    _assert_one_paragraph(result.stderr)
    assert str(port) in result.stderr, result.stderr
    assert "in use" in result.stderr.lower(), result.stderr
    assert result.returncode == EXIT_BIND, result.stderr


def test_sigterm_lets_an_in_flight_request_finish(server_factory: StartServer) -> None:
    server = server_factory(APP, "--graceful-timeout", "10")
    outcome: dict[str, httpx.Response | BaseException] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = httpx.get(f"{server.url}/slow?s=1", timeout=15.0)
        except BaseException as exc:
            outcome["error"] = exc

    client = threading.Thread(target=slow_request)
    client.start()
    try:
        server.log.wait_for(re.compile(re.escape(SLOW_MARKER)), timeout=10.0)
        code = server.stop()
    finally:
        client.join(STOP_TIMEOUT + 5)

    assert not client.is_alive()
    assert "error" not in outcome, outcome
    response = outcome["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.text == "done"
    assert code == 0, server.log.text
    assert "Traceback" not in server.log.text


def test_unix_socket_bind_serves_a_request(
    server_factory: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A short directory: AF_UNIX paths are limited to about 100 bytes.
    path = Path(tmp_path_factory.mktemp("uds")) / "ws.sock"
    server = server_factory(APP, binds=[f"unix:{path}"])

    assert server.addresses == [f"unix:{path}"]
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=10.0) as client:
        response = client.get("http://localhost/hello")

    assert response.status_code == 200
    assert response.text == "hello"


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
def test_ipv6_loopback_bind_serves_a_request(server_factory: StartServer) -> None:
    server = server_factory(APP, binds=["[::1]:0"])

    assert server.url.startswith("http://[::1]:")
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        response = client.get("/hello")

    assert response.status_code == 200
    assert response.text == "hello"


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
def test_repeated_binds_each_serve(server_factory: StartServer) -> None:
    server = server_factory(APP, binds=["127.0.0.1:0", "[::1]:0"])

    assert len(server.addresses) == 2
    for url in server.addresses:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            assert client.get("/hello").text == "hello"
