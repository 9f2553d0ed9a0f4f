"""The worker side of a response: `start_response` rules, header checks, the framing
decision and the serialised head, through a real `Exchange` whose connection records what
would be sent.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from wsgiserve.exchange import Exchange, ServerClock, Wire
from wsgiserve.flow import WriteGate
from wsgiserve.response import ExcInfo, FileWrapper, InvalidResponse, Response, status_line

TEXT = ("Content-Type", "text/plain")
DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"


def make_clock() -> ServerClock:
    clock = ServerClock("wsgiserve")
    clock.date_header = b"Date: " + DATE + b"\r\n"
    return clock


class FinishedBody:
    """A request body that has fully arrived, as `Exchange.may_keep_alive` sees one."""

    complete = True
    expect_continue = False

    def remaining(self) -> int | None:
        return 0


class Recorder:
    """A real `Exchange` whose connection records what the loop would write.

    The exchange posts straight back to `on_send` / `on_end` (no loop between them), and
    every byte counts as written at once, so the write gate never holds the test up.
    """

    def __init__(
        self, version: str = "1.1", head_request: bool = False, keep_alive: bool = True
    ) -> None:
        environ = {"REQUEST_METHOD": "HEAD" if head_request else "GET", "PATH_INFO": "/"}
        self.gate = WriteGate()
        self.exchange = Exchange(
            self, environ, FinishedBody(), version, keep_alive, self.gate, make_clock(), _call
        )
        self.sent: list[bytes] = []
        self.ended: list[tuple[bytes, bool]] = []

    # -- ResponseSink: what the connection would write ----------------------------------

    def on_send(self, data: Wire) -> None:
        assert not self.ended, "bytes sent after the end"
        self.sent.append(self._written(data))

    def on_end(self, ending: tuple[Wire, bool]) -> None:
        assert not self.ended, "ended twice"
        data, keep_alive = ending
        self.ended.append((self._written(data), keep_alive))

    def on_abort(self, exchange: Exchange) -> None:
        raise AssertionError("a response that aborts is not a response test")

    def _written(self, data: Wire) -> bytes:
        joined = data if isinstance(data, bytes) else b"".join(data)
        self.gate.written(len(joined))
        return joined

    @property
    def wire(self) -> bytes:
        return b"".join(self.sent) + b"".join(data for data, _ in self.ended)

    @property
    def kept_alive(self) -> bool:
        (ending,) = self.ended
        return ending[1]


def _call(callback: Callable[[Any], None], argument: Any) -> None:
    callback(argument)


def caught(error: BaseException) -> ExcInfo:
    """The `sys.exc_info()` an app would pass after catching `error`."""
    try:
        raise error
    except BaseException:
        return type(error), error, error.__traceback__


def new_response(recorder: Recorder) -> Response:
    return Response(recorder.exchange)


def split(wire: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """(status line, headers with lower-cased names, body)."""
    head, _, body = wire.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(b": ")
        headers.append((name.lower(), value))
    return first, headers, body


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def respond(
    exchange: Recorder,
    status: str,
    headers: list[tuple[str, str]],
    parts: Iterable[bytes],
    shape: str,
) -> Response:
    """Drive a response the way `call.run_app` does for a list or a streamed body."""
    response = new_response(exchange)
    response.start_response(status, headers)
    if shape == "list":
        response.finish_with(b"".join(parts))
    else:
        for part in parts:
            response.write(part)
        response.finish()
    response.complete()
    return response


# -- status line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "line"),
    [
        ("200 OK", b"HTTP/1.1 200 OK\r\n"),
        ("404", b"HTTP/1.1 404 Not Found\r\n"),
        ("599", b"HTTP/1.1 599 \r\n"),
        ("299 Custom reason\twith tab", b"HTTP/1.1 299 Custom reason\twith tab\r\n"),
        ("200 ", b"HTTP/1.1 200 \r\n"),
        ("201 Cr\xe9\xe9", b"HTTP/1.1 201 Cr\xe9\xe9\r\n"),
    ],
)
def test_status_line(status: str, line: bytes) -> None:
    assert status_line(status) == (line, int(status[:3]))


@pytest.mark.parametrize(
    "status",
    [
        "20 OK",
        "2000 OK",
        "200OK",
        "099 Low",
        "100 Continue",
        "101 Switching Protocols",
        "103 Early Hints",
        "199",
        "600 Beyond",
        "999",
        "OK 200",
        "",
        "200 OK\r\nX-Injected: 1",
        "200 OK\n",
        "200 OK\x00",
        "200 OK\x7f",
        " 200 OK",
        b"200 OK",
        200,
        None,
    ],
    ids=repr,
)
def test_invalid_status_is_refused(status: Any) -> None:
    with pytest.raises(InvalidResponse):
        status_line(status)
    with pytest.raises(InvalidResponse):
        new_response(Recorder()).start_response(status, [TEXT])


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        (TEXT,),
        [["Content-Type", "text/plain"]],
        [("Content-Type",)],
        [("X-A", "1", "2")],
        [(b"X-Bytes", "v")],
        [("X-Bytes", b"v")],
        [("X-Int", 1)],
        [("X-None", None)],
        [("", "v")],
        [("Bad Name", "v")],
        [("X-Colon:", "v")],
        [("X-Nl\n", "v")],
        [("X-Cr", "a\rb")],
        [("X-Lf", "a\nb")],
        [("X-Crlf", "a\r\nX-Injected: 1")],
        [("X-Nul", "a\x00b")],
        [("X-Del", "a\x7fb")],
        [("X-Esc", "a\x1bb")],
        [("X-Snowman", "\u2603")],
        [("Content-Length", "12abc")],
        [("Content-Length", "-1")],
        [("Content-Length", "1"), ("Content-Length", "1")],
    ],
    ids=repr,
)
def test_invalid_headers_are_refused(headers: Any) -> None:
    response = new_response(Recorder())
    with pytest.raises(InvalidResponse):
        response.start_response("200 OK", headers)
    assert not response.started


def test_valid_header_values_pass_through() -> None:
    exchange = Recorder()
    headers = [TEXT, ("X-Tab", "a\tb"), ("X-Latin", "caf\xe9"), ("X-Empty", "")]
    respond(exchange, "200 OK", headers, [b"hi"], "list")
    _, got, body = split(exchange.wire)
    assert header(got, b"x-tab") == [b"a\tb"]
    assert header(got, b"x-latin") == [b"caf\xe9"]
    assert header(got, b"x-empty") == [b""]
    assert body == b"hi"


def test_date_and_server_are_added_unless_the_app_sets_them() -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT], [b"x"], "list")
    _, got, _ = split(exchange.wire)
    assert header(got, b"date") == [DATE]
    assert header(got, b"server") == [b"wsgiserve"]

    exchange = Recorder()
    own = [TEXT, ("server", "mine"), ("DATE", "Sat, 01 Jan 2000 00:00:00 GMT")]
    respond(exchange, "200 OK", own, [b"x"], "list")
    _, got, _ = split(exchange.wire)
    assert header(got, b"server") == [b"mine"]
    assert header(got, b"date") == [b"Sat, 01 Jan 2000 00:00:00 GMT"]


def test_hop_by_hop_headers_from_the_app_are_not_sent() -> None:
    exchange = Recorder()
    hop = [
        ("Transfer-Encoding", "gzip"),
        ("Keep-Alive", "timeout=99"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
        ("Trailer", "X-Sum"),
        ("Proxy-Connection", "keep-alive"),
        ("Connection", "keep-alive"),
    ]
    respond(exchange, "200 OK", [TEXT, *hop], [b"body"], "list")
    _, got, body = split(exchange.wire)
    names = {name for name, _ in got}
    assert not names & {name.lower().encode() for name, _ in hop}
    assert header(got, b"content-length") == [b"4"]
    assert body == b"body"
    assert exchange.kept_alive


def test_connection_close_from_the_app_closes() -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT, ("Connection", "Close")], [b"x"], "list")
    _, got, _ = split(exchange.wire)
    assert header(got, b"connection") == [b"close"]
    assert not exchange.kept_alive


# -- framing -----------------------------------------------------------------------------


def test_list_body_gets_its_length() -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT], [b"abc", b"de"], "list")
    first, got, body = split(exchange.wire)
    assert first == b"HTTP/1.1 200 OK"
    assert header(got, b"content-length") == [b"5"]
    assert header(got, b"transfer-encoding") == []
    assert body == b"abcde"
    assert exchange.kept_alive


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_apps_content_length_is_kept(shape: str) -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT, ("Content-Length", "5")], [b"abc", b"de"], shape)
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == [b"5"]
    assert header(got, b"transfer-encoding") == []
    assert body == b"abcde"
    assert exchange.kept_alive


def test_streamed_body_is_chunked_on_http11() -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT], [b"abc", b"", b"0123456789abcdefX"], "stream")
    _, got, body = split(exchange.wire)
    assert header(got, b"transfer-encoding") == [b"chunked"]
    assert header(got, b"content-length") == []
    assert body == b"3\r\nabc\r\n11\r\n0123456789abcdefX\r\n0\r\n\r\n"
    assert exchange.kept_alive


def test_streamed_body_is_close_delimited_on_http10() -> None:
    exchange = Recorder(version="1.0")
    respond(exchange, "200 OK", [TEXT], [b"abc", b"def"], "stream")
    _, got, body = split(exchange.wire)
    assert header(got, b"transfer-encoding") == []
    assert header(got, b"content-length") == []
    assert header(got, b"connection") == [b"close"]
    assert body == b"abcdef"
    assert not exchange.kept_alive


def test_http10_keep_alive_is_announced() -> None:
    exchange = Recorder(version="1.0")
    respond(exchange, "200 OK", [TEXT], [b"abc"], "list")
    _, got, _ = split(exchange.wire)
    assert header(got, b"connection") == [b"keep-alive"]
    assert exchange.kept_alive


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_no_keep_alive_means_close(version: str) -> None:
    exchange = Recorder(version=version, keep_alive=False)
    respond(exchange, "200 OK", [TEXT], [b"abc"], "list")
    _, got, _ = split(exchange.wire)
    assert header(got, b"connection") == [b"close"]
    assert not exchange.kept_alive


def test_empty_streamed_body() -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT], [], "stream")
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == [b"0"]
    assert body == b""
    assert exchange.kept_alive


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_no_body_and_no_length_for_204(shape: str) -> None:
    exchange = Recorder()
    respond(exchange, "204 No Content", [TEXT, ("Content-Length", "4")], [b"body"], shape)
    first, got, body = split(exchange.wire)
    assert first == b"HTTP/1.1 204 No Content"
    assert header(got, b"content-length") == []
    assert header(got, b"transfer-encoding") == []
    assert body == b""


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_no_body_and_no_framing_for_304(shape: str) -> None:
    exchange = Recorder()
    respond(exchange, "304 Not Modified", [("ETag", '"x"')], [b"body"], shape)
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == []
    assert header(got, b"transfer-encoding") == []
    assert body == b""
    assert exchange.kept_alive


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_head_keeps_the_apps_length_and_sends_no_body(shape: str) -> None:
    exchange = Recorder(head_request=True)
    respond(exchange, "200 OK", [TEXT, ("Content-Length", "4")], [b"body"], shape)
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == [b"4"]
    assert header(got, b"transfer-encoding") == []
    assert body == b""
    assert exchange.kept_alive


@pytest.mark.parametrize(
    ("parts", "shape"),
    [
        ([], "stream"),
        ([b""], "stream"),
        ([b"", b"body"], "stream"),
        ([b"body"], "stream"),
        ([], "list"),
        ([b""], "list"),
    ],
)
def test_head_never_invents_a_length(parts: list[bytes], shape: str) -> None:
    """RFC 9110 §8.6, §9.3.2: a HEAD response without the app's Content-Length states one
    only when the app produced the whole, non-empty body GET would send (a list)."""
    exchange = Recorder(head_request=True)
    respond(exchange, "200 OK", [TEXT], parts, shape)
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == []
    assert header(got, b"transfer-encoding") == []
    assert body == b""
    assert exchange.kept_alive


def test_head_reports_a_list_bodys_length() -> None:
    exchange = Recorder(head_request=True)
    respond(exchange, "200 OK", [TEXT], [b"ab", b"cd"], "list")
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == [b"4"]
    assert body == b""


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_head_on_http10_closing_says_close(shape: str) -> None:
    exchange = Recorder(version="1.0", head_request=True, keep_alive=False)
    respond(exchange, "200 OK", [TEXT], [b"body"], shape)
    _, got, _ = split(exchange.wire)
    assert header(got, b"connection") == [b"close"]
    assert not exchange.kept_alive


# -- Content-Length mismatches ----------------------------------------------------------------


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_body_beyond_the_content_length_is_dropped_and_the_connection_closed(
    shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = Recorder()
    respond(exchange, "200 OK", [TEXT, ("Content-Length", "4")], [b"abc", b"dXYZ"], shape)
    _, _, body = split(exchange.wire)
    assert body == b"abcd"
    assert not exchange.kept_alive
    assert [r.message for r in caplog.records if r.levelno == logging.ERROR] == [
        "GET /: the app sent more than its Content-Length; extra bytes dropped"
    ]


@pytest.mark.parametrize("shape", ["list", "stream"])
def test_body_short_of_the_content_length_cannot_complete(shape: str) -> None:
    exchange = Recorder()
    with pytest.raises(Exception, match="less than its Content-Length"):
        respond(exchange, "200 OK", [TEXT, ("Content-Length", "10")], [b"abc"], shape)
    assert exchange.ended == []
    _, got, body = split(exchange.wire)
    assert header(got, b"content-length") == [b"10"]
    assert body == b"abc"


# -- start_response and write rules ----------------------------------------------------------


def test_second_start_response_without_exc_info_is_an_error() -> None:
    response = new_response(Recorder())
    response.start_response("200 OK", [TEXT])
    with pytest.raises(AssertionError):
        response.start_response("200 OK", [TEXT])


def test_exc_info_before_the_head_replaces_status_and_headers() -> None:
    exchange = Recorder()
    response = new_response(exchange)
    response.start_response("200 OK", [TEXT, ("X-Old", "1")])
    response.start_response("500 Oops", [TEXT, ("X-New", "1")], caught(ValueError("trouble")))
    response.finish_with(b"error")
    response.complete()
    first, got, body = split(exchange.wire)
    assert first == b"HTTP/1.1 500 Oops"
    assert header(got, b"x-old") == []
    assert header(got, b"x-new") == [b"1"]
    assert body == b"error"


def test_exc_info_after_the_head_reraises_the_apps_error() -> None:
    exchange = Recorder()
    response = new_response(exchange)
    write = response.start_response("200 OK", [TEXT])
    write(b"started")
    sent = exchange.wire
    exc_info = caught(ValueError("app trouble"))
    with pytest.raises(ValueError, match="app trouble"):
        response.start_response("500 Oops", [TEXT], exc_info)
    assert exchange.wire == sent  # nothing more went out


def test_write_before_start_response_is_an_error() -> None:
    response = new_response(Recorder())
    with pytest.raises(AssertionError):
        response.write(b"early")


@pytest.mark.parametrize("data", ["text", 42, None, [b"a"]], ids=repr)
@pytest.mark.parametrize("shape", ["list", "stream"])
def test_body_blocks_that_are_not_bytes_are_refused_by_name(data: Any, shape: str) -> None:
    exchange = Recorder()
    response = new_response(exchange)
    response.start_response("200 OK", [TEXT])
    send = response.finish_with if shape == "list" else response.write
    # The same message from both builds (compiled code would otherwise say its own).
    with pytest.raises(TypeError, match=f"^the app produced {type(data).__name__}, not bytes$"):
        send(data)
    assert exchange.wire == b""


def test_write_takes_bytes_like_objects_and_skips_empty_ones() -> None:
    exchange = Recorder()
    response = new_response(exchange)
    write: Any = response.start_response("200 OK", [TEXT, ("Content-Length", "6")])
    write(b"")
    assert exchange.wire == b""  # nothing to send yet, not even the head
    write(bytearray(b"abc"))
    write(memoryview(b"def"))
    response.finish()
    response.complete()
    _, _, body = split(exchange.wire)
    assert body == b"abcdef"
    assert response.sent == 6


def test_the_head_goes_out_once_with_the_first_block() -> None:
    exchange = Recorder()
    response = new_response(exchange)
    write = response.start_response("200 OK", [TEXT, ("Content-Length", "4")])
    assert exchange.sent == []
    write(b"ab")
    assert len(exchange.sent) == 1
    assert exchange.sent[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert exchange.sent[0].endswith(b"\r\n\r\nab")
    write(b"cd")
    assert exchange.sent[1] == b"cd"


# -- wsgi.file_wrapper -------------------------------------------------------------------------


def test_file_wrapper_reads_in_blocks_and_closes_the_file() -> None:
    handle = io.BytesIO(b"0123456789")
    wrapper = FileWrapper(handle, 4)
    assert list(wrapper) == [b"0123", b"4567", b"89"]
    wrapper.close()
    assert handle.closed


def test_file_wrapper_without_close() -> None:
    class Source:
        def __init__(self) -> None:
            self.data = io.BytesIO(b"abc")

        def read(self, size: int) -> bytes:
            return self.data.read(size)

    # PEP 3333 asks only for read(); FileWrapper is annotated IO[bytes], which Source is not.
    wrapper = FileWrapper(Source())  # type: ignore[arg-type]
    assert list(wrapper) == [b"abc"]
    assert not hasattr(wrapper, "close")
