"""Wire details found by peers' test suites (issue 10, item 6), as bytes on a real socket.

`Connection` on HTTP/1.0 replies, HEAD without an invented length, 1xx and out-of-range
statuses from the app, `SERVER_PORT` on a unix socket, chunk extensions with BWS, the
request-line and header grammar forms that `test_smuggling.py` does not already cover, and
which request methods reach the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tests.support.rawhttp import ResponseList, exchange, parse_responses

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Serve = Callable[..., Any]

TEXT = ("Content-Type", "text/plain")
IDLE_TIMEOUT = 1.5  # seconds: a server that neither answers nor closes fails after this


class Recorder:
    """An app that answers 200 with its path and records the environs it saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.environs: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            self.environs.append(dict(environ))
        body = environ["PATH_INFO"].encode("latin-1")
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]


def get(path: str = "/", version: str = "1.1", extra: bytes = b"", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: t\r\n".encode() + extra + b"\r\n"


def one_response(raw: bytes, method: str = "GET") -> ResponseList:
    responses = parse_responses(raw, (method,))
    assert len(responses) == 1, f"expected one response, got {raw!r}"
    assert not responses.error, f"{responses.error}: {raw!r}"
    assert not responses.truncated, f"{raw!r}"
    return responses


def _generator_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [TEXT])
    yield b"first,"
    yield b"second"


# -- 1. Connection on HTTP/1.0 replies (RFC 9112 §9.3) ----------------------------------------


@pytest.mark.parametrize(
    ("app", "extra"),
    [
        pytest.param(Recorder(), b"", id="default-close"),
        pytest.param(_generator_app, b"Connection: keep-alive\r\n", id="close-delimited-body"),
    ],
)
def test_http10_reply_that_ends_the_connection_says_close(
    serve: Serve, app: App, extra: bytes
) -> None:
    """An HTTP/1.0 client learns from the reply itself that the connection ends with it."""
    server = serve(app)
    result = exchange(server.address, get("/", "1.0", extra), idle_timeout=IDLE_TIMEOUT)
    assert result.closed, f"the connection stayed open: {result.data!r}"
    (response,) = one_response(result.data)
    assert response.header("connection") == b"close", f"{result.data!r}"


# -- 2. HEAD never invents Content-Length: 0 (RFC 9110 §8.6, §9.3.2) --------------------------


def _empty_iterator(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [TEXT])
    return iter(())


def _empty_first_block(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterator[bytes]:
    start_response("200 OK", [TEXT])
    yield b""
    yield b"the body GET would send"


def _skips_body_on_head(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterator[bytes]:
    start_response("200 OK", [TEXT])
    if environ["REQUEST_METHOD"] != "HEAD":
        yield b"the body GET would send"


@pytest.mark.parametrize(
    "app",
    [_empty_iterator, _empty_first_block, _skips_body_on_head, _generator_app],
    ids=lambda app: app.__name__.strip("_"),
)
def test_head_of_a_streamed_body_has_no_invented_length(serve: Serve, app: App) -> None:
    """The length of a streamed body is unknown on HEAD: say nothing rather than 0. The
    connection is still usable (a HEAD response is framed by its method, not its length)."""
    server = serve(app)
    data = get(method="HEAD") + get("/next")
    result = exchange(server.address, data, until=lambda raw: raw.endswith(b"0\r\n\r\n"))
    responses = parse_responses(result.data, ("HEAD", "GET"), eof=False)
    assert responses.statuses() == [200, 200], f"{result.data!r}"
    head = responses[0]
    assert head.header("content-length") is None, f"{result.data!r}"
    assert head.header("transfer-encoding") is None, f"{result.data!r}"
    assert head.body == b""


# -- 3. 1xx and out-of-range statuses from the app are app errors (RFC 9110 §15) ---------------


@pytest.mark.parametrize(
    "status",
    ["100 Continue", "101 Switching Protocols", "103 Early Hints", "199 Odd", "600 Beyond",
     "999 Nope"],
)
@pytest.mark.parametrize("shape", ["list", "generator"])
def test_informational_or_out_of_range_status_becomes_500(
    serve: Serve, status: str, shape: str
) -> None:
    def list_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [TEXT])
        return [b"must-not-be-sent"]

    def generator_app(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        start_response(status, [TEXT])  # called on the first next(), like many frameworks
        yield b"must-not-be-sent"

    app = list_app if shape == "list" else generator_app

    server = serve(app)
    result = exchange(server.address, get(), until=lambda raw: b"\r\n\r\n" in raw)
    responses = parse_responses(result.data, eof=result.closed)
    assert responses.informational == 0, f"a 1xx went out as the response: {result.data!r}"
    assert responses.statuses() == [500], f"{result.data!r}"
    assert b"must-not-be-sent" not in result.data
    assert result.data.startswith(b"HTTP/1.1 500 "), f"{result.data!r}"
