"""Wire details found by peers' test suites (issue 10, item 6), as bytes on a real socket.

`Connection` on HTTP/1.0 replies, HEAD without an invented length, 1xx and out-of-range
statuses from the app, `SERVER_PORT` on a unix socket, chunk extensions with BWS, the
request-line and header grammar forms that `test_smuggling.py` does not already cover, and
which request methods reach the app.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wsgiserve
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
    [
        "100 Continue",
        "101 Switching Protocols",
        "103 Early Hints",
        "199 Odd",
        "600 Beyond",
        "999 Nope",
    ],
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


# -- 4. SERVER_PORT is never empty (PEP 3333), unix sockets included ---------------------------


def _unix_exchange(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("request_bytes", "port"),
    [
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", "80", id="no-host"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
            "80",
            id="host-with-port",
        ),
    ],
)
def test_server_port_on_a_unix_socket(
    serve: Serve, tmp_path: Path, request_bytes: bytes, port: str
) -> None:
    """A unix socket has no port: SERVER_PORT is the scheme's default, never "" and never
    the client's Host (HTTP_HOST carries that, and wins for URL reconstruction)."""
    app = Recorder()
    path = str(tmp_path / "s.sock")
    serve(app, bind=("unix:" + path,))
    raw = _unix_exchange(path, request_bytes)
    assert one_response(raw).statuses() == [200], f"{raw!r}"
    (environ,) = app.environs
    assert environ["SERVER_PORT"] == port
    assert environ["SERVER_NAME"] == "localhost"


# -- 5. Chunk extensions with BWS around ";" and "=" (RFC 9112 §7.1.1) -------------------------


class BodyReader:
    """An app that reads `wsgi.input` in small reads and answers with what it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = b""
        while block := environ["wsgi.input"].read(1000):
            body += block
        self.bodies.append(body)
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]


def test_an_upload_with_bws_in_its_chunk_extensions_reaches_the_app_exactly(serve: Serve) -> None:
    """A client (gunicorn's test corpus has one) that puts spaces around every ";" and "=":
    a 300 KiB upload in many chunks, each size line sent apart from its data and some cut in
    two, reaches the app byte for byte; the request behind it on the connection is served."""
    app = BodyReader()
    server = serve(app)
    payload = bytes(range(256)) * 1200
    pieces = [b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for n, at in enumerate(range(0, len(payload), 3000)):
        data = payload[at : at + 3000]
        line = b'%X ; n = %d ; note = "a ; b"\r\n' % (len(data), n)
        pieces += [line[:5], line[5:]] if n % 2 else [line]
        pieces.append(data + b"\r\n")
    pieces.append(b"0 ; end = yes\r\nX-Sum: 1\r\n\r\n" + get("/next", method="POST"))
    result = exchange(
        server.address, pieces, until=lambda raw: len(parse_responses(raw, eof=False)) == 2
    )
    responses = parse_responses(result.data, ("POST", "POST"), eof=False)
    assert responses.statuses() == [200, 200], f"{result.data[:300]!r}"
    assert app.bodies == [payload, b""]
    assert responses[0].body == payload


# -- 6. Request-line and header grammar (RFC 9112 §2-§5) ---------------------------------------


# Forms test_smuggling.py does not cover (it has bare CR/LF, obs-fold, names, CTLs in values,
# Host repeats, CL/TE framing, HTTP/0.9 and 2.0, asterisk-form and CONNECT).
LENIENT_FORMS = [
    # RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single SPs.
    pytest.param(b" GET / HTTP/1.1\r\nHost: t\r\n\r\n", id="sp-before-method"),
    pytest.param(b"\tGET / HTTP/1.1\r\nHost: t\r\n\r\n", id="tab-before-method"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", id="two-sp-after-method"),
    pytest.param(b"GET /  HTTP/1.1\r\nHost: t\r\n\r\n", id="two-sp-before-version"),
    pytest.param(b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", id="tab-after-method"),
    pytest.param(b"GET /\tHTTP/1.1\r\nHost: t\r\n\r\n", id="tab-before-version"),
    pytest.param(b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n", id="sp-after-version"),
    pytest.param(b"GET / \r\nHost: t\r\n\r\n", id="no-version"),
    pytest.param(b"GET  HTTP/1.1\r\nHost: t\r\n\r\n", id="no-target"),
    # RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT
    pytest.param(b"GET / HTTP/1.10\r\nHost: t\r\n\r\n", id="version-three-digits"),
    pytest.param(b"GET / HTTP/01.1\r\nHost: t\r\n\r\n", id="version-leading-zero"),
    pytest.param(b"GET / HTTP/1\r\nHost: t\r\n\r\n", id="version-no-minor"),
    pytest.param(b"GET / HTTP/1.1x\r\nHost: t\r\n\r\n", id="version-suffix"),
    # RFC 9110 §9.1 with §5.6.2: the method is a token.
    pytest.param(b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", id="method-not-a-token"),
    # RFC 9112 §3.2: the four forms of request-target; control characters are never in it.
    pytest.param(b"GET a/b HTTP/1.1\r\nHost: t\r\n\r\n", id="target-relative"),
    pytest.param(b"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n", id="authority-form-not-connect"),
    pytest.param(b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n", id="target-soh"),
    pytest.param(b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", id="target-nul"),
    pytest.param(b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n", id="target-del"),
    pytest.param(b"GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n", id="target-tab"),
    pytest.param(b"GET /a\x0cb HTTP/1.1\r\nHost: t\r\n\r\n", id="target-ff"),
    pytest.param(b"GET /a\xffb HTTP/1.1\r\nHost: t\r\n\r\n", id="target-high-byte"),
    # RFC 9112 §3.2.2: absolute-form names an http(s) URI with a host.
    pytest.param(b"GET ftp://t/a HTTP/1.1\r\nHost: t\r\n\r\n", id="absolute-form-ftp"),
    pytest.param(b"GET ws://t/a HTTP/1.1\r\nHost: t\r\n\r\n", id="absolute-form-ws"),
    pytest.param(b"GET http:///a HTTP/1.1\r\nHost: t\r\n\r\n", id="absolute-form-no-host"),
    pytest.param(b"GET http://t:x/a HTTP/1.1\r\nHost: t\r\n\r\n", id="absolute-form-bad-port"),
    pytest.param(b"GET http://t/a HTTP/1.1\r\n\r\n", id="absolute-form-without-host-field"),
    # RFC 9112 §2.2: a whitespace-led line before the first field.
    pytest.param(b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", id="sp-before-first-field"),
    pytest.param(b"GET / HTTP/1.1\r\n\tX-A: b\r\nHost: t\r\n\r\n", id="tab-before-first-field"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n \r\n\r\n", id="whitespace-only-line"),
    # RFC 9110 §5.1: field-name = token.
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX(A): b\r\n\r\n", id="name-paren"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX/A: b\r\n\r\n", id="name-slash"),
    pytest.param(b'GET / HTTP/1.1\r\nHost: t\r\nX"A: b\r\n\r\n', id="name-quote"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX\xe9A: b\r\n\r\n", id="name-high-byte"),
    # RFC 9110 §5.5: no CTL but HTAB in a field value.
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x0bb\r\n\r\n", id="value-vt"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x0cb\r\n\r\n", id="value-ff"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x1bb\r\n\r\n", id="value-esc"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\x00\r\n\r\n", id="host-nul"),
    # RFC 9112 §3.2, RFC 9110 §7.2: Host = uri-host [ ":" port ].
    pytest.param(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", id="host-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", id="host-slash"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", id="host-userinfo"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", id="host-port-not-digits"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", id="host-two-ports"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", id="host-unclosed-bracket"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", id="host-backslash"),
    pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", id="host-repeated-http10"),
]


@pytest.fixture(scope="module")
def grammar_server() -> Iterator[tuple[tuple[str, int], Recorder]]:
    app = Recorder()
    with wsgiserve.background_server(app, threads=2) as server:
        yield server.address, app


@pytest.mark.parametrize("wire", LENIENT_FORMS)
def test_lenient_form_is_refused(
    grammar_server: tuple[tuple[str, int], Recorder], wire: bytes
) -> None:
    address, app = grammar_server
    before = len(app.environs)
    result = exchange(address, wire + get("/canary"), idle_timeout=IDLE_TIMEOUT)
    responses = parse_responses(result.data, eof=result.closed)
    assert len(app.environs) == before, f"the app was called: {result.data!r}"
    assert responses.statuses() == [400], f"{result.data!r}"
    assert result.closed, f"the connection stayed open: {result.data!r}"


# -- 7. Which methods reach the app (README "HTTP behaviour") ------------------------------------


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("GET", 200),
        ("PATCH", 200),
        ("PROPFIND", 200),
        ("PURGE", 200),
        ("QUERY", 200),
        ("M-SEARCH", 200),
        ("SOURCE", 200),
        ("BREW", 501),
        ("get", 501),
        ("VERSION-CONTROL", 501),  # well-formed, unknown to llhttp
        ("PLAY", 400),
        ("DESCRIBE", 400),  # RTSP method names: refused like RTSP lines
    ],
)
def test_request_methods(
    grammar_server: tuple[tuple[str, int], Recorder], method: str, status: int
) -> None:
    address, app = grammar_server
    before = len(app.environs)
    result = exchange(
        address, get("/m", extra=b"Connection: close\r\n", method=method), idle_timeout=IDLE_TIMEOUT
    )
    responses = parse_responses(result.data, eof=result.closed)
    assert responses.statuses() == [status], f"{result.data!r}"
    called = [environ["REQUEST_METHOD"] for environ in app.environs[before:]]
    assert called == ([method] if status == 200 else []), f"{result.data!r}"
