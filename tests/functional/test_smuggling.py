"""Request smuggling: every ambiguous framing is refused, and nothing behind it is ever served.

Each bad case goes out with a pipelined canary request (``GET /canary``) right behind it on
the same connection. Whatever the case, the canary must never reach the app (read from the
echo app's own records, not from the responses), the client gets one 4xx/5xx and the
connection closes (RFC 9112 §11.2: a server that cannot frame a request cannot know where
the next one starts). Valid controls next to them must be served, canary included, so that
"refuse everything" cannot pass.

httptools runs llhttp in strict mode; `test_no_lenient_flags_in_source` and
`test_lenient_only_input_refused` keep it that way, one input per llhttp leniency flag.

One server and one echo app for the module; each exchange notes the app calls it caused.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httptools
import pytest

import wsgiserve
from tests.support.echo_app import Call, EchoApp, decode_echo
from tests.support.rawhttp import RawResult, ResponseList, bytewise, exchange, parse_responses

Address = tuple[str, int]

CANARY = b"GET /canary HTTP/1.1\r\nHost: t\r\n\r\n"
CANARY_PATH = "/canary"
PATH = "/smuggle"

IDLE_TIMEOUT = 1.0  # seconds: a server that neither answers nor closes fails after this
SETTLE = 0.05  # seconds to keep reading once the expected responses are in
APP_IDLE_TIMEOUT = 5.0  # seconds for the app calls of one exchange to finish

PACKAGE = Path(wsgiserve.__file__).parent


# -- Building requests ------------------------------------------------------------------------


def post(
    *fields: bytes, body: bytes = b"", version: bytes = b"1.1", method: bytes = b"POST"
) -> bytes:
    """A request to `PATH` with ``Host: t``, the raw `fields` (no CRLF), then `body`."""
    head = b"".join(field + b"\r\n" for field in fields)
    return (
        method
        + b" "
        + PATH.encode()
        + b" HTTP/"
        + version
        + b"\r\nHost: t\r\n"
        + head
        + b"\r\n"
        + body
    )


def chunked(body: bytes, *fields: bytes) -> bytes:
    """A chunked POST whose (raw, possibly malformed) chunked body is `body`."""
    return post(b"Transfer-Encoding: chunked", *fields, body=body)


def with_length(value: bytes, body: bytes = b"hello") -> bytes:
    return post(b"Content-Length: " + value, body=body)


def with_coding(value: bytes) -> bytes:
    return post(b"Transfer-Encoding: " + value, body=b"5\r\nhello\r\n0\r\n\r\n")


def with_size(size: bytes) -> bytes:
    return chunked(size + b"\r\nhello\r\n0\r\n\r\n")


def raw_head(*lines: bytes) -> bytes:
    """Header lines exactly as given (no Host added), CRLF-terminated, then the empty line."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


# -- The bad cases -----------------------------------------------------------------------------


class Stage(enum.Enum):
    HEAD = "refused from the head: the app is never called"
    BODY = "the head is fine, the body is not: an app that ran saw wsgi.input raise (J18)"


@dataclass(frozen=True)
class Bad:
    """A request that must be refused; `statuses` are the acceptable answers."""

    id: str
    wire: bytes
    statuses: frozenset[int]
    stage: Stage = Stage.HEAD
    bytewise: bool = False  # also sent one byte per send
    half_close: bool = False  # the case ends in EOF (no canary can follow)


def head(case_id: str, wire: bytes, *statuses: int, bytewise: bool = False) -> Bad:
    return Bad(case_id, wire, frozenset(statuses or (400,)), Stage.HEAD, bytewise)


def body(case_id: str, wire: bytes, *statuses: int, bytewise: bool = False) -> Bad:
    return Bad(case_id, wire, frozenset(statuses or (400,)), Stage.BODY, bytewise)


def eof(case_id: str, wire: bytes) -> Bad:
    return Bad(case_id, wire, frozenset({400}), Stage.BODY, half_close=True)


CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"

# RFC 9112 §6.1 and §6.3 (3): Transfer-Encoding with Content-Length is a smuggling attempt.
CL_AND_TE = [
    head(
        "cl-then-te",
        post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
        bytewise=True,
    ),
    head(
        "te-then-cl", post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=CHUNKED_HELLO)
    ),
    head(
        "cl-zero-with-te",
        post(b"Content-Length: 0", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
    ),
    head(
        "te-upper-cl-lower",
        post(b"TRANSFER-ENCODING: CHUNKED", b"content-length: 5", body=CHUNKED_HELLO),
    ),
    head(
        "cl-upper-te-lower",
        post(b"CONTENT-LENGTH: 5", b"transfer-encoding: chunked", body=CHUNKED_HELLO),
    ),
    head(
        "te-identity-with-cl",
        post(b"Transfer-Encoding: identity", b"Content-Length: 5", body=b"hello"),
        400,
        501,
    ),
]

# RFC 9112 §6.3 (5): a Content-Length that is not one 1*DIGIT is unrecoverable.
CONTENT_LENGTH = [
    head("cl-list-5-5", with_length(b"5, 5"), bytewise=True),
    head("cl-list-5,5", with_length(b"5,5")),
    head("cl-list-5-6", with_length(b"5, 6")),
    head("cl-two-fields-same", post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello")),
    head("cl-two-fields-differ", post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!")),
    head("cl-plus", with_length(b"+5")),
    head("cl-minus", with_length(b"-5")),
    head("cl-underscore", with_length(b"1_0", b"helloworld")),
    head("cl-hex", with_length(b"0x5")),
    head("cl-space-inside", with_length(b"1 0", b"helloworld")),
    head("cl-empty", with_length(b"")),
    head("cl-only-spaces", with_length(b"   ")),
    head("cl-decimal-point", with_length(b"5.0")),
    head("cl-trailing-letter", with_length(b"5a")),
    head("cl-vt-after", with_length(b"5\x0b")),
    head("cl-nbsp-after", with_length(b"5\xa0")),
    head("cl-20-digits", with_length(b"99999999999999999999"), 400, 413),
    head("cl-2^64", with_length(b"18446744073709551616"), 400, 413),
    head("cl-2^64+5-wraps-to-5", with_length(b"18446744073709551621"), 400, 413, bytewise=True),
]

# RFC 9112 §7.1: chunk-size = 1*HEXDIG, nothing else.
CHUNK_SIZE = [
    body("chunk-plus", with_size(b"+5")),
    body("chunk-minus", with_size(b"-5")),
    body("chunk-0x", with_size(b"0x5")),
    body("chunk-underscore", with_size(b"0_5")),
    body("chunk-leading-space", with_size(b" 5")),
    body("chunk-trailing-space", with_size(b"5 ")),
    body("chunk-trailing-tab", with_size(b"5\t")),
    body("chunk-empty-size", with_size(b"")),
    body("chunk-non-hex", with_size(b"g")),
    body("chunk-20-hex-digits", with_size(b"ffffffffffffffffffff"), 400, 413),
    body("chunk-2^64", with_size(b"10000000000000000"), 400, 413),
    body("chunk-2^64+5-wraps-to-5", with_size(b"10000000000000005"), 400, 413, bytewise=True),
    body("chunk-20-decimal-digits", with_size(b"99999999999999999999"), 400, 413),
]

# RFC 9112 §6.1, §6.3 (4): chunked must be the final coding, once; we know no other (501).
TRANSFER_ENCODING = [
    head("te-unknown", with_coding(b"gzip"), 400, 501),
    head("te-identity", with_coding(b"identity"), 400, 501),
    head("te-chunked-chunked", with_coding(b"chunked, chunked"), 400, 501),
    head(
        "te-two-fields",
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
        400,
        501,
    ),
    head("te-comma-led", with_coding(b", chunked"), 400, 501, bytewise=True),
    head("te-comma-trailing", with_coding(b"chunked,"), 400, 501),
    head("te-chunked-not-last", with_coding(b"chunked, gzip")),
    head("te-gzip-then-chunked", with_coding(b"gzip, chunked"), 400, 501),
    head("te-quoted", with_coding(b'"chunked"'), 400, 501),
    head("te-chunked-with-param", with_coding(b"chunked;q=1"), 400, 501),
    head("te-chunkedx", with_coding(b"chunkedx"), 400, 501),
    head("te-obs-fold", post(b"Transfer-Encoding:", b" chunked", body=CHUNKED_HELLO)),
    head(
        "te-obs-fold-continuation",
        post(b"Transfer-Encoding: gzip", b"\tchunked", body=CHUNKED_HELLO),
    ),
    head("te-on-http-1.0", post(b"Transfer-Encoding: chunked", version=b"1.0", body=CHUNKED_HELLO)),
    *[
        head(f"te-{name}-{where}", with_coding(value), 400, 501, bytewise=name == "nbsp")
        for name, char in (("vt", b"\x0b"), ("ff", b"\x0c"), ("nel", b"\x85"), ("nbsp", b"\xa0"))
        for where, value in (("before", char + b"chunked"), ("after", b"chunked" + char))
    ],
]

# RFC 9112 §7.1.1 (chunk-ext grammar), §7.1 (CRLF after chunk-data), §7.1.2 (trailers).
CHUNK_FRAMING = [
    body("ext-nul", chunked(b"5;\x00\r\nhello\r\n0\r\n\r\n")),
    body("ext-bare-semicolon", chunked(b"5;\r\nhello\r\n0\r\n\r\n")),
    body("ext-unterminated-quote", chunked(b'5;a="x\r\nhello\r\n0\r\n\r\n'), bytewise=True),
    body("ext-ctl-in-value", chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n")),
    body("data-not-followed-by-crlf", chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"), bytewise=True),
    body("data-followed-by-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n")),
    body("data-followed-by-bare-cr", chunked(b"5\r\nhello\r0\r\n\r\n")),
    body("size-line-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    # BWS is allowed only before ";" and around "=" of an extension: these lines keep it
    # where the grammar does not, so llhttp sees them unchanged and refuses them.
    body("size-sp-without-extension", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), bytewise=True),
    body("size-sp-then-garbage", chunked(b"5 x\r\nhello\r\n0\r\n\r\n")),
    body("ext-sp-after-name", chunked(b"5 ; a \r\nhello\r\n0\r\n\r\n")),
    body("ext-bws-not-a-token", chunked(b"5 ; a(b\r\nhello\r\n0\r\n\r\n")),
    body("ext-bws-sp-in-value", chunked(b"5 ; a = b c\r\nhello\r\n0\r\n\r\n")),
    body("ext-bws-bare-lf", chunked(b"5 ; a\nhello\r\n0\r\n\r\n"), bytewise=True),
    body("last-chunk-sp-without-extension", chunked(b"5\r\nhello\r\n0 \r\n\r\n")),
    body("last-chunk-bare-lf", chunked(b"5\r\nhello\r\n0\n\r\n")),
    body(
        "trailer-content-length",
        chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
        bytewise=True,
    ),
    body(
        "trailer-transfer-encoding",
        chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ),
    body("trailer-obs-fold", chunked(b"5\r\nhello\r\n0\r\nX-A: a\r\n b\r\n\r\n")),
    body("trailer-bare-lf", chunked(b"5\r\nhello\r\n0\r\nX-A: a\n\r\n")),
    body("trailer-ctl-in-value", chunked(b"5\r\nhello\r\n0\r\nX-A: a\x01\r\n\r\n")),
    eof("truncated-last-chunk", chunked(b"5\r\nhello\r\n0\r\n")),
    eof("truncated-in-data", chunked(b"5\r\nhel")),
    eof("truncated-content-length", with_length(b"5", b"hel")),
]

# RFC 9112 §2.2: CRLF ends every line; a bare CR is invalid, a bare LF we do not accept.
LINE_ENDINGS = [
    head("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: t\n\n", bytewise=True),
    head("bare-lf-request-line", b"GET / HTTP/1.1\nHost: t\r\n\r\n"),
    head("bare-lf-header-line", b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n"),
    head("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: t\r\n\n"),
    head("bare-cr-request-line", b"GET / HTTP/1.1\rHost: t\r\n\r\n"),
    head("bare-cr-header-line", b"GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n"),
    head("cr-then-x-ends-head", b"GET / HTTP/1.1\r\nHost: t\r\n\rX"),
]

# RFC 9112 §5.1 (no whitespace before ':'), §5.2 (obs-fold), RFC 9110 §5.1/§5.5 (token
# names, no CTLs in values), RFC 9112 §3.2 (exactly one Host).
FIELDS = [
    head("obs-fold-space", post(b"X-A: a", b" b"), bytewise=True),
    head("obs-fold-tab", post(b"X-A: a", b"\tb")),
    head("obs-fold-host", raw_head(b"GET / HTTP/1.1", b"Host: t", b" x")),
    head("obs-fold-content-length", post(b"Content-Length:", b" 5", body=b"hello")),
    head("empty-name", post(b": x")),
    head("space-in-name", post(b"a b: x")),
    head("ctl-in-name", post(b"a\x01: x")),
    head("nul-in-name", post(b"a\x00: x")),
    head("no-colon", post(b"X-A x")),
    head("space-before-colon-host", raw_head(b"GET / HTTP/1.1", b"Host : t"), bytewise=True),
    head("space-before-colon-cl", post(b"Content-Length : 5", body=b"hello")),
    head("tab-before-colon", post(b"X-A\t: b")),
    head("soh-in-value", post(b"X-A: a\x01b")),
    head("del-in-value", post(b"X-A: a\x7fb")),
    head("nul-in-value", post(b"X-A: a\x00b")),
    head("bare-cr-in-value", post(b"X-A: a\rb")),
    head("duplicate-host", raw_head(b"GET / HTTP/1.1", b"Host: t", b"Host: u"), bytewise=True),
    head("duplicate-host-same", raw_head(b"GET / HTTP/1.1", b"Host: t", b"Host: t")),
    head("host-list", raw_head(b"GET / HTTP/1.1", b"Host: t, u")),
    head("missing-host", raw_head(b"GET / HTTP/1.1")),
]

# RFC 9112 §3 (request line), §3.2.3/§3.2.4 (authority- and asterisk-form), RFC 9110 §9.3.6,
# §6.2 (versions), §7.8 (declined Upgrade with a chunked body: we cannot frame it).
REQUEST_LINE = [
    head("connect", raw_head(b"CONNECT t:443 HTTP/1.1", b"Host: t:443"), 501),
    head("get-asterisk-form", raw_head(b"GET * HTTP/1.1", b"Host: t")),
    head("http-0.9", b"GET /\r\n", bytewise=True),
    head("http-2.0", raw_head(b"GET / HTTP/2.0", b"Host: t"), 400, 505),
    head("http-lowercase", raw_head(b"GET / http/1.1", b"Host: t")),
    head(
        "upgrade-with-chunked-body",
        post(
            b"Connection: Upgrade",
            b"Upgrade: h2c",
            b"Transfer-Encoding: chunked",
            body=CHUNKED_HELLO,
        ),
    ),
    # Bytes behind a rejected request are never read as requests (RFC 9112 §9.6).
    head("rejected-then-requests", post(b"X-A: \x01") + CANARY + CANARY, bytewise=True),
]

BAD = [
    *CL_AND_TE,
    *CONTENT_LENGTH,
    *CHUNK_SIZE,
    *TRANSFER_ENCODING,
    *CHUNK_FRAMING,
    *LINE_ENDINGS,
    *FIELDS,
    *REQUEST_LINE,
]


def bad_variants() -> Iterator[object]:
    for case in BAD:
        if case.half_close:
            yield pytest.param(case, [case.wire], id=f"{case.id}-then-eof")
            continue
        wire = case.wire + CANARY
        yield pytest.param(case, [wire], id=f"{case.id}-whole")
        yield pytest.param(case, [case.wire, CANARY], id=f"{case.id}-canary-apart")
        if case.bytewise:
            yield pytest.param(case, bytewise(wire), id=f"{case.id}-bytewise")


# -- Fixtures and the exchange ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture(scope="module")
def address(app: EchoApp) -> Iterator[Address]:
    with wsgiserve.background_server(app, threads=2) as server:
        yield server.host, server.port


@dataclass(frozen=True)
class Outcome:
    """One exchange as the client saw it, plus the app calls it caused."""

    sent: bytes
    pieces: int
    raw: RawResult
    responses: ResponseList
    started: int  # app calls that began during the exchange
    calls: list[Call]  # app calls that finished during the exchange

    @property
    def paths(self) -> list[str]:
        return [call.echo.get("PATH_INFO", "") for call in self.calls]

    def __str__(self) -> str:
        return (
            f"sent {self.sent!r} in {self.pieces} piece(s); got {self.raw.data[:600]!r} "
            f"(closed={self.raw.closed}, reset={self.raw.reset}, "
            f"send_error={self.raw.send_error}); statuses={self.responses.statuses()}; "
            f"app calls started={self.started}, paths={self.paths}, "
            f"input errors={[call.input_error for call in self.calls]}"
        )


def run(
    app: EchoApp,
    address: Address,
    pieces: Sequence[bytes],
    *,
    responses: int | None = None,
    half_close: bool = False,
) -> Outcome:
    """Send `pieces`; read until EOF, silence, or `SETTLE` after `responses` responses."""
    assert app.wait_idle(APP_IDLE_TIMEOUT), "an app call from an earlier case is still running"
    started, finished = app.started, len(app.calls)
    until: Callable[[bytes], bool] | None = None
    if responses is not None:
        wanted = responses

        def until(data: bytes) -> bool:
            return len(parse_responses(data, eof=False)) >= wanted

    raw = exchange(
        address,
        pieces,
        half_close=half_close,
        idle_timeout=IDLE_TIMEOUT,
        until=until,
        settle=SETTLE,
    )
    idle = app.wait_idle(APP_IDLE_TIMEOUT)
    outcome = Outcome(
        b"".join(pieces),
        len(pieces),
        raw,
        parse_responses(raw.data, eof=raw.closed),
        app.started - started,
        app.calls[finished:],
    )
    assert idle, f"an app call never finished: {outcome}"
    return outcome


def echoed(outcome: Outcome, index: int) -> tuple[dict[str, str], bytes]:
    response = outcome.responses[index]
    assert response.status == 200, f"response {index} is not the echo: {outcome}"
    return decode_echo(response.body)


# -- The matrix -------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "pieces"), list(bad_variants()))
def test_refused_and_canary_never_served(
    app: EchoApp, address: Address, case: Bad, pieces: list[bytes]
) -> None:
    outcome = run(app, address, pieces, half_close=case.half_close)
    assert CANARY_PATH not in outcome.paths, f"the canary reached the app: {outcome}"
    assert outcome.raw.closed, f"the connection stayed open after a refusal: {outcome}"
    got = outcome.responses
    assert len(got) == 1, f"expected exactly one response: {outcome}"
    assert not got.trailing, f"bytes after the refusal: {outcome}"
    assert not got.truncated, f"a partial response: {outcome}"
    status = got[0].status
    if case.stage is Stage.HEAD:
        assert outcome.started == 0, f"the app ran for a refused head: {outcome}"
        assert status in case.statuses, f"expected {sorted(case.statuses)}: {outcome}"
        return
    assert outcome.started <= 1, f"more than one app call: {outcome}"
    assert all(call.input_error is not None for call in outcome.calls), (
        f"the app read a malformed body without an error: {outcome}"
    )
    # The echo app answers 500 itself when wsgi.input raises; without it, the server's own.
    allowed = case.statuses | ({500} if outcome.calls else set())
    assert status in allowed, f"expected {sorted(allowed)}: {outcome}"


# -- Valid controls: served, and so is the canary behind them ---------------------------------


@dataclass(frozen=True)
class Good:
    id: str
    wire: bytes
    body: bytes
    absent: tuple[str, ...] = ()  # environ keys the app must not see
    bytewise: bool = False


GOOD = [
    Good("cl-body", with_length(b"5"), b"hello", bytewise=True),
    Good("cl-zero", with_length(b"0", b""), b""),
    Good(
        "get-with-cl-body",
        post(b"Content-Length: 5", method=b"GET", body=b"hello"),
        b"hello",
        bytewise=True,
    ),
    Good("chunked-body", chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), b"hello world"),
    Good(
        "chunk-ext-name-value",
        chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        b"hello",
        bytewise=True,
    ),
    Good("chunk-ext-quoted-value", chunked(b'5;name="a b"\r\nhello\r\n0\r\n\r\n'), b"hello"),
    Good("chunk-ext-on-last-chunk", chunked(b"5\r\nhello\r\n0;name=value\r\n\r\n"), b"hello"),
    # RFC 9112 §7.1.1: BWS before ";" and around "=" (gunicorn's valid/013 and more).
    Good(
        "chunk-ext-bws",
        chunked(b"5; some; parameters=stuff\r\nhello\r\n6\t;\ta = b\r\n world\r\n0\r\n\r\n"),
        b"hello world",
        bytewise=True,
    ),
    Good("chunk-ext-bws-quoted", chunked(b'5 ; q = "a ; 0 b"\r\nhello\r\n0\r\n\r\n'), b"hello"),
    Good(
        "chunk-ext-bws-last-chunk-and-trailer",
        chunked(b"5\r\nhello\r\n0 ; a = b\r\nX-Checksum: 1\r\n\r\n"),
        b"hello",
        absent=("HTTP_X_CHECKSUM",),
        bytewise=True,
    ),
    # Chunk data that reads like a size line with BWS is data, byte for byte.
    Good("chunk-data-like-a-bws-line", chunked(b"7 ; a\r\n1 ; a\r\n\r\n0\r\n\r\n"), b"1 ; a\r\n"),
    Good("chunk-size-leading-zeros", chunked(b"005\r\nhello\r\n0\r\n\r\n"), b"hello"),
    Good("chunk-size-upper-hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789"),
    Good(
        "te-chunked-mixed-case", post(b"Transfer-Encoding: Chunked", body=CHUNKED_HELLO), b"hello"
    ),
    Good(
        "allowed-trailer",
        chunked(b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"),
        b"hello",
        absent=("HTTP_X_CHECKSUM",),
        bytewise=True,
    ),
]


def good_variants() -> Iterator[object]:
    for case in GOOD:
        wire = case.wire + CANARY
        yield pytest.param(case, [wire], id=f"{case.id}-whole")
        yield pytest.param(case, [case.wire, CANARY], id=f"{case.id}-canary-apart")
        if case.bytewise:
            yield pytest.param(case, bytewise(wire), id=f"{case.id}-bytewise")


@pytest.mark.parametrize(("case", "pieces"), list(good_variants()))
def test_valid_control_and_canary_served(
    app: EchoApp, address: Address, case: Good, pieces: list[bytes]
) -> None:
    outcome = run(app, address, pieces, responses=2)
    assert outcome.responses.statuses() == [200, 200], f"expected two echoes: {outcome}"
    environ, received = echoed(outcome, 0)
    assert environ["PATH_INFO"] == PATH, f"first response: {outcome}"
    assert received == case.body, f"first response: body differs: {outcome}"
    for key in case.absent:
        assert key not in environ, f"{key} reached the environ: {outcome}"
    environ, received = echoed(outcome, 1)
    assert (environ["PATH_INFO"], received) == (CANARY_PATH, b""), f"the canary: {outcome}"
    assert outcome.paths == [PATH, CANARY_PATH], f"app calls: {outcome}"


# -- One response, then close: nothing behind it is parsed -------------------------------------


@dataclass(frozen=True)
class Last:
    """A request served normally after which the connection must end."""

    id: str
    wire: bytes
    body: bytes


INNER = b"GET /inner HTTP/1.1\r\nHost: t\r\n\r\n"
H2C = (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQAAP__")
WEBSOCKET = (
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
)
CL_INNER = b"Content-Length: " + str(len(INNER)).encode()

# RFC 9110 §7.8: we may decline an Upgrade; the body is then framed by Content-Length like any
# other and the connection closes after the response. RFC 9112 §9.6: nothing after close.
LAST = [
    Last("upgrade-h2c-body-is-a-request", post(*H2C, CL_INNER, body=INNER), INNER),
    Last(
        "upgrade-websocket-body-is-a-request",
        post(*WEBSOCKET, CL_INNER, method=b"GET", body=INNER),
        INNER,
    ),
    Last(
        "upgrade-cl-ends-inside-a-request",
        post(*H2C, b"Content-Length: 10", body=INNER),
        INNER[:10],
    ),
    Last("upgrade-no-body", post(*WEBSOCKET, method=b"GET"), b""),
    Last(
        "connection-close",
        post(b"Connection: close", b"Content-Length: 5", body=b"hello"),
        b"hello",
    ),
    Last(
        "http-1.0-default-close",
        post(b"Content-Length: 5", version=b"1.0", body=b"hello"),
        b"hello",
    ),
]


def last_variants() -> Iterator[object]:
    for case in LAST:
        wire = case.wire + CANARY
        yield pytest.param(case, [wire], id=f"{case.id}-whole")
        yield pytest.param(case, [case.wire, CANARY], id=f"{case.id}-canary-apart")
        yield pytest.param(case, bytewise(wire), id=f"{case.id}-bytewise")


@pytest.mark.parametrize(("case", "pieces"), list(last_variants()))
def test_nothing_parsed_after_last_response(
    app: EchoApp, address: Address, case: Last, pieces: list[bytes]
) -> None:
    outcome = run(app, address, pieces)
    assert outcome.paths == [PATH], f"only the first request may reach the app: {outcome}"
    assert outcome.started == 1, f"app calls: {outcome}"
    assert outcome.responses.statuses() == [200], f"expected one echo: {outcome}"
    _, received = echoed(outcome, 0)
    assert received == case.body, f"the body differs: {outcome}"
    assert outcome.raw.closed, f"the connection stayed open: {outcome}"
    assert not outcome.responses.trailing, f"bytes after the response: {outcome}"


# -- Host in a trailer: refused or ignored, never merged ----------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([chunked(b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n") + CANARY], id="whole"),
        pytest.param(
            bytewise(chunked(b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n") + CANARY), id="bytewise"
        ),
    ],
)
def test_host_trailer_never_merged(app: EchoApp, address: Address, pieces: list[bytes]) -> None:
    outcome = run(app, address, pieces, responses=2)
    hosts = [call.echo.get("HTTP_HOST") for call in outcome.calls]
    assert "evil" not in ", ".join(host or "" for host in hosts), f"merged: {outcome}"
    if outcome.responses.statuses() == [200, 200]:  # ignored: the exchange goes on as usual
        environ, received = echoed(outcome, 0)
        assert (environ["HTTP_HOST"], received) == ("t", b"hello"), f"{outcome}"
        assert outcome.paths == [PATH, CANARY_PATH], f"{outcome}"
        return
    assert CANARY_PATH not in outcome.paths, f"the canary reached the app: {outcome}"
    assert outcome.raw.closed, f"refused, but the connection stayed open: {outcome}"
    assert len(outcome.responses) == 1, f"{outcome}"
    assert outcome.responses[0].status in {400, 500}, f"{outcome}"
    assert all(call.input_error is not None for call in outcome.calls), f"{outcome}"


def test_empty_chunk_extension_name_is_tolerated_without_desync(
    app: EchoApp, address: Address
) -> None:
    """A known parser gap, listed in SECURITY.md: llhttp (httptools 0.9) accepts `5;=x`, an
    extension without a name (RFC 9112 §7.1.1 wants a token), and httptools never shows
    extensions to Python. The size is still unambiguous, so the framing must be exactly
    that of `5`: the body is "hello" and the canary is a separate request."""
    wire = chunked(b"5;=x\r\nhello\r\n0\r\n\r\n")
    outcome = run(app, address, [wire + CANARY], responses=2)
    assert outcome.responses.statuses() == [200, 200], f"{outcome}"
    _, received = echoed(outcome, 0)
    assert received == b"hello", f"{outcome}"
    assert outcome.paths == [PATH, CANARY_PATH], f"{outcome}"


# -- The parser stays strict -----------------------------------------------------------------


def test_no_lenient_flags_in_source() -> None:
    """Nothing in the package turns on an llhttp leniency (it would undo every case above)."""
    setter = "set_dangerous_leniencies"
    pattern = re.compile(r"set_dangerous_leniencies|lenient_\w+|leniencies")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == [], f"llhttp leniencies are referenced: {offenders}"
    # The scan means something only while the setter exists under this name.
    if not hasattr(httptools.HttpRequestParser, setter):
        pytest.fail(f"httptools {httptools.__version__} lacks {setter}: update this check")


# One input per llhttp leniency flag that would let it through (four of them are caught again
# by validate.py or by llhttp elsewhere even with every flag on; the rest only by the flag).
LENIENT_ONLY = {
    "lenient_headers": post(b"X-A: a\x01b"),
    "lenient_chunked_length": post(
        b"Transfer-Encoding: chunked", b"Content-Length: 5", body=CHUNKED_HELLO
    ),
    "lenient_transfer_encoding": with_coding(b"chunked, gzip"),
    "lenient_version": raw_head(b"GET / HTTP/1.7", b"Host: t"),
    "lenient_optional_lf_after_cr": b"GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n",
    "lenient_optional_cr_before_lf": b"GET / HTTP/1.1\nHost: t\r\n\r\n",
    "lenient_optional_crlf_after_chunk": chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"),
    "lenient_spaces_after_chunk_size": with_size(b"5 "),
}


@pytest.mark.parametrize("wire", list(LENIENT_ONLY.values()), ids=list(LENIENT_ONLY))
def test_lenient_only_input_refused(app: EchoApp, address: Address, wire: bytes) -> None:
    """Refused, canary unserved (lenient_keep_alive and lenient_data_after_close are covered
    by `test_nothing_parsed_after_last_response`)."""
    outcome = run(app, address, [wire + CANARY])
    assert CANARY_PATH not in outcome.paths, f"the canary reached the app: {outcome}"
    assert outcome.raw.closed, f"{outcome}"
    assert len(outcome.responses) == 1, f"{outcome}"
    assert 400 <= outcome.responses[0].status < 600, f"{outcome}"
    assert not any(call.input_error is None for call in outcome.calls), f"{outcome}"
