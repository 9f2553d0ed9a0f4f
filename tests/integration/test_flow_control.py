"""Memory stays bounded by construction: server RSS growth under large bodies and idle sockets.

The figures are printed (run with ``pytest -s``) for the report; the assertions are bounds on
memory, never on time. The only waits are deadlines that bound a stall.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import httpx
import pytest

from .support import APPS, OpenWire, ServerProcess, StartServer, Wire, request_bytes

pytestmark = pytest.mark.timeout(120)

APP = f"{APPS}.plain_app:app"
MiB = 1024 * 1024
KiB = 1024
PIECE = 64 * KiB
BODY_SIZE = 50 * MiB
RSS_BOUND = 32 * MiB
STALL = 3.0  # seconds the client reads nothing while the server produces a 50 MiB body
IDLE_CONNECTIONS = 1000
PER_CONNECTION_BOUND = 20 * KiB


class PeakRSS:
    """Tracks a server's peak RSS above a baseline taken after one warm-up request."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            assert client.get("/hello").text == "hello"
        self.baseline = server.rss()
        self.peak = self.baseline

    def sample(self) -> int:
        rss = self.server.rss()
        self.peak = max(self.peak, rss)
        return rss

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def report(self, label: str) -> str:
        return (
            f"[flow] {label}: baseline {self.baseline / MiB:.1f} MiB, "
            f"peak {self.peak / MiB:.1f} MiB, growth {self.growth / MiB:.2f} MiB"
        )


@pytest.fixture
def server(server_factory: StartServer) -> ServerProcess:
    return server_factory(APP, "--keep-alive", "120")


def _pieces(total: int, rss: PeakRSS) -> Iterator[bytes]:
    piece = b"u" * PIECE
    sent = 0
    while sent < total:
        if sent % MiB == 0:
            rss.sample()
        chunk = piece[: min(PIECE, total - sent)]
        sent += len(chunk)
        yield chunk


def test_streamed_upload_with_content_length(server: ServerProcess, open_wire: OpenWire) -> None:
    rss = PeakRSS(server)
    wire = open_wire(*server.host_port)

    wire.send(request_bytes("POST", "/count", f"Content-Length: {BODY_SIZE}"))
    for chunk in _pieces(BODY_SIZE, rss):
        wire.send(chunk)
    response = wire.read_response()
    rss.sample()

    print(rss.report("50 MiB upload, Content-Length"))
    assert response.status == 200
    assert int(response.body) == BODY_SIZE
    assert rss.growth < RSS_BOUND


def test_streamed_upload_chunked(server: ServerProcess) -> None:
    rss = PeakRSS(server)

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        response = client.post("/count", content=_pieces(BODY_SIZE, rss))
    rss.sample()

    print(rss.report("50 MiB upload, chunked"))
    assert response.status_code == 200
    assert int(response.text) == BODY_SIZE
    assert rss.growth < RSS_BOUND


def test_large_response_to_a_stalled_reader(server: ServerProcess, open_wire: OpenWire) -> None:
    rss = PeakRSS(server)
    wire = open_wire(*server.host_port)

    wire.send(request_bytes("GET", f"/big?mb={BODY_SIZE // MiB}"))
    deadline = time.monotonic() + STALL
    samples = 0
    while time.monotonic() < deadline:
        rss.sample()
        samples += 1
        time.sleep(0.05)
    stalled = rss.growth
    status, headers = wire.read_head()
    length = int({k.lower(): v for k, v in headers}["content-length"])
    received = wire.discard_exact(length)
    rss.sample()

    print(rss.report(f"50 MiB response, client stalled {STALL:.0f} s ({samples} samples)"))
    print(f"[flow] growth during the stall alone: {stalled / MiB:.2f} MiB")
    assert status == 200
    assert length == BODY_SIZE
    assert received == BODY_SIZE
    assert stalled < RSS_BOUND
    assert rss.growth < RSS_BOUND


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed for this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_idle_keep_alive_connections_are_cheap(server_factory: StartServer) -> None:
    # The server inherits this process's limit, so raise it before starting the server.
    _raise_nofile(IDLE_CONNECTIONS + 512)
    server = server_factory(APP, "--keep-alive", "120")
    rss = PeakRSS(server)
    host, port = server.host_port
    wires: list[Wire] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            wire = Wire.connect(host, port, timeout=15.0)
            wires.append(wire)
            wire.send(request_bytes("GET", "/hello"))
            assert wire.read_response().body == b"hello"
        after = rss.sample()
        per_connection = (after - rss.baseline) / IDLE_CONNECTIONS

        print(rss.report(f"{IDLE_CONNECTIONS} idle keep-alive connections"))
        print(f"[flow] per idle connection: {per_connection / KiB:.2f} KiB")
        # They really are still open: a second request works on a sample of them.
        for wire in wires[:: IDLE_CONNECTIONS // 10]:
            wire.send(request_bytes("GET", "/hello"))
            assert wire.read_response().body == b"hello"
        assert per_connection < PER_CONNECTION_BOUND
    finally:
        for wire in wires:
            wire.close()
