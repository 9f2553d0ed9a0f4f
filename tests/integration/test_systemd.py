"""Sockets handed to wsgiserve by its parent: systemd socket activation and ``-b fd://N``.

``systemd-socket-activate`` (from the systemd package) plays systemd where it is installed;
the ``LISTEN_FDS`` protocol itself (sd_listen_fds(3)) is exercised everywhere with a small
wrapper that puts a listening socket on fd 3, sets ``LISTEN_PID`` to its own pid and execs
wsgiserve, as systemd does. The test binds every socket itself, so its port is known before
the server starts and nothing else can take it.

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
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from .support import (
    APPS,
    LISTENING,
    REPO_ROOT,
    START_TIMEOUT,
    ServerProcess,
    StderrLog,
    subprocess_env,
)

pytestmark = pytest.mark.timeout(90)

APP = f"{APPS}.plain_app:app"
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
ACTIVATED = re.compile(r"Using 1 socket\(s\) from systemd socket activation")
ANNOUNCED = re.compile(r"Listening on (?P<address>\S+) as 3\.")  # systemd-socket-activate
CLIENT_TIMEOUT = 20.0  # seconds, for any one request
# What systemd does between fork and exec: the socket on fd 3, LISTEN_PID = the pid that
# will exec the service. argv: the socket's fd here, "self" or a pid for LISTEN_PID, then
# the program to exec and its arguments.
WRAPPER = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[2] == "self" else sys.argv[2]
os.execv(sys.argv[3], sys.argv[3:])
"""
WSGISERVE = (sys.executable, "-m", "wsgiserve", APP, "--threads", "2")


class SpawnFixture:
    """Starts processes with their stderr drained; stops every one by pid at teardown."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []

    def __call__(
        self, argv: Sequence[str], env: dict[str, str] | None = None, pass_fds: Sequence[int] = ()
    ) -> ServerProcess:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env={**subprocess_env(), **(env or {})},
            pass_fds=tuple(pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        server = ServerProcess(proc, StderrLog(proc.stderr))
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()  # SIGTERM, then SIGKILL by pid if it overstays


@pytest.fixture
def spawn() -> Iterator[SpawnFixture]:
    spawner = SpawnFixture()
    try:
        yield spawner
    finally:
        spawner.stop_all()


def _tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(128)
    return sock


def _client(where: str | Path) -> httpx.Client:
    """A client for ``http://host:port``, or for the unix socket at a path."""
    if isinstance(where, Path):
        transport = httpx.HTTPTransport(uds=str(where))
        return httpx.Client(
            transport=transport, base_url="http://localhost", timeout=CLIENT_TIMEOUT
        )
    return httpx.Client(base_url=where, timeout=CLIENT_TIMEOUT)


def _assert_serves(where: str | Path, times: int = 3) -> None:
    """``times`` requests on one connection, then ``times`` on a new connection each."""
    with _client(where) as client:
        for _ in range(times):
            response = client.get("/hello")
            assert (response.status_code, response.text) == (200, "hello")
    for _ in range(times):
        with _client(where) as client:
            assert client.get("/hello").text == "hello"


def _stopped_cleanly(server: ServerProcess) -> None:
    code = server.stop(signal.SIGTERM)
    assert code == 0, server.log.text


# -- systemd-socket-activate --------------------------------------------------------------


def _activate(spawn: SpawnFixture, address: str) -> ServerProcess:
    assert SOCKET_ACTIVATE is not None
    return spawn([SOCKET_ACTIVATE, "-l", address, *WSGISERVE])


def _activate_tcp(spawn: SpawnFixture) -> tuple[ServerProcess, int]:
    """systemd-socket-activate with a loopback socket this test bound, and the socket's port.

    It takes no port 0, but it passes on sockets it inherits by the same LISTEN_FDS protocol,
    so the test binds port 0 and hands the socket over: the port is never free for another
    process to take.
    """
    assert SOCKET_ACTIVATE is not None
    sock = _tcp_listener()
    port = int(sock.getsockname()[1])
    activator = _wrapped(spawn, sock, "self", SOCKET_ACTIVATE, *WSGISERVE)
    activator.log.wait_for(ANNOUNCED, timeout=START_TIMEOUT)
    return activator, port


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_systemd_socket_activate_tcp(spawn: SpawnFixture) -> None:
    activator, port = _activate_tcp(spawn)
    # Nothing runs wsgiserve until a client connects: this first request starts it.
    _assert_serves(f"http://127.0.0.1:{port}")
    activator.log.wait_for(ACTIVATED, timeout=START_TIMEOUT)
    [listening] = activator.log.wait_for(LISTENING, timeout=START_TIMEOUT)
    assert listening["address"] == f"http://127.0.0.1:{port}"
    # systemd-socket-activate execs the service in its own process, whose pid LISTEN_PID names.
    assert int(listening["pid"]) == activator.pid
    _stopped_cleanly(activator)


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_systemd_socket_activate_unix(spawn: SpawnFixture, tmp_path: Path) -> None:
    path = tmp_path / "activated.sock"
    activator = _activate(spawn, str(path))
    activator.log.wait_for(ANNOUNCED, timeout=START_TIMEOUT)
    _assert_serves(path)
    [listening] = activator.log.wait_for(LISTENING, timeout=START_TIMEOUT)
    assert listening["address"] == f"unix:{path}"
    _stopped_cleanly(activator)


# -- the LISTEN_FDS protocol, with a wrapper in systemd's place -----------------------------


def _wrapped(
    spawn: SpawnFixture, sock: socket.socket, listen_pid: str, *argv: str
) -> ServerProcess:
    """``argv`` run with ``sock`` on fd 3, LISTEN_FDS=1 and LISTEN_PID=``listen_pid``."""
    fd = sock.fileno()
    command = [sys.executable, "-c", WRAPPER, str(fd), listen_pid, *argv]
    try:
        return spawn(command, env={"LISTEN_FDS": "1"}, pass_fds=(fd,))
    finally:
        sock.close()  # the server holds its own copy, as it would under systemd


@pytest.mark.parametrize("workers", [1, 2])
def test_listen_fds_socket_is_served(spawn: SpawnFixture, tmp_path: Path, workers: int) -> None:
    sock = _tcp_listener()
    port = int(sock.getsockname()[1])
    ignored = tmp_path / "ignored.sock"
    server = _wrapped(spawn, sock, "self", *WSGISERVE, "-w", str(workers), "-b", f"unix:{ignored}")
    [listening] = server.log.wait_for(LISTENING, timeout=START_TIMEOUT)
    assert listening["address"] == f"http://127.0.0.1:{port}"
    server.log.wait_for(ACTIVATED)
    _assert_serves(f"http://127.0.0.1:{port}")
    assert not ignored.exists(), "-b is ignored under socket activation"
    _stopped_cleanly(server)


def test_listen_fds_for_another_pid_are_not_claimed(spawn: SpawnFixture) -> None:
    # LISTEN_PID names someone else (here, this test process): the variables were meant for
    # a parent and merely inherited, so fd 3 is not ours and -b applies.
    sock = _tcp_listener()
    passed_port = int(sock.getsockname()[1])
    server = _wrapped(spawn, sock, str(os.getpid()), *WSGISERVE, "-b", "127.0.0.1:0")
    [listening] = server.log.wait_for(LISTENING, timeout=START_TIMEOUT)
    assert listening["address"] != f"http://127.0.0.1:{passed_port}"
    _assert_serves(listening["address"], times=1)
    assert not ACTIVATED.search(server.log.text)
    _stopped_cleanly(server)


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_systemd_unix_socket_file_outlives_the_service(spawn: SpawnFixture, tmp_path: Path) -> None:
    # systemd creates the socket file and keeps listening on it while the service restarts;
    # the service must not remove it, or clients get "no such file" though systemd listens.
    path = tmp_path / "activated.sock"
    activator = _activate(spawn, str(path))
    activator.log.wait_for(ANNOUNCED, timeout=START_TIMEOUT)
    _assert_serves(path, times=1)
    _stopped_cleanly(activator)
    assert path.exists(), "wsgiserve removed the socket file systemd created"


# -- -b fd://N ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_fd_bind(spawn: SpawnFixture, tmp_path: Path, family: str) -> None:
    path = tmp_path / "inherited.sock"
    sock = _tcp_listener() if family == "tcp" else _unix_listener(path)
    fd = sock.fileno()
    port = sock.getsockname()[1] if family == "tcp" else None
    expected = f"unix:{path}" if family == "unix" else f"http://127.0.0.1:{port}"
    try:
        argv = [sys.executable, "-m", "wsgiserve", APP, "--threads", "2", "-b", f"fd://{fd}"]
        server = spawn(argv, pass_fds=(fd,))
    finally:
        sock.close()
    [listening] = server.log.wait_for(LISTENING, timeout=START_TIMEOUT)
    assert listening["address"] == expected
    _assert_serves(path if family == "unix" else expected)
    _stopped_cleanly(server)
    if family == "unix":
        # The socket file belongs to whoever created it and passed it down.
        assert path.exists(), "wsgiserve removed a socket file it did not create"
