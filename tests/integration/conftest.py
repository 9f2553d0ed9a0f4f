"""Fixtures for the integration tests: CLI servers in subprocesses and raw sockets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from .support import APPS, OpenWire, ServerProcess, StartServer, Wire, start_server

FRAMEWORK_APPS = {
    "flask": f"{APPS}.flask_app:app",
    "django": f"{APPS}.django_app:application",
}


@pytest.fixture
def server_factory() -> Iterator[StartServer]:
    """Start CLI servers with ``start_server``'s arguments; each is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        app: str, *extra: str, binds: Sequence[str] = ("127.0.0.1:0",), threads: int = 4
    ) -> ServerProcess:
        server = start_server(app, *extra, binds=binds, threads=threads)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module", params=sorted(FRAMEWORK_APPS))
def framework_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One server per framework, shared by that framework's tests in a module."""
    server = start_server(FRAMEWORK_APPS[request.param])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_wire() -> Iterator[OpenWire]:
    """Open raw client sockets; every one is closed at teardown."""
    opened: list[Wire] = []

    def connect(host: str, port: int) -> Wire:
        wire = Wire.connect(host, port)
        opened.append(wire)
        return wire

    yield connect
    for wire in opened:
        wire.close()
