"""Request ids and slow-request reports."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import wsgiserve
from tests.support.polling import eventually
from wsgiserve import logs
from wsgiserve.pool import MAX_WAITING


def id_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgiserve.request_id"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_the_clients_request_id_reaches_the_app() -> None:
    with wsgiserve.background_server(id_app, threads=2) as server:
        response = httpx.get(server.url, headers={"X-Request-ID": "abc-123"}, timeout=5)
    assert response.text == "abc-123"


def test_a_request_id_is_generated_when_the_client_sends_none() -> None:
    with wsgiserve.background_server(id_app, threads=2) as server, httpx.Client() as client:
        ids = [client.get(server.url, timeout=5).text for _ in range(20)]
        hostile = client.get(server.url, headers={"X-Request-ID": "x" * 500}, timeout=5).text
    assert len(set(ids)) == 20
    assert all(ids)
    assert all(identifier.isprintable() for identifier in ids)
    assert hostile != "x" * 500  # too long to trust: replaced


def slow_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    def deliberately_slow_handler() -> None:
        time.sleep(2.5)

    deliberately_slow_handler()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def test_a_slow_request_is_reported_once_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wsgiserve.error")
    with wsgiserve.background_server(slow_app, threads=2, slow_request_threshold=1) as server:
        response = httpx.get(server.url + "/report-me", timeout=10)
    assert response.status_code == 200
    reports = [r for r in caplog.records if "its thread's stack" in r.getMessage()]
    assert len(reports) == 1
    (report,) = reports
    assert "GET /report-me" in report.getMessage()
    assert "--slow-request-threshold" in report.getMessage()
    assert "deliberately_slow_handler" in (report.stack_info or "")
    # In the error log the stack is ordinary lines, not one line of escaped newlines.
    text = logs._ErrorFormatter(logs.ERROR_FORMAT).format(report)
    assert "\\x0a" not in text
    assert len(text.splitlines()) > 3
    assert "deliberately_slow_handler" in text


def test_a_crowded_thread_queue_is_logged_once_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One thread, held; past MAX_WAITING requests waiting for it, the log says so.
    release = threading.Event()

    def held_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        release.wait(20)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    caplog.set_level(logging.WARNING, logger="wsgiserve.error")
    over = 5
    sockets: list[socket.socket] = []
    with wsgiserve.background_server(held_app, threads=1) as server:
        try:
            for _ in range(1 + MAX_WAITING + over):
                sock = socket.create_connection(server.address, timeout=30)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                sockets.append(sock)

            def queue_full_lines() -> list[str]:
                return [
                    r.getMessage()
                    for r in caplog.records
                    if "every thread is busy" in r.getMessage()
                ]

            assert eventually(queue_full_lines, 10), "no line said the queue was full"
            release.set()
            answered = sum(sock.recv(64).startswith(b"HTTP/1.1 200") for sock in sockets)
        finally:
            release.set()
            for sock in sockets:
                sock.close()
    assert answered == len(sockets)  # queued, never refused
    lines = queue_full_lines()
    assert len(lines) == 1, lines  # once, not once per waiting request
    assert "--threads" in lines[0]


def test_a_timeout_that_many_clients_hit_is_one_line_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A slowloris flood: every connection times out the same way; the log says it once.
    caplog.set_level(logging.INFO, logger="wsgiserve.error")
    sockets: list[socket.socket] = []
    with wsgiserve.background_server(id_app, threads=2, header_timeout=1) as server:
        try:
            for _ in range(20):
                sock = socket.create_connection(server.address, timeout=10)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # and never the end of the head
                sockets.append(sock)
            answers = [sock.recv(4096) for sock in sockets]  # each gets its 408, then EOF
        finally:
            for sock in sockets:
                sock.close()

    def timeout_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "--header-timeout" in r.getMessage()]

    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    assert eventually(timeout_lines, 5)
    lines = timeout_lines()
    assert len(lines) == 1, lines  # not one line per client
    assert "1 time(s)" in lines[0]
