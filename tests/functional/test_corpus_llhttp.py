"""Black-box conformance against llhttp's request-parser vectors, every case, over real sockets.

The corpus lives outside the repository (``../shared/corpus/llhttp-request-tests``) and is
used by path. Each case's expectation is read from its llhttp event log by
`expectation_from_log`, following the recipe of README §3.3: errors before the body become an
error response with the app never called, errors in the body the J18 body-error rule, code 5
the completed requests then close, code 22 J24 (declined Upgrade) or J14 (CONNECT), and
completed requests a JSON echo each, compared with the spans llhttp reported. ``url.md`` is
the oracle for how a request-target splits into ``PATH_INFO`` and ``QUERY_STRING``. Where the
log cannot say what a strict origin server does, `HAND_WRITTEN` spells it out; where we
deliberately differ from llhttp's verdict, `DEVIATIONS` says why, citing RFC 9110/9112.

One server for the module, one echo app recording every call (README §1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote_to_bytes

import pytest

import wsgiserve
from tests.functional.corpus_llhttp import (
    CLOSED_CONNECTION,
    CORPUS,
    INJECTED_HOST,
    INJECTED_LINE,
    Case,
    Message,
    UrlCase,
    closes_after,
    expected_environ,
    load_cases,
    load_url_cases,
    wire,
)
from tests.support import corpus_run
from tests.support.corpus_run import (
    Address,
    Outcome,
    case_seed,
    check_body_error,
    check_error,
    is_field,
    is_padded,
    split_values,
)
from tests.support.echo_app import EchoApp, ReadMode, decode_echo
from tests.support.rawhttp import bytewise, splits

if not CORPUS.is_dir():
    # shared/ lies beside every checkout and CI clone: a missing corpus is a broken setup,
    # not a reason to pass without testing.
    raise RuntimeError(
        f"llhttp request corpus not found at {CORPUS.resolve()} (expected beside the "
        "repository, in shared/corpus/llhttp-request-tests)",
    )

IDLE_TIMEOUT = 0.5  # seconds of silence that end a read (the server keeps alive 5 s)
SETTLE = 0.1  # seconds to keep reading after the expected responses arrived (whole sends)
SPLIT_SETTLE = 0.02  # the same for split sends
BYTEWISE_MAX = 1024  # echo cases up to this size are also sent one byte per send


class Kind(enum.Enum):
    ECHO = "2xx echoes of the first `echoes` completed requests, in order, then `after`"
    ERROR = "one error response, app not called, connection closed"
    BODY_ERROR = "no 2xx; the app (if called) saw wsgi.input raise; connection closed (J18)"


class After(enum.Enum):
    OPEN = "the connection stays open"
    CLOSE = "the server closes; nothing after the echoed requests is answered"
    PENDING = "nothing more within the idle timeout: the server waits for the rest"
    ERROR = "one error response, then close"


@dataclass(frozen=True)
class Expect:
    """What a case must produce.

    `statuses`: acceptable error statuses (ERROR, or the error after the echoes).
    `optional_response`: an ERROR may also be a bare close. `half_close`: send, then
    ``SHUT_WR`` (``request-finish``).
    """

    kind: Kind
    statuses: frozenset[int] = frozenset()
    echoes: int = 0
    after: After = After.OPEN
    optional_response: bool = False
    half_close: bool = False


def _error(*statuses: int, optional_response: bool = False, half_close: bool = False) -> Expect:
    return Expect(
        Kind.ERROR,
        frozenset(statuses),
        optional_response=optional_response,
        half_close=half_close,
    )


_BODY_ERROR = Expect(Kind.BODY_ERROR)
_METHOD_ERRORS = frozenset({6})  # INVALID_METHOD: 400, or 501 for a well-formed token (J2)
_VERSION_ERRORS = frozenset({9})  # INVALID_VERSION: 400, or 505 for major != 1 (J16)


def expectation_from_log(case: Case) -> Expect:
    """README §3.3, read off the case's llhttp log."""
    log = case.log
    completed = log.completed
    if case.type == "request-finish":
        if completed:  # finish=0: the request was whole; answer it, then see the EOF
            return Expect(Kind.ECHO, echoes=len(completed), after=After.CLOSE, half_close=True)
        return _error(400, optional_response=True, half_close=True)  # finish=2 (J19)
    if case.type.startswith("request-lenient"):
        return _error(400)  # a strict server; a pass here means a leniency was switched on
    code = log.error_code
    if code is None:
        pending = any(not message.complete for message in log.messages)
        if pending:
            after = After.PENDING
        elif closes_after(completed[-1]):
            after = After.CLOSE
        else:
            after = After.OPEN
        return Expect(Kind.ECHO, echoes=len(completed), after=after)
    if code == CLOSED_CONNECTION:  # RFC 9112 §9.6: the bytes after close are not a request
        return Expect(Kind.ECHO, echoes=len(completed), after=After.CLOSE)
    if code == 22:
        if completed[-1].method == "CONNECT":
            return _error(501, 405)  # J14: a WSGI app cannot tunnel
        return Expect(Kind.ECHO, echoes=len(completed), after=After.CLOSE)  # J24
    if code == 23:
        return _error(400, 505, optional_response=True)  # the HTTP/2 preface
    if code == 15:  # a Transfer-Encoding verdict, even when logged after headers complete
        return _error(400, 501)
    if log.error_after_headers:
        return _BODY_ERROR
    statuses = {400}
    if code in _METHOD_ERRORS or (code == 8 and "method" in log.error_reason):
        statuses.add(501)
    if code in _VERSION_ERRORS:
        statuses.add(505)
    return _error(*statuses)


# Where we expect something other than llhttp's verdict, and why (RFC 9110 / RFC 9112).
DEVIATIONS: dict[str, tuple[Expect, str]] = {
    "llhttp/method.md/M-SEARCH request": (
        _error(400),
        "RFC 9112 §3.2.4: asterisk-form is only for OPTIONS (J14). llhttp parses "
        "'M-SEARCH * HTTP/1.1' (SSDP over UDP); an origin server answers 400.",
    ),
    "llhttp/method.md/SOURCE request with ICE": (
        _error(400, 505),
        "RFC 9112 §2.3/§3: HTTP-version is 'HTTP/' DIGIT '.' DIGIT; 'ICE/1.0' is not an HTTP "
        "request line. llhttp accepts ICE for SOURCE; an HTTP server must not serve it.",
    ),
    "llhttp/method.md/OPTIONS request with RTSP": (
        _error(400, 505),
        "RFC 9112 §2.3/§3: 'RTSP/1.0' is not an HTTP-version; llhttp also parses RTSP.",
    ),
    "llhttp/method.md/ANNOUNCE request with RTSP": (
        _error(400, 501, 505),
        "RFC 9112 §2.3/§3: 'RTSP/1.0' is not an HTTP-version; llhttp also parses RTSP.",
    ),
    "llhttp/sample.md/No HTTP version": (
        _error(400),
        "J16: 'GET /' with no version is HTTP/0.9, which RFC 9112 §3 (request-line = method "
        "SP request-target SP HTTP-version) does not allow; 400, never a 0.9 response.",
    ),
    "llhttp/transfer-encoding.md/POST with `chunked` as last transfer-encoding": (
        _error(501),
        "J6/J7, RFC 9112 §6.1: a server that does not understand a transfer coding SHOULD "
        "answer 501. wsgiserve decodes only a lone 'chunked'; handing the app 'deflate' "
        "bytes as the body would corrupt it.",
    ),
    "llhttp/transfer-encoding.md/"
    + "POST with `chunked` as last transfer-encoding (multiple headers)": (
        _error(501),
        "J6/J7, RFC 9112 §6.1: as above, the codings split over two field lines.",
    ),
    "llhttp/uri.md/`host:port` and basic auth": (
        _error(400),
        "RFC 9110 §4.2.4: userinfo in an http(s) target SHOULD be treated as an error (J14).",
    ),
}


def _lenient_strict(echoes: int, after: After, *statuses: int) -> Expect:
    return Expect(Kind.ECHO, frozenset(statuses), echoes=echoes, after=after)


# Cases whose log alone does not say what a strict origin server does; these follow the
# README (§3.3 and the J-notes named), they are not deviations.
HAND_WRITTEN: dict[str, tuple[Expect, str]] = {
    "llhttp/connection.md/Resetting flags when keep-alive is off (1.0, lenient)": (
        _lenient_strict(1, After.CLOSE),
        "Strictly this is code 5: the HTTP/1.0 request is whole and answered, then the "
        "connection closes and the chunked request behind it is never read (RFC 9112 §9.3).",
    ),
    "llhttp/connection.md/CRLF between requests, explicit `close` (lenient)": (
        _lenient_strict(1, After.CLOSE),
        "Strictly this is code 5 (the strict twin of this case): answer, then close; the "
        "bytes after 'Connection: close' are never a request (RFC 9112 §9.6).",
    ),
    "llhttp/lenient-headers.md/Second request header value (lenient)": (
        _lenient_strict(1, After.ERROR, 400),
        "The first request is strictly valid and answered; only the second (a form feed in "
        "a field value, RFC 9110 §5.5) needs the leniency, so it gets 400 and close.",
    ),
    "llhttp/lenient-version.md/Invalid HTTP version (lenient)": (
        _error(400, 505),
        "J16: HTTP/5.6 has major != 1; 505 (RFC 9110 §15.6.6) or 400.",
    ),
    "llhttp/transfer-encoding.md/Chunk header not terminated by CRLF (lenient)": (
        _BODY_ERROR,
        "The bare CR is in a chunk-size line, after the head: J18 (400 or abort, the app's "
        "read raises); the request smuggled behind it is never answered.",
    ),
    "llhttp/transfer-encoding.md/Chunk data not terminated by CRLF (lenient)": (
        _BODY_ERROR,
        "The missing CRLF is after chunk data, after the head: J18.",
    ),
    "llhttp/transfer-encoding.md/Space after chunk header (lenient)": (
        _BODY_ERROR,
        "The stray space is in a chunk-size line, after the head: J18.",
    ),
    "llhttp/content-length.md/Content-Length reset when no body is received": (
        Expect(Kind.ECHO, after=After.PENDING),
        "meta skipBody makes llhttp's runner skip the body; on the wire 'Content-Length: 123' "
        "frames the next 123 bytes (the POST is body), which never all arrive: wait.",
    ),
}


def expectation(case: Case) -> Expect:
    for table in (DEVIATIONS, HAND_WRITTEN):
        if case.id in table:
            return table[case.id][0]
    return expectation_from_log(case)


CASES = load_cases()
URL_CASES = load_url_cases()

# url.md targets that llhttp splits but wsgiserve must refuse, and why.
URL_DEVIATIONS: dict[str, str] = {
    "llhttp/url.md/Complex URL with basic auth from node.js url parser doc": (
        "RFC 9110 §4.2.4: userinfo in an http(s) target SHOULD be treated as an error (J14)."
    ),
    "llhttp/url.md/Proxy basic auth with url encoded space": "RFC 9110 §4.2.4, as above.",
    "llhttp/url.md/Proxy basic auth with unreserved chars": "RFC 9110 §4.2.4, as above.",
    "llhttp/url.md/IPv6 address with Zone ID": (
        "RFC 9110 §4.2.1/§7.2 take uri-host from RFC 3986 §3.2.2, whose IP-literal has no "
        "zone identifier (RFC 6874's '%25' form is not part of HTTP's grammar, and a zone "
        "names an interface of the sender only): an invalid authority, 400 (RFC 9112 §3.2)."
    ),
    "llhttp/url.md/IPv6 address with Zone ID, but `%` is not percent-encoded": (
        "As above; a bare '%' is not even RFC 6874's syntax."
    ),
}


# -- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture(scope="module")
def address(app: EchoApp) -> Iterator[Address]:
    with wsgiserve.background_server(app, host="127.0.0.1", port=0, threads=4) as server:
        yield (server.host, server.port)


# -- One exchange, observed from both ends ------------------------------------------------


# `corpus_run.run` with this module's timings.
run = partial(corpus_run.run, idle_timeout=IDLE_TIMEOUT, settle=SETTLE)


# -- Checks ------------------------------------------------------------------------------------


def check_echoes(outcome: Outcome, messages: Sequence[Message], expect: Expect) -> None:
    """The first `expect.echoes` responses echo `messages`; then what `expect.after` says."""
    got = outcome.responses
    count = expect.echoes
    extra = 1 if expect.after is After.ERROR else 0
    assert len(got) == count + extra, f"expected {count + extra} response(s): {outcome}"
    assert not got.truncated, f"a partial response followed: {outcome}"
    assert got.error is None, f"response bytes are not valid HTTP: {outcome}"
    assert not got.trailing, f"bytes after a 'Connection: close' response: {outcome}"
    answered = outcome.calls[:count]
    assert len(answered) == count, f"app calls != echoed requests: {outcome}"
    for index, (response, message, call) in enumerate(
        zip(got[:count], messages[:count], answered, strict=True)
    ):
        assert response.status == 200, f"response {index}: {outcome}"
        assert call.input_error is None, f"response {index}: wsgi.input raised: {outcome}"
        echo, body = call.echo, call.body
        if message.method != "HEAD":
            echo, body = decode_echo(response.body)
        assert split_values(echo) == split_values(expected_environ(message)), (
            f"response {index}: environ differs from llhttp's spans: {echo} {outcome}"
        )
        assert body == message.body, f"response {index}: body differs: {outcome}"
        padded = {key: value for key, value in echo.items() if is_field(key) and is_padded(value)}
        assert not padded, (
            f"response {index}: RFC 9110 §5.5: a field value excludes leading and trailing "
            f"whitespace: {padded}: {outcome}"
        )
    if expect.after is After.PENDING:
        assert not outcome.raw.closed, f"the server gave up on a request still arriving: {outcome}"
        # An app call may have begun for the incomplete request (its head was whole); it
        # ended when the client went away, so wsgi.input must have raised.
        assert outcome.started in (count, count + 1), f"unexpected app calls: {outcome}"
        assert all(call.input_error for call in outcome.calls[count:]), str(outcome)
        return
    assert outcome.started == count, f"app calls != echoed requests: {outcome}"
    if expect.after is After.OPEN:
        assert not outcome.raw.closed, f"keep-alive connection closed: {outcome}"
    else:
        assert outcome.raw.closed, f"connection should close: {outcome}"
    if expect.after is After.ERROR:
        assert got[-1].status in expect.statuses, f"expected {set(expect.statuses)}: {outcome}"


def check_eof_while_pending(outcome: Outcome, expect: Expect) -> None:
    """After a half-close mid-request: the whole requests answered, then close, no 2xx."""
    got = outcome.responses
    assert outcome.raw.closed, f"connection left open after the client's EOF: {outcome}"
    assert [r.status for r in got[: expect.echoes]] == [200] * expect.echoes, str(outcome)
    assert len(got) <= expect.echoes + 1, f"responses for bytes never sent: {outcome}"
    assert all(r.status in (400, 500) for r in got[expect.echoes :]), (
        f"J19: a response claims success for a request that never completed: {outcome}"
    )
    assert all(call.input_error for call in outcome.calls[expect.echoes :]), str(outcome)


# -- The tests ---------------------------------------------------------------------------------


def _variants(
    case_id: str, data: bytes, *, whole_only: bool = False
) -> Iterator[tuple[str, list[bytes], ReadMode, float]]:
    """(label, pieces, read mode, settle) for each way a case is sent."""
    yield "whole", [data], "read", SETTLE
    if whole_only:
        return
    yield "random", next(splits(data, "random", seed=case_seed(case_id))), "read_n", SPLIT_SETTLE
    if len(data) <= BYTEWISE_MAX:
        yield "bytewise", bytewise(data), "readline", SPLIT_SETTLE


def run_case(
    app: EchoApp,
    address: Address,
    case_id: str,
    data: bytes,
    expect: Expect,
    messages: Sequence[Message],
) -> None:
    methods = [message.method for message in messages]
    if expect.kind is not Kind.ECHO:
        for label, pieces, _mode, _settle in _variants(case_id, data):
            if label == "bytewise":
                continue
            outcome = run(app, address, label, pieces, methods, half_close=expect.half_close)
            if expect.kind is Kind.ERROR:
                check_error(outcome, expect.statuses, optional_response=expect.optional_response)
            else:
                check_body_error(outcome, second="a smuggled request?")
        return
    pending = expect.after is After.PENDING
    stop_at = expect.echoes if expect.after is After.OPEN else None
    for label, pieces, mode, settle in _variants(case_id, data, whole_only=pending):
        app.read_mode = mode
        try:
            outcome = run(
                app,
                address,
                f"{label}, {mode}",
                pieces,
                methods,
                half_close=expect.half_close,
                responses=stop_at,
                settle=settle,
            )
        finally:
            app.read_mode = "read"
        check_echoes(outcome, messages, expect)
    if pending:
        pieces = next(splits(data, "random", seed=case_seed(case_id)))
        outcome = run(app, address, "random, half-close", pieces, methods, half_close=True)
        check_eof_while_pending(outcome, expect)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_request_case(case: Case, app: EchoApp, address: Address) -> None:
    expect = expectation(case)
    run_case(app, address, case.id, wire(case), expect, case.log.messages)


def test_upgrade_post_body_is_the_requests_own(app: EchoApp, address: Address) -> None:
    """J24, spelled out: a declined ``Upgrade`` on a POST still frames its body by
    Content-Length; the app reads exactly ``sweet post body`` and ``Hot diggity dogg`` is
    never parsed as a request."""
    case = next(c for c in CASES if c.id == "llhttp/connection.md/Upgrade POST request")
    outcome = run(app, address, "whole", [wire(case)], ["POST"])
    assert outcome.responses.statuses() == [200], str(outcome)
    assert [call.body for call in outcome.calls] == [b"sweet post body"], str(outcome)
    assert outcome.raw.closed, f"J24: the connection must close after the response: {outcome}"


@pytest.mark.parametrize("case", URL_CASES, ids=[case.id for case in URL_CASES])
def test_url_case(case: UrlCase, app: EchoApp, address: Address) -> None:
    """README §3.3: wrap the target in ``GET <url> HTTP/1.1`` and compare the environ with
    llhttp's ``url.path`` / ``url.query`` / ``url.host`` spans."""
    data = b"GET " + case.url + b" HTTP/1.1\r\n" + INJECTED_LINE + b"\r\n"
    if case.error_code is not None or case.id in URL_DEVIATIONS:
        message = Message(method="GET", url=case.url, version="1.1")
        run_case(app, address, case.id, data, _error(400), [message])
        return
    outcome = run(app, address, "whole", [data], ["GET"], responses=1)
    assert outcome.responses.statuses() == [200], str(outcome)
    echo, body = decode_echo(outcome.responses[0].body)
    host = case.spans.get("host")
    expected = {
        "PATH_INFO": unquote_to_bytes(case.spans.get("path", b"/")).decode("latin-1"),
        "QUERY_STRING": case.spans.get("query", b"").decode("latin-1"),
        "HTTP_HOST": INJECTED_HOST if host is None else host.decode("latin-1"),
    }
    assert {key: echo.get(key) for key in expected} == expected, str(outcome)
    assert body == b"", str(outcome)


def test_tables_name_real_cases() -> None:
    """Every table entry names a corpus case; the corpus has the size README §0 gives."""
    assert len(CASES) == 166, "README: 166 request cases"
    assert len(URL_CASES) == 21, "README: 21 URL cases"
    ids = {case.id for case in CASES}
    assert len(ids) == len(CASES), "case ids must be unique"
    assert set(DEVIATIONS) <= ids
    assert set(HAND_WRITTEN) <= ids
    assert set(URL_DEVIATIONS) <= {case.id for case in URL_CASES}
    for case in CASES:
        expectation(case)
