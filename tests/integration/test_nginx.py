"""wsgiserve behind a real nginx, over a unix socket and over TCP.

nginx runs ``docs/nginx.conf.example`` (see nginx_support): what the app sees of the client,
a 100 MiB upload and a 50 MiB download streamed through, and an instance stopped with SIGTERM
from under a stream of requests without one of them failing.

Every wait is bounded; nothing asserts how long something took.
"""

from __future__ import annotations

import grp
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from .nginx_support import Nginx, nginx_binary, run_directory, start_nginx, web_server_group
from .stack import Stack
from .support import APPS, ServerProcess, Wire, start_server

pytestmark = pytest.mark.timeout(120)

APP = f"{APPS}.mount_app:app"
TRANSPORTS = ("unix", "tcp")
MIB = 1024 * 1024
CLIENT_TIMEOUT = 30.0  # seconds, for any one request through nginx
# What a client writes to pass itself off as someone else, or as arriving over https.
SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "1",
    "Forwarded": "for=9.9.9.9;proto=https;host=evil.example",
}


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    """The guide's /run/wsgiserve, where every unix socket here lives (see run_directory)."""
    with run_directory() as directory:
        yield directory


def _upstream(server: ServerProcess) -> str:
    """The address of ``server`` as nginx's ``server`` directive spells it."""
    address = server.addresses[0]
    return address if address.startswith("unix:") else address.split("://", 1)[1]


def start_stack(
    directory: Path,
    run_dir: Path,
    transport: str,
    instances: int = 1,
    extra: Sequence[str] = (),
    hosts: Sequence[str] = ("127.0.0.1",),
    mount: str = "/",
    socket_access: Sequence[str] | None = None,
) -> Stack[Nginx]:
    """Start ``instances`` wsgiserve processes (with ``extra`` flags), then nginx over them.

    A unix socket is set up as the README says: in ``run_dir`` with ``--socket-group`` (the
    group nginx's workers run as), unless ``socket_access`` gives other flags.
    """
    if socket_access is None:
        socket_access = ("--socket-group", web_server_group())
    servers: list[ServerProcess] = []
    try:
        for index in range(instances):
            if transport == "unix":
                bind = f"unix:{run_dir / directory.name}-{index}.sock"
                flags = tuple(socket_access)
            else:
                bind, flags = "127.0.0.1:0", ()
            servers.append(
                start_server(APP, "--graceful-timeout", "10", *flags, *extra, binds=(bind,))
            )
        upstreams = [_upstream(s) for s in servers]
        nginx = start_nginx(directory / "nginx", upstreams, hosts=hosts, mount=mount)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Stack(servers, nginx)


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, run_dir: Path
) -> Iterator[Stack[Nginx]]:
    """One nginx and one wsgiserve per transport, shared by the tests that only send requests."""
    directory = tmp_path_factory.mktemp(f"nginx-{request.param}")
    with start_stack(directory, run_dir, request.param) as started:
        yield started


def _env(url: str, **headers: str) -> dict[str, object]:
    response = httpx.get(f"{url}/env", headers=headers, timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200, response.text
    report: dict[str, object] = response.json()
    return report


def test_nginx_is_installed() -> None:
    # Fails (never skips) without nginx, saying how to get it; every other test here errors.
    assert Path(nginx_binary()).exists()


def test_nginx_inherits_non_blocking_listening_sockets(stack: Stack[Nginx]) -> None:
    # O_NONBLOCK belongs to the open file, which nginx shares with us: a blocking one lets a
    # worker hang in accept4() with the requests it holds (seen as a rare 30 s ReadTimeout).
    assert stack.front.sockets
    assert not any(os.get_blocking(sock.fileno()) for sock in stack.front.sockets)


# -- what the app sees of the client ----------------------------------------------------


def test_client_seen_through_nginx(stack: Stack[Nginx]) -> None:
    port = stack.front.port
    seen = _env(stack.front.url)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["REMOTE_PORT"] == "0"  # X-Forwarded-For carries no port
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(port)
    # From a trusted peer wsgiserve leaves the headers for the app to look at.
    assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "http"
    assert "HTTP_FORWARDED" not in seen


def test_client_written_forwarding_headers_from_a_trusted_address(stack: Stack[Nginx]) -> None:
    port = stack.front.port
    seen = _env(stack.front.url, **SPOOFED)
    # nginx appends the client's address: the chain is "6.6.6.6, 127.0.0.1". wsgiserve takes
    # the right-most hop that is not a trusted proxy. The client here connects from
    # 127.0.0.1, which is also a trusted proxy by default (nginx's own address), so nothing
    # can tell this client from a proxy on this machine that vouches for 6.6.6.6: believing
    # it is the documented rule, and what the app must see. A client at an address that is
    # not trusted cannot do this; see the next test.
    assert seen["REMOTE_ADDR"] == "6.6.6.6"
    assert seen["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.1"
    # Every other header the client wrote was replaced by nginx (or removed: Forwarded).
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(port)
    assert seen["HTTP_X_FORWARDED_HOST"] == f"127.0.0.1:{port}"
    assert seen["HTTP_X_FORWARDED_PORT"] == str(port)
    assert "HTTP_FORWARDED" not in seen


def test_request_without_host_passes_no_client_forwarded_host(stack: Stack[Nginx]) -> None:
    # Without a Host header $http_host is empty and nginx sends no X-Forwarded-Host; the
    # client's own must not go through in its place.
    wire = Wire.connect("127.0.0.1", stack.front.port)
    try:
        wire.send(b"GET /env HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n")
        response = wire.read_response()
    finally:
        wire.close()
    assert response.status == 200
    seen = json.loads(response.body)
    assert "HTTP_X_FORWARDED_HOST" not in seen
    assert seen["HTTP_HOST"] == "localhost"  # nginx's $host: the server_name
    assert seen["SERVER_PORT"] == str(stack.front.port)


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_written_forwarding_headers_from_an_untrusted_address(
    tmp_path: Path, run_dir: Path, transport: str
) -> None:
    # Trust only 127.0.0.1 (where nginx connects from over TCP), and come in over ::1:
    # now the client is not a proxy, so it is the right-most untrusted hop.
    started = start_stack(
        tmp_path,
        run_dir,
        transport,
        extra=("--forwarded-allow-ips", "127.0.0.1"),
        hosts=("::1",),
    )
    with started:
        port = started.front.port_of("::1")
        seen = _env(started.front.urls["::1"], **SPOOFED)
    assert seen["REMOTE_ADDR"] == "::1"
    assert seen["REMOTE_PORT"] == "0"
    assert seen["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, ::1"
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == f"[::1]:{port}"
    assert seen["SERVER_NAME"] == "[::1]"
    assert seen["SERVER_PORT"] == str(port)
    assert "HTTP_FORWARDED" not in seen


# -- the app under a sub-path, and the unix socket as the guide sets it up ----------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mounted_under_a_sub_path(tmp_path: Path, run_dir: Path, transport: str) -> None:
    # location /app/ { proxy_pass http://wsgiserve; } passes /app/... on as it is.
    with start_stack(tmp_path, run_dir, transport, mount="/app/") as started:
        url = started.front.url
        seen = _env(url.rstrip("/") + "/app", **{"X-Forwarded-Prefix": "/evil"})
        outside = httpx.get(f"{url}/env", timeout=CLIENT_TIMEOUT)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/env")
    assert seen["HTTP_X_FORWARDED_PREFIX"] == "/app/"  # nginx's, not the client's
    assert outside.status_code != 200  # outside the mount nginx does not ask the app


@pytest.mark.skipif(
    os.geteuid() != 0, reason="workers run as www-data only when the tests run as root"
)
def test_unix_socket_without_socket_group_is_refused_to_nginx(
    tmp_path: Path, run_dir: Path
) -> None:
    # The guide followed before --socket-group: a root-owned 0755 socket, and 502 from
    # nginx, whose workers (www-data) may not connect to it.
    with start_stack(tmp_path, run_dir, "unix", socket_access=()) as started:
        response = httpx.get(f"{started.front.url}/env", timeout=CLIENT_TIMEOUT)
        error_log = started.front.error_log
    assert response.status_code == 502
    assert "Permission denied" in error_log


def test_unix_socket_with_socket_group_reaches_nginx(tmp_path: Path, run_dir: Path) -> None:
    with start_stack(tmp_path, run_dir, "unix") as started:
        info = os.stat(started.servers[0].addresses[0].removeprefix("unix:"))
        response = httpx.get(f"{started.front.url}/env", timeout=CLIENT_TIMEOUT)
    assert grp.getgrgid(info.st_gid).gr_name == web_server_group()
    assert info.st_mode & 0o777 == 0o660
    assert response.status_code == 200
    assert response.json()["REMOTE_ADDR"] == "127.0.0.1"


# -- bodies streamed through ------------------------------------------------------------


def _pieces(total: int, size: int = MIB) -> Iterator[bytes]:
    piece = b"u" * size
    for _ in range(total // size):
        yield piece


def test_upload_100_mib_streamed(stack: Stack[Nginx]) -> None:
    size = 100 * MIB
    # A generator body: httpx sends it chunked, and nginx passes it on as it arrives.
    response = httpx.post(f"{stack.front.url}/count", content=_pieces(size), timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200, stack.front.diagnostics()
    assert response.text == str(size)


def test_download_50_mib_streamed(stack: Stack[Nginx]) -> None:
    size = 50 * MIB
    received = 0
    foreign = 0
    with httpx.stream("GET", f"{stack.front.url}/big?mb=50", timeout=CLIENT_TIMEOUT) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            received += len(chunk)
            foreign += len(chunk) - chunk.count(b"z")
    assert (received, foreign) == (size, 0)


# -- one of two instances stopped under load ---------------------------------------------


LOOPS = 6  # client threads: half keep one connection to nginx, half open one per request
STOP_AFTER = 100  # requests answered before the first instance gets SIGTERM
# Requests sent after the first instance has exited, before the loop ends: the loop runs
# until then (a fixed count could all be answered while the instance was still draining).
AFTER_EXIT = 60
# Seconds: a bound on the whole run, which takes 1-2 s on an idle machine. It is not what is
# being tested, so it is generous enough for a busy CI runner.
LOOP_DEADLINE = 45.0
START_WAIT = 20.0  # seconds for an instance to boot its worker
BOOTING = re.compile(r"Booting worker with pid: \d+")


@dataclass
class Outcome:
    status: int | str  # the HTTP status, or the exception's name
    pid: int | None
    after_exit: bool  # sent after the first instance had exited


def _worker_pids(server: ServerProcess) -> set[int]:
    server.log.wait_for(BOOTING, timeout=START_WAIT)
    return {server.pid, *(child.pid for child in psutil.Process(server.pid).children())}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_to_one_of_two_instances_loses_no_request(
    tmp_path: Path, run_dir: Path, transport: str
) -> None:
    started = start_stack(tmp_path, run_dir, transport, instances=2)
    with started:
        first, second = started.servers
        # The pids that answer: each instance is a supervisor with one worker process.
        workers = {"first": _worker_pids(first), "second": _worker_pids(second)}
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        progressed = threading.Event()
        first_gone = threading.Event()
        deadline = time.monotonic() + LOOP_DEADLINE

        def request(client: httpx.Client) -> None:
            after_exit = first_gone.is_set()
            try:
                response = client.get(f"{started.front.url}/env?sleep=0.01")
                pid = response.json()["pid"] if response.status_code == 200 else None
                outcome = Outcome(response.status_code, pid, after_exit)
            except httpx.HTTPError as error:
                outcome = Outcome(type(error).__name__, None, after_exit)
            with lock:
                outcomes.append(outcome)
                if len(outcomes) >= STOP_AFTER:
                    progressed.set()

        def enough() -> bool:
            with lock:
                return sum(o.after_exit for o in outcomes) >= AFTER_EXIT

        def loop(index: int) -> None:
            # "Connection: close" makes nginx close, so the next request opens a connection.
            headers = {} if index % 2 == 0 else {"Connection": "close"}
            with httpx.Client(timeout=CLIENT_TIMEOUT, headers=headers) as client:
                while time.monotonic() < deadline and not enough():
                    request(client)

        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(LOOPS)]
        for thread in threads:
            thread.start()
        assert progressed.wait(LOOP_DEADLINE), "the request loop made no progress"
        exit_code = first.stop(signal.SIGTERM)
        first_gone.set()
        for thread in threads:
            thread.join(max(0.0, deadline + CLIENT_TIMEOUT - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "the request loop did not finish"
        first_log, diagnostics = first.log.text, started.front.diagnostics()

    late_count = sum(o.after_exit for o in outcomes)
    assert late_count >= AFTER_EXIT, f"{late_count} requests after the exit in {LOOP_DEADLINE} s"
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, f"{len(failed)} requests failed: {failed[:5]}\n{diagnostics}"
    assert exit_code == 0, first_log
    answered_by = {pid: name for name, pids in workers.items() for pid in pids}
    assert {answered_by[o.pid] for o in outcomes if o.pid} == {"first", "second"}
    late = {answered_by[o.pid] for o in outcomes if o.pid and o.after_exit}
    assert late == {"second"}, "the loop ended before the first instance had stopped"
