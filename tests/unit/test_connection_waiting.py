"""A request waiting for a free thread, seen from its connection, without sockets.

Under load (1,024 busy connections, 8 threads) most requests wait for a thread. They
wait in the pool's queue and their connections keep reading: pausing and resuming the
transport for each cost two system calls a request and halved the throughput, and what
such a connection can send meanwhile is bounded anyway (PIPELINE_AHEAD parsed requests,
then reading pauses).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from wsgiserve.connection import PIPELINE_AHEAD, HttpConnection
from wsgiserve.server import Server
from wsgiserve.settings import Settings

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class RecordingTransport:
    """Just enough of an asyncio transport: it records pauses and writes."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.written = b""

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, pieces: list[bytes]) -> None:
        self.written += b"".join(pieces)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class CrowdedPool:
    """Every thread busy and more requests waiting than `crowded_at`."""

    crowded_at = 0

    def __init__(self) -> None:
        self.in_flight = 0
        self.submitted: list[Any] = []

    def submit(self, job: Any) -> None:
        self.in_flight += 1
        self.submitted.append(job)

    # Nothing here runs an app, so nothing finishes or posts back.
    def finished(self) -> None:
        raise AssertionError("no request runs in this pool")

    def post(self, callback: Callable[[Any], None], argument: Any) -> None:
        raise AssertionError("no request runs in this pool")

    def after_batch(self, callback: Callable[[], None]) -> None:
        raise AssertionError("no request runs in this pool")


def _connection(pool: CrowdedPool) -> tuple[HttpConnection, RecordingTransport]:
    async def context() -> Any:
        server = Server(lambda environ, start_response: [], Settings(threads=1))
        await server.start([])
        server.pool.stop()
        assert server.context is not None
        return dataclasses.replace(server.context, pool=pool)

    connection = HttpConnection(asyncio.run(context()))
    transport = RecordingTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_a_request_waiting_for_a_thread_is_queued_and_its_connection_keeps_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = CrowdedPool()
    connection, transport = _connection(pool)
    connection.data_received(GET)
    assert len(pool.submitted) == 1
    assert transport.pauses == 0
    assert any("every thread is busy" in record.getMessage() for record in caplog.records)


def test_a_client_pipelining_behind_a_waiting_request_is_still_paused() -> None:
    pool = CrowdedPool()
    connection, transport = _connection(pool)
    connection.data_received(GET * (PIPELINE_AHEAD + 3))
    assert transport.paused  # the bound on what one connection can make us hold
    assert len(pool.submitted) == 1  # the first; the others wait behind it, in order
