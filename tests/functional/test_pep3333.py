"""PEP 3333 as an app sees it: the environ, `wsgi.input`, `write()`, `start_response` rules,
status and header checks, the iterable's `close()`, and Content-Length mismatches.

Every app that follows the PEP also runs inside `wsgiref.validate.validator`.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.polling import wait_until
from tests.support.rawhttp import exchange, parse_responses

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Serve = Callable[..., Any]
Environ = dict[str, Any]
StartResponse = Callable[..., Any]

TEXT = ("Content-Type", "text/plain")


def get(path: str = "/", version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode("latin-1")


def responses_complete(count: int) -> Callable[[bytes], bool]:
    return lambda data: len(parse_responses(data, eof=False)) >= count


def environ_app(seen: list[Environ]) -> App:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [TEXT, ("Content-Length", "2")])
        return [b"ok"]

    return app


# -- environ ---------------------------------------------------------------------------


def _serve_for_environ(serve: Serve, wrap: Callable[[App], App]) -> tuple[Any, list[Environ]]:
    seen: list[Environ] = []
    return serve(wrap(environ_app(seen))), seen


def _one_environ(server: Any, seen: list[Environ], data: bytes) -> tuple[Environ, int]:
    with socket.create_connection(server.address, timeout=5) as sock:
        port = sock.getsockname()[1]
        sock.sendall(data)
        received = b""
        while not received.endswith(b"\r\n\r\nok"):
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    assert len(seen) == 1
    return seen.pop(), port


def test_environ_of_a_get(serve: Serve, wrap: Callable[[App], App]) -> None:
    server, seen = _serve_for_environ(serve, wrap)
    environ, port = _one_environ(
        server,
        seen,
        b"GET /caf%C3%A9/a%2Fb?q=%20x&y=%2F HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"X-Multi: one\r\nX-Multi: two\r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\n"
        b"X_Underscore: dropped\r\n"
        b"X-Dash-Name: kept\r\n\r\n",
    )
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/caf\xc3\xa9/a/b"
    assert environ["QUERY_STRING"] == "q=%20x&y=%2F"
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"] == str(port)
    assert environ["HTTP_HOST"] == "example.com:8080"
    assert environ["HTTP_X_MULTI"] == "one, two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_X_DASH_NAME"] == "kept"
    assert not [key for key in environ if "UNDERSCORE" in key.upper()]
    assert all("dropped" not in str(value) for value in environ.values())

    assert environ["wsgi.version"] == (1, 0)
    assert type(environ["wsgi.version"]) is tuple
    assert environ["wsgi.url_scheme"] == "http"
    for method in ("read", "readline", "readlines", "__iter__"):
        assert hasattr(environ["wsgi.input"], method)
    for method in ("write", "writelines", "flush"):
        assert hasattr(environ["wsgi.errors"], method)
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert callable(environ["wsgi.file_wrapper"])
    assert environ["wsgi.input_terminated"] is True
    for key, value in environ.items():
        if "." not in key:
            assert type(value) is str, key


def test_environ_of_a_post_with_a_body(serve: Serve, wrap: Callable[[App], App]) -> None:
    server, seen = _serve_for_environ(serve, wrap)
    environ, _ = _one_environ(
        server,
        seen,
        b"POST /form HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 3\r\n\r\na=1",
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["QUERY_STRING"] == ""


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/plain", "/plain", ""),
        ("/caf%C3%A9", "/caf\xc3\xa9", ""),
        ("/a%2Fb", "/a/b", ""),
        ("/sp%20ace/%25", "/sp ace/%", ""),
        ("/x?%2F=%C3%A9&a", "/x", "%2F=%C3%A9&a"),
        ("/?", "/", ""),
        ("/%E2%82%AC", "/\xe2\x82\xac", ""),
    ],
)
def test_path_is_percent_decoded_to_latin1_and_query_kept_raw(
    serve: Serve, wrap: Callable[[App], App], target: str, path: str, query: str
) -> None:
    server, seen = _serve_for_environ(serve, wrap)
    environ, _ = _one_environ(server, seen, get(target))
    assert environ["PATH_INFO"] == path
    assert environ["QUERY_STRING"] == query


# -- wsgi.file_wrapper -------------------------------------------------------------------


def test_file_wrapper_serves_a_file_and_closes_it(
    serve: Serve, wrap: Callable[[App], App], tmp_path: Path
) -> None:
    content = bytes(range(256)) * 1000
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    opened: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        handle = path.open("rb")
        opened.append(handle)
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(content)))],
        )
        file_wrapper: Callable[[IO[bytes], int], Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return file_wrapper(handle, 8192)

    server = serve(wrap(app))
    result = exchange(server.address, get(), until=responses_complete(1))
    (response,) = parse_responses(result.data, eof=False)
    assert response.body == content
    wait_until(lambda: opened[0].closed, "the app's file to be closed")


# -- wsgi.input ---------------------------------------------------------------------------

BODY = b"alpha\nbravo charlie\ndelta\n"
FIRST_PART = b"alpha\nbr"


def _read_n(stream: Any) -> Iterator[bytes]:
    while piece := stream.read(3):
        yield piece
    yield stream.read(3)  # at the end, reads keep returning b""


def _readline_n(stream: Any) -> Iterator[bytes]:
    while line := stream.readline(4):
        yield line


def _iterate(stream: Any) -> Iterator[bytes]:
    yield from stream


def _readlines(stream: Any) -> Iterator[bytes]:
    yield b"".join(stream.readlines())
    yield from stream.readlines()


def _readlines_hint(stream: Any) -> Iterator[bytes]:
    while lines := stream.readlines(3):
        yield b"+".join(lines)


def _read_all(stream: Any) -> Iterator[bytes]:
    yield stream.read()
    yield stream.read()


# (reader, parts it yields, whether the first part comes before the body is complete)
READERS: dict[str, tuple[Callable[[Any], Iterator[bytes]], list[bytes], bool]] = {
    "read(n)": (
        _read_n,
        [b"alp", b"ha\n", b"bra", b"vo ", b"cha", b"rli", b"e\nd", b"elt", b"a\n", b""],
        True,
    ),
    "readline(n)": (
        _readline_n,
        [b"alph", b"a\n", b"brav", b"o ch", b"arli", b"e\n", b"delt", b"a\n"],
        True,
    ),
    "iteration": (_iterate, [b"alpha\n", b"bravo charlie\n", b"delta\n"], True),
    "readlines()": (_readlines, [BODY], False),
    "readlines(hint)": (_readlines_hint, [b"alpha\n", b"bravo charlie\n", b"delta\n"], True),
}


def _streaming_input_app(
    reader: Callable[[Any], Iterator[bytes]], first_read: threading.Event
) -> App:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        parts = reader(environ["wsgi.input"])
        got = [next(parts)]
        first_read.set()
        got.extend(parts)
        body = b"|".join(got)
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]

    return app


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _send_streaming_body(server: Any, first_read: threading.Event, streams: bool) -> bytes:
    """Send `BODY` chunked, in two parts; the second only after the app's first read
    returned, when that read should not need the whole body."""
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(
            b"POST /in HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + _chunk(FIRST_PART)
        )
        if streams:
            assert first_read.wait(5), "the first read waited for the whole body"
        sock.sendall(_chunk(BODY[len(FIRST_PART) :]) + b"0\r\n\r\n")
        received = b""
        while not responses_complete(1)(received):
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    (response,) = parse_responses(received, eof=False)
    assert response.status == 200
    return response.body


@pytest.mark.parametrize("mode", list(READERS))
def test_input_streams_as_the_body_arrives(
    serve: Serve, wrap: Callable[[App], App], mode: str
) -> None:
    reader, parts, streams = READERS[mode]
    first_read = threading.Event()
    server = serve(wrap(_streaming_input_app(reader, first_read)))
    assert _send_streaming_body(server, first_read, streams) == b"|".join(parts)


def test_input_read_without_a_size_reads_to_the_end(serve: Serve) -> None:
    # PEP 3333 gives read() a size, but frameworks call read() bare; not validator-clean.
    first_read = threading.Event()
    server = serve(_streaming_input_app(_read_all, first_read))
    assert _send_streaming_body(server, first_read, streams=False) == BODY + b"|"


def test_input_with_content_length_stops_at_the_declared_end(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        body = stream.read(100) + b"|" + stream.read(100) + b"|" + stream.readline()
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]

    server = serve(wrap(app))
    data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + get()
    result = exchange(server.address, data, until=responses_complete(2))
    assert [r.body for r in parse_responses(result.data, eof=False)] == [b"hello||", b"||"]


# -- write() and start_response ---------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_write_callable_comes_before_the_iterable(
    serve: Serve, wrap: Callable[[App], App], declared: bool
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        headers = [TEXT, ("Content-Length", "13")] if declared else [TEXT]
        write = start_response("200 OK", headers)
        write(b"one ")
        write(b"two ")
        return [b"three"]

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert [r.body for r in responses] == [b"one two three"] * 2
    assert (responses[0].header("content-length") is not None) is declared


def test_second_start_response_without_exc_info_is_a_500(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [TEXT, ("X-First", "1")])
        start_response("201 Created", [TEXT])
        return [b"body"]

    server = serve(app)
    result = exchange(server.address, get(), until=responses_complete(1))
    (response,) = parse_responses(result.data, eof=False)
    assert response.status == 500
    assert response.header("x-first") is None
    assert b"body" not in result.data
    assert any(record.exc_info for record in caplog.records)


def test_start_response_with_exc_info_before_the_head_replaces_the_response(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [TEXT, ("X-Original", "yes")])
        try:
            raise RuntimeError("handled by the app")
        except RuntimeError:
            start_response("503 Service Unavailable", [TEXT], sys.exc_info())
        return [b"error page"]

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert responses.statuses() == [503, 503]
    assert responses[0].body == b"error page"
    assert responses[0].header("x-original") is None


def test_start_response_with_exc_info_after_the_head_reraises_and_aborts(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")
    reached: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [TEXT, ("Content-Length", "100")])
        write(b"partial")
        try:
            raise RuntimeError("late failure")
        except RuntimeError:
            start_response("500 Internal Server Error", [TEXT], sys.exc_info())
            reached.append("after start_response")
        return [b"never"]

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert responses.truncated
    assert list(responses) == []
    assert b"HTTP/1.1 200 OK\r\n" in result.data
    assert result.data.endswith(b"partial")
    assert reached == []
    wait_until(
        lambda: any("late failure" in str(r.exc_info) for r in caplog.records),
        "the late failure to be logged",
    )


# -- status and header checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK", [("X-Bad", "a\r\nInjected: yes")]),
        ("200 OK", [("X-Bad", "a\nInjected: yes")]),
        ("200 OK", [("X-Bad", "a\rInjected: yes")]),
        ("200 OK", [("X-Bad", "a\x00Injected")]),
        ("200 OK\r\nInjected: yes", []),
        ("200 Injected\n", []),
        ("200 OK\x00Injected", []),
        (b"200 Injected", []),
        ("200 OK", [(b"X-Injected", "v")]),
        ("200 OK", [("X-Injected", b"v")]),
        ("200 OK", [("X-Injected", 5)]),
        ("200 OK", [("Bad Injected", "v")]),
        ("200 OK", [("X-Injected:", "v")]),
        ("200 OK", [("X-Injected", "v", "extra")]),
        ("200 OK", (("X-Injected", "v"),)),
        ("2000 Injected", []),
        ("OK Injected", []),
    ],
    ids=repr,
)
def test_invalid_status_or_headers_become_a_500(
    serve: Serve, caplog: pytest.LogCaptureFixture, status: Any, headers: Any
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, headers)
        return [b"Injected body"]

    server = serve(app)
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert responses.statuses() == [500, 500]
    assert b"Injected" not in result.data
    assert b"injected" not in result.data.lower()


# -- the iterable's close() ------------------------------------------------------------------


class ClosingBody:
    """An app iterable that records `close()`; raises at item `fail_at` when given."""

    def __init__(self, parts: list[bytes], fail_at: int | None = None) -> None:
        self.parts = parts
        self.fail_at = fail_at
        self.closed = threading.Event()
        self.close_calls = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, part in enumerate(self.parts):
            if index == self.fail_at:
                raise RuntimeError("failure inside the iterable")
            yield part

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


def _closing_app(body: ClosingBody, length: int | None = None) -> App:
    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        headers = [TEXT] if length is None else [TEXT, ("Content-Length", str(length))]
        start_response("200 OK", headers)
        return body

    return app


def test_close_is_called_after_success(serve: Serve, wrap: Callable[[App], App]) -> None:
    body = ClosingBody([b"a", b"b"])
    server = serve(wrap(_closing_app(body)))
    result = exchange(server.address, get(), until=responses_complete(1))
    assert parse_responses(result.data, eof=False)[0].body == b"ab"
    assert body.closed.wait(5)
    assert body.close_calls == 1


@pytest.mark.parametrize("fail_at", [0, 1])
def test_close_is_called_after_an_error(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture, fail_at: int
) -> None:
    caplog.set_level(logging.CRITICAL, logger="wsgiserve.error")
    body = ClosingBody([b"a", b"b"], fail_at=fail_at)
    server = serve(wrap(_closing_app(body, length=2)))
    until = responses_complete(1) if fail_at == 0 else None
    result = exchange(server.address, get(), idle_timeout=3, until=until)
    assert body.closed.wait(5)
    assert body.close_calls == 1
    responses = parse_responses(result.data)
    if fail_at == 0:  # nothing sent yet: a 500 instead
        assert responses.statuses() == [500]
    else:  # the head is out: the connection is cut short
        assert result.closed
        assert responses.truncated


def test_close_is_called_when_the_client_disconnects_mid_response(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    closed = threading.Event()
    produced: list[int] = []

    class Slow:
        def __iter__(self) -> Iterator[bytes]:
            for index in range(1000):
                produced.append(index)
                yield b"x" * 1024
                time.sleep(0.01)

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Slow:
        start_response("200 OK", [TEXT])
        return Slow()

    server = serve(wrap(app))
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(get())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert closed.wait(5)
    assert len(produced) < 1000


# -- Content-Length mismatches ------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["list", "iterator"])
def test_content_length_larger_than_the_body_truncates_and_closes(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    caplog.set_level(logging.CRITICAL, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [TEXT, ("Content-Length", "100")])
        parts = [b"only ", b"this"]
        return parts if shape == "list" else iter(parts)

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert list(responses) == []
    assert responses.truncated
    assert result.data.endswith(b"\r\n\r\nonly this")


@pytest.mark.parametrize("shape", ["list", "iterator"])
def test_content_length_smaller_than_the_body_drops_the_extra(
    serve: Serve, wrap: Callable[[App], App], caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    caplog.set_level(logging.CRITICAL, logger="wsgiserve.error")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [TEXT, ("Content-Length", "4")])
        parts = [b"abc", b"dXYZ", b"QRS"]
        return parts if shape == "list" else iter(parts)

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), idle_timeout=3)
    responses = parse_responses(result.data)
    assert responses.error is None
    assert responses[0].body == b"abcd"
    assert all(response.body == b"abcd" for response in responses)
    for extra in (b"XYZ", b"QRS"):
        assert extra not in result.data
