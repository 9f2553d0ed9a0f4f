"""HTTP/1.1 connection behaviour, observed as bytes on the wire and as what the app saw.

Keep-alive, pipelining, HEAD, chunked request bodies, `Expect: 100-continue`, response
framing, `Date`/`Server`, `Connection: close` from either side, unread request bodies and
the keep-alive idle timeout (RFC 9110, RFC 9112).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import h11
import pytest

from tests.support.rawhttp import Response, exchange, parse_responses

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Serve = Callable[..., Any]

TEXT = ("Content-Type", "text/plain")


class Conn:
    """One client connection: send bytes, read whole responses one at a time, detect EOF."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port: int = self.sock.getsockname()[1]
        self.buffer = b""
        self.raw = b""  # every byte received, for checks on the wire format
        self.informational: list[int] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.raw += data
        return data

    def response(self, method: str = "GET", timeout: float = 5.0) -> Response:
        """Read the next complete final response (1xx responses are noted and skipped)."""
        parser = h11.Connection(our_role=h11.CLIENT)
        parser.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        if self.buffer:  # h11 takes b"" for the end of the stream
            parser.receive_data(self.buffer)
        self.buffer = b""
        deadline = time.monotonic() + timeout
        status, version, body = 0, b"", bytearray()
        headers: list[tuple[bytes, bytes]] = []
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no complete response; got {self.raw!r}")
                parser.receive_data(self._recv(remaining))
            elif isinstance(event, h11.InformationalResponse):
                self.informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status, version = event.status_code, event.http_version
                headers = [(name.lower(), value) for name, value in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.buffer = bytes(parser.trailing_data[0])
                return Response(status, headers, bytes(body), version)
            else:
                raise AssertionError(f"unexpected {event!r}; got {self.raw!r}")

    def quiet(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (expected: nothing)."""
        try:
            data = self._recv(seconds)
        except TimeoutError:
            return b""
        self.buffer += data
        return data

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server ends the connection (EOF or reset) within `timeout`."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if not self._recv(remaining):
                    return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connect() -> Iterator[Callable[[tuple[str, int]], Conn]]:
    opened: list[Conn] = []

    def open_conn(address: tuple[str, int]) -> Conn:
        conn = Conn(address)
        opened.append(conn)
        return conn

    yield open_conn
    for conn in opened:
        conn.close()


def get(path: str = "/", version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode("latin-1")


def responses_complete(count: int, methods: tuple[str, ...] = ()) -> Callable[[bytes], bool]:
    return lambda data: len(parse_responses(data, methods, eof=False)) >= count


class Seen:
    """What an app saw, recorded from worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.ports: list[str] = []
        self.environs: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    def record(self, environ: dict[str, Any], body: bytes = b"") -> None:
        with self.lock:
            self.paths.append(environ["PATH_INFO"])
            self.ports.append(environ["REMOTE_PORT"])
            self.environs.append(dict(environ))
            self.bodies.append(body)


def path_app(seen: Seen) -> App:
    """Answers with its PATH_INFO as the body; never reads the request body."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.record(environ)
        body = environ["PATH_INFO"].encode("latin-1")
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]

    return app


def read_all(stream: Any) -> bytes:
    """Read a wsgi.input to its end the validator's way (`read(size)` only)."""
    data = bytearray()
    while piece := stream.read(4096):
        data += piece
    return bytes(data)


def body_app(seen: Seen) -> App:
    """Reads the whole body and answers with it."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = read_all(environ["wsgi.input"])
        seen.record(environ, body)
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]

    return app


# -- keep-alive ------------------------------------------------------------------------


def test_http11_connections_persist_by_default(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    conn = connect(server.address)
    conn.send(get("/one"))
    first = conn.response()
    conn.send(get("/two"))
    second = conn.response()
    assert (first.status, first.body, second.status, second.body) == (200, b"/one", 200, b"/two")
    assert first.header("connection") is None
    assert seen.ports == [str(conn.port)] * 2


def test_http10_closes_unless_asked_to_keep_alive(serve: Serve, wrap: Callable[[App], App]) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    result = exchange(server.address, get("/", "1.0") + get("/again", "1.0"), idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert responses.statuses() == [200]
    assert responses[0].header("connection") in (None, b"close")
    assert seen.paths == ["/"]


def test_http10_keep_alive_on_request(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    conn = connect(server.address)
    for path in ("/a", "/b"):
        conn.send(get(path, "1.0", "Connection: keep-alive\r\n"))
        response = conn.response()
        assert (response.status, response.body, response.http_version) == (
            200,
            path.encode(),
            b"1.1",
        )
        assert response.header("connection") == b"keep-alive"
    assert seen.ports == [str(conn.port)] * 2
    assert conn.quiet(0.2) == b""  # still open, nothing unexpected


def test_idle_keep_alive_connection_is_closed(serve: Serve, connect: Callable[..., Conn]) -> None:
    server = serve(path_app(Seen()), keep_alive=1)
    conn = connect(server.address)
    conn.send(get())
    assert conn.response().status == 200
    assert conn.closed_by_server(timeout=8)
    assert conn.buffer == b""


def test_an_idle_keep_alive_connection_is_kept_for_the_whole_keep_alive(
    serve: Serve, connect: Callable[..., Conn]
) -> None:
    # A proxy in front may reuse an idle upstream connection until just below our
    # --keep-alive; closing one earlier (even a fraction of a second) races its next request.
    server = serve(path_app(Seen()), keep_alive=1)
    for _ in range(2):  # at different phases of the server's once-a-second clock
        conn = connect(server.address)
        conn.send(get())
        assert conn.response().status == 200
        answered = time.monotonic()
        assert conn.closed_by_server(timeout=8)
        assert time.monotonic() - answered >= 0.95  # timer-resolution slack on the client side
        time.sleep(0.3)


# -- pipelining -------------------------------------------------------------------------


def test_pipelined_requests_run_one_at_a_time_and_answer_in_order(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    lock = threading.Lock()
    active: dict[str, int] = {}
    most: dict[str, int] = {}
    order: list[str] = []
    count = 6

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        port = environ["REMOTE_PORT"]
        with lock:
            active[port] = active.get(port, 0) + 1
            most[port] = max(most.get(port, 0), active[port])
            order.append(environ["PATH_INFO"])
        try:
            body = read_all(environ["wsgi.input"])
            index = int(environ["PATH_INFO"][1:])
            time.sleep(0.01 * (count - index))  # earlier requests take longer
            payload = environ["PATH_INFO"].encode() + b":" + body
            start_response("200 OK", [TEXT, ("Content-Length", str(len(payload)))])
            return [payload]
        finally:
            with lock:
                active[port] -= 1

    server = serve(wrap(app), threads=4)
    requests = [
        get("/0"),
        b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        get("/4"),
        get("/5"),
    ]
    methods = ("GET", "POST", "HEAD", "POST", "GET", "GET")
    result = exchange(server.address, b"".join(requests), until=responses_complete(count, methods))
    responses = parse_responses(result.data, methods, eof=False)
    assert [r.body for r in responses] == [b"/0:", b"/1:hello", b"", b"/3:abc", b"/4:", b"/5:"]
    assert responses.statuses() == [200] * count
    assert not result.closed
    assert order == [f"/{i}" for i in range(count)]
    assert list(most.values()) == [1]


# -- HEAD ---------------------------------------------------------------------------------


def _head_then_get(server: Any) -> tuple[Response, Response, bytes]:
    data = b"HEAD /page HTTP/1.1\r\nHost: t\r\n\r\n" + get("/page")
    result = exchange(server.address, data, until=responses_complete(2, ("HEAD", "GET")))
    head, full = parse_responses(result.data, ("HEAD", "GET"), eof=False)
    return head, full, result.data


def _without_date(response: Response) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in response.headers if name != b"date"]


def test_head_has_the_get_headers_and_no_body(serve: Serve, wrap: Callable[[App], App]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [TEXT, ("Content-Length", "11"), ("X-Extra", "1")])
        yield b"hello "
        yield b"world"

    server = serve(wrap(app))
    head, full, raw = _head_then_get(server)
    assert (head.status, head.body, full.body) == (200, b"", b"hello world")
    assert _without_date(head) == _without_date(full)
    assert head.header("content-length") == b"11"
    assert raw.count(b"hello") == 1


def test_head_reports_the_length_a_list_body_would_have(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [TEXT])
        return [b"hello ", b"world"]

    server = serve(app)
    head, full, raw = _head_then_get(server)
    assert (head.status, head.body, full.body) == (200, b"", b"hello world")
    assert full.header("content-length") == b"11"
    # RFC 9110 §9.3.2: HEAD carries the header fields GET would, Content-Length included.
    assert _without_date(head) == _without_date(full)
    assert raw.count(b"hello") == 1


# -- chunked request bodies ------------------------------------------------------------------


def test_chunked_request_body_reaches_the_app_without_its_trailers(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    seen = Seen()
    server = serve(wrap(body_app(seen)))
    data = (
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: secret\r\n\r\n" + get("/next")
    )
    result = exchange(server.address, data, until=responses_complete(2, ("POST",)))
    responses = parse_responses(result.data, ("POST",), eof=False)
    assert [r.body for r in responses] == [b"hello world", b""]
    assert seen.bodies == [b"hello world", b""]
    for environ in seen.environs:
        assert "HTTP_X_TRAILER" not in environ
        assert all("secret" not in str(value) for value in environ.values())
    assert "CONTENT_LENGTH" not in seen.environs[0]


# -- Expect: 100-continue ---------------------------------------------------------------------


def test_100_continue_is_sent_when_the_app_first_reads(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    entered = threading.Event()
    proceed = threading.Event()
    seen = Seen()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        entered.set()
        proceed.wait(10)
        return body_app(seen)(environ, start_response)

    server = serve(wrap(app))
    conn = connect(server.address)
    conn.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
    assert entered.wait(5)
    assert conn.quiet(0.3) == b""  # the app has not read yet: no 100
    proceed.set()
    deadline = time.monotonic() + 5
    while not conn.raw.endswith(b"\r\n\r\n") and time.monotonic() < deadline:
        conn.quiet(0.1)
    assert conn.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(b"payload")
    response = conn.response()
    assert (response.status, response.body) == (200, b"payload")
    assert conn.informational == [100]
    # The body came in full, so the connection carries on.
    conn.send(get("/after"))
    assert conn.response().status == 200


def test_no_100_continue_when_the_app_never_reads(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    conn = connect(server.address)
    conn.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
    response = conn.response()
    assert (response.status, response.body) == (200, b"/x")
    assert conn.informational == []
    assert b"100 Continue" not in conn.raw
    # The client may or may not send the body now: the server cannot frame what follows.
    assert response.header("connection") == b"close"
    assert conn.closed_by_server()
    assert seen.paths == ["/x"]


def test_no_100_continue_on_http10(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    entered = threading.Event()
    seen = Seen()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        entered.set()
        return body_app(seen)(environ, start_response)

    server = serve(wrap(app))
    conn = connect(server.address)
    conn.send(b"PUT /x HTTP/1.0\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
    # HTTP/1.0 has no 100 Continue (RFC 9110 §10.1.1), so the expectation is ignored: the
    # short body is read whole before the app runs, and nothing is sent meanwhile.
    assert conn.quiet(0.3) == b""
    assert not entered.is_set()
    conn.send(b"payload")
    response = conn.response()
    assert (response.status, response.body) == (200, b"payload")
    assert b"100 Continue" not in conn.raw
    assert conn.informational == []


def test_no_100_continue_once_the_response_has_begun(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [TEXT, ("Content-Length", "17")])
        write(b"early,")
        return [environ["wsgi.input"].read(11)]

    server = serve(wrap(app))
    conn = connect(server.address)
    conn.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    deadline = time.monotonic() + 5
    while not conn.raw.endswith(b"early,") and time.monotonic() < deadline:
        conn.quiet(0.1)
    assert conn.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    conn.send(b"late body!!")
    response = conn.response()
    assert (response.status, response.body) == (200, b"early,late body!!")
    # RFC 9110 §10.1.1: no 100 once the final response has started.
    assert b"100 Continue" not in conn.raw
    assert conn.informational == []


def test_unknown_expectation_is_refused_with_417(serve: Serve) -> None:
    seen = Seen()
    server = serve(path_app(seen))
    data = b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: x-magic\r\n\r\nabc"
    result = exchange(server.address, data, idle_timeout=3)
    assert parse_responses(result.data).statuses() == [417]
    assert seen.paths == []


# -- response framing --------------------------------------------------------------------------


def test_apps_content_length_is_kept(serve: Serve, wrap: Callable[[App], App]) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [TEXT, ("Content-Length", "6")])
        yield b"abc"
        yield b"def"

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert [r.body for r in responses] == [b"abcdef", b"abcdef"]
    for response in responses:
        assert response.header("content-length") == b"6"
        assert response.header("transfer-encoding") is None


def test_list_body_gets_a_computed_content_length(serve: Serve) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [TEXT])
        return [b"abc", b"", b"defg"]

    server = serve(app)
    result = exchange(server.address, get(), until=responses_complete(1))
    (response,) = parse_responses(result.data, eof=False)
    assert response.body == b"abcdefg"
    assert response.header("content-length") == b"7"
    assert response.header("transfer-encoding") is None


def _generator_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [TEXT])
    yield b"first,"
    yield b""
    yield b"second"


def test_generator_body_is_chunked_on_http11(serve: Serve, wrap: Callable[[App], App]) -> None:
    server = serve(wrap(_generator_app))
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert [r.body for r in responses] == [b"first,second"] * 2
    assert responses[0].header("transfer-encoding") == b"chunked"
    assert responses[0].header("content-length") is None
    assert b"\r\n\r\n6\r\nfirst,\r\n6\r\nsecond\r\n0\r\n\r\n" in result.data
    assert not result.closed


def test_generator_body_is_close_delimited_on_http10(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    server = serve(wrap(_generator_app))
    data = get("/", "1.0", "Connection: keep-alive\r\n")
    result = exchange(server.address, data, idle_timeout=3)
    assert result.closed
    (response,) = parse_responses(result.data)
    assert response.body == b"first,second"
    assert response.header("transfer-encoding") is None
    assert response.header("content-length") is None
    assert response.header("connection") != b"keep-alive"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
@pytest.mark.parametrize("shape", ["list", "generator"])
def test_no_body_and_no_framing_for_204_and_304(
    serve: Serve, wrap: Callable[[App], App], status: str, shape: str
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("X-Tag", "t")])
        if shape == "list":
            return [b"must-not-be-sent"]
        return iter([b"must-not-", b"be-sent"])

    server = serve(wrap(app))
    result = exchange(server.address, get() + get(), until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert responses.statuses() == [int(status[:3])] * 2
    assert b"must-not" not in result.data
    assert b"be-sent" not in result.data
    for response in responses:
        assert response.body == b""
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") is None
    assert not responses.error


def test_head_to_a_streamed_response_has_no_body(serve: Serve, wrap: Callable[[App], App]) -> None:
    server = serve(wrap(_generator_app))
    data = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get()
    result = exchange(server.address, data, until=responses_complete(2, ("HEAD",)))
    head, full = parse_responses(result.data, ("HEAD",), eof=False)
    assert (head.status, head.body, full.body) == (200, b"", b"first,second")
    assert result.data.count(b"first,") == 1


# -- Date and Server -----------------------------------------------------------------------------


def test_date_and_server_are_added(serve: Serve, wrap: Callable[[App], App]) -> None:
    server = serve(wrap(path_app(Seen())))
    result = exchange(server.address, get(), until=responses_complete(1))
    (response,) = parse_responses(result.data, eof=False)
    date = response.header("date")
    assert date is not None
    assert parsedate_to_datetime(date.decode()).tzinfo is not None
    assert (response.header("server") or b"").startswith(b"wsgiserve")


def test_apps_own_server_and_date_win(serve: Serve, wrap: Callable[[App], App]) -> None:
    date = "Mon, 01 Jan 2001 00:00:00 GMT"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [TEXT, ("Server", "custom/1.0"), ("Date", date)])
        return [b"x"]

    server = serve(wrap(app))
    result = exchange(server.address, get(), until=responses_complete(1))
    (response,) = parse_responses(result.data, eof=False)
    assert [v for n, v in response.headers if n == b"server"] == [b"custom/1.0"]
    assert [v for n, v in response.headers if n == b"date"] == [date.encode()]


# -- Connection: close ----------------------------------------------------------------------------


def test_client_connection_close_ends_the_connection(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    data = get("/1", extra="Connection: close\r\n") + get("/2")
    result = exchange(server.address, data, idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert responses.statuses() == [200]
    assert responses[0].header("connection") == b"close"
    assert responses.trailing == b""
    assert seen.paths == ["/1"]


def test_app_connection_close_ends_the_connection(serve: Serve, wrap: Callable[[App], App]) -> None:
    seen = Seen()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.record(environ)
        start_response("200 OK", [TEXT, ("Content-Length", "2"), ("Connection", "close")])
        return [b"ok"]

    server = serve(wrap(app))
    result = exchange(server.address, get("/1") + get("/2"), idle_timeout=3)
    assert result.closed
    responses = parse_responses(result.data)
    assert [r.body for r in responses] == [b"ok"]
    assert [v for n, v in responses[0].headers if n == b"connection"] == [b"close"]
    assert seen.paths == ["/1"]


# -- unread request bodies -----------------------------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def _post(path: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode()


def _body(size: int) -> bytes:
    return (SMUGGLED * (size // len(SMUGGLED) + 1))[:size]


def test_small_unread_body_is_drained_and_the_connection_reused(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    body = _body(32 * 1024)
    data = _post("/upload", len(body)) + body + get("/next")
    result = exchange(server.address, data, until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert [r.body for r in responses] == [b"/upload", b"/next"]
    assert not result.closed
    assert seen.paths == ["/upload", "/next"]


def test_small_unread_chunked_body_is_drained_and_the_connection_reused(
    serve: Serve, wrap: Callable[[App], App]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    chunk = _body(8000)
    data = (
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%b\r\n0\r\n\r\n" % (len(chunk), chunk)
        + get("/next")
    )
    result = exchange(server.address, data, until=responses_complete(2))
    responses = parse_responses(result.data, eof=False)
    assert [r.body for r in responses] == [b"/upload", b"/next"]
    assert seen.paths == ["/upload", "/next"]


def test_small_unread_body_sent_after_the_response_is_drained(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    seen = Seen()
    # Without the pre-read, the app answers before the body is sent at all.
    server = serve(wrap(path_app(seen)), body_preread=0)
    body = _body(4000)
    conn = connect(server.address)
    conn.send(_post("/upload", len(body)))
    first = conn.response()
    assert (first.status, first.body) == (200, b"/upload")
    assert first.header("connection") is None
    conn.send(body + get("/next"))
    assert conn.response().body == b"/next"
    assert seen.paths == ["/upload", "/next"]


def test_large_unread_body_closes_the_connection_unparsed(
    serve: Serve, wrap: Callable[[App], App], connect: Callable[..., Conn]
) -> None:
    seen = Seen()
    server = serve(wrap(path_app(seen)))
    declared = 1024 * 1024
    conn = connect(server.address)
    conn.send(_post("/upload", declared) + _body(100 * 1024))
    response = conn.response()
    assert (response.status, response.body) == (200, b"/upload")
    assert response.header("connection") == b"close"
    # The rest of the body, full of request-looking text, must never be parsed (the
    # server may already have closed, making this send fail).
    with contextlib.suppress(OSError):
        conn.send(_body(declared - 100 * 1024))
    assert conn.closed_by_server()
    assert seen.paths == ["/upload"]
