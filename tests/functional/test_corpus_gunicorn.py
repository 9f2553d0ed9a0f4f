"""Black-box conformance against gunicorn's request corpus, every case, over real sockets.

The corpus lives outside the repository (``../shared/corpus/gunicorn-requests``) and is used
by path. The expectation for each case is its ``recommended_blackbox`` column in
``TRIAGE.tsv`` (README §2.6), read by `expectation_from_triage`; where that column is prose
the rules cannot read, or where wsgiserve is expected to differ, the three tables below say
what we expect instead, with a reason each: `PROXY_PROTOCOL`, `DEVIATIONS`, `HAND_WRITTEN`.

One server per distinct limit setting (gunicorn's numbers, plus the case's ``cfg``
overrides), shared by the module; one echo app records every call (README §1).
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial

import pytest

import wsgiserve
from tests.functional.corpus_gunicorn import (
    CORPUS,
    Case,
    ExpectedRequest,
    Limits,
    expected_environ,
    load_cases,
)
from tests.support import corpus_run
from tests.support.corpus_run import (
    Address,
    Outcome,
    case_seed,
    check_body_error,
    check_error,
    split_values,
)
from tests.support.echo_app import EchoApp, ReadMode, decode_echo
from tests.support.rawhttp import bytewise, splits, two_piece_splits

if not CORPUS.is_dir():
    # shared/ lies beside every checkout and CI clone: a missing corpus is a broken setup,
    # not a reason to pass without testing.
    raise RuntimeError(
        f"gunicorn request corpus not found at {CORPUS.resolve()} (expected beside the "
        "repository, in shared/corpus/gunicorn-requests)",
    )

IDLE_TIMEOUT = 1.0  # seconds of silence before a read gives up (the server keeps alive 5 s)
SETTLE = 0.2  # seconds to keep reading after the expected responses, for a whole send
SPLIT_SETTLE = 0.02  # the same for split sends, which are many
BYTEWISE_MAX = 2048  # cases up to this size are also sent one byte per send
# Cases also sent split at every byte boundary: small, and covering a CL body with close,
# pipelining, chunked + pipelining, and chunked with trailers.
TWO_PIECE_SAMPLE = frozenset({"valid/001", "valid/018", "valid/023", "valid/012"})


class Kind(enum.Enum):
    ECHO = "2xx echo responses, in order"
    ERROR = "one error response, app not called, connection closed"
    ECHO_OR_ERROR = "either a 2xx echo, or an error as for ERROR"
    BODY_ERROR = "no 2xx, the app (if called) saw wsgi.input raise, connection closed (J18)"
    ASTERISK = "2xx, from the app (PATH_INFO '*') or from the server (J14)"


@dataclass(frozen=True)
class Expect:
    """What a case must produce.

    `statuses`: the acceptable error statuses. `close`: EOF right after the last echo.
    `may_close_early`: one response then EOF is also fine (J21). `optional_response`: the
    error response may be missing, if the connection closes (J19). `half_close`: send, then
    ``SHUT_WR`` (the *eof* recipe). `requests` / `requests_like`: the echo expectation, when
    it is not the case's own ``.py`` (given directly, or as another case's id).
    """

    kind: Kind
    statuses: frozenset[int] = frozenset()
    close: bool = False
    may_close_early: bool = False
    optional_response: bool = False
    half_close: bool = False
    requests: tuple[ExpectedRequest, ...] | None = None
    requests_like: str | None = None


def _error(*statuses: int, optional_response: bool = False, half_close: bool = False) -> Expect:
    return Expect(
        Kind.ERROR,
        frozenset(statuses),
        optional_response=optional_response,
        half_close=half_close,
    )


def _request(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes = b"",
    scheme: str = "http",
) -> tuple[ExpectedRequest, ...]:
    return (ExpectedRequest(method, target, (1, 1), tuple(headers), body, scheme=scheme),)


# wsgiserve does not implement the PROXY protocol (v1 or v2). A preamble is then simply not
# a request line (RFC 9112 §3): 400, app not called, close. TRIAGE says "skip unless
# supported (else 400)"; we take the "else". (invalid/pp_* are 400 in TRIAGE already.)
PROXY_PROTOCOL: dict[str, str] = {
    "valid/pp_01": "PROXY v1 line before an HTTP/1.0 request",
    "valid/pp_02": "PROXY v1 line before two pipelined HTTP/1.1 requests",
    "valid/pp_04": "binary PROXY v2 preamble (IPv4); its NUL byte is not a method character",
    "valid/pp_05": "binary PROXY v2 preamble (IPv6); its NUL byte is not a method character",
}

# Where we expect something other than TRIAGE's recommendation (or than the RFC's preferred
# outcome), and why.
DEVIATIONS: dict[str, tuple[Expect, str]] = {
    "valid/013": (
        Expect(Kind.ECHO),
        "TRIAGE: 400 (J9, llhttp refuses BWS around ';' in a chunk extension). RFC 9112 "
        "§7.1.1 allows that BWS; wsgiserve removes it before llhttp parses the line "
        "(chunk_lines.py), so the case's own expectation holds: a 2xx echo, body "
        "'hello world'.",
    ),
    "valid/040_compat": (
        Expect(Kind.ECHO, close=True),
        "TRIAGE: skip (header_map=dangerous is gunicorn-only). wsgiserve has one policy, "
        "drop fields whose name contains '_' (J5, RFC 9110 §17.10), so these bytes (the "
        "same as valid/040) must give valid/040's echo: no TRANSFER_ENCODING, no "
        "underscore key, CONTENT_LENGTH=7; HTTP/1.0, so close.",
    ),
    "invalid/040": (
        Expect(Kind.ECHO, close=True, requests_like="valid/040"),
        "TRIAGE: skip (header_map=refuse is gunicorn-only). Under wsgiserve's drop policy "
        "(J5) these bytes are valid/040 and must be answered like it.",
    ),
    "invalid/019": (
        Expect(
            Kind.ECHO_OR_ERROR,
            frozenset({400}),
            requests=_request(
                "GET",
                "/test",
                [("X-FORWARDED-PROTO", "https"), ("X-FORWARDED-SSL", "off")],
                scheme="https",
            ),
        ),
        "TRIAGE: skip unless forwarded-scheme headers are trusted. The test client is on "
        "loopback, which --forwarded-allow-ips trusts by default, so X-Forwarded-Proto sets "
        "wsgi.url_scheme to 'https'. X-Forwarded-Ssl is not a header wsgiserve reads (one "
        "source of truth for the scheme), so there is no conflict to refuse; gunicorn's 400 "
        "is also accepted.",
    ),
}

# TRIAGE rows whose recommendation is prose that needs an expectation written out by hand.
# These follow TRIAGE; they are not deviations.
HAND_WRITTEN: dict[str, tuple[Expect, str]] = {
    "invalid/chunked_07": (
        Expect(
            Kind.ECHO,
            requests=_request(
                "POST",
                "/chunked_ambiguous_header_mapping",
                [("TRANSFER-ENCODING", "chunked")],
                b"hello world",
            ),
        ),
        "J5: 'Transfer_Encoding: gzip' is dropped; the request is plain chunked.",
    ),
    "invalid/rfc9110_trailer_forbidden_host_01": (
        Expect(
            Kind.ECHO_OR_ERROR,
            frozenset({400}),
            requests=_request(
                "POST",
                "/p",
                [("HOST", "example.com"), ("TRANSFER-ENCODING", "chunked")],
                b"hello",
            ),
        ),
        "J13: 400, or a 2xx whose HTTP_HOST is example.com (the trailer never merged).",
    ),
    "valid/rfc9112_target_asterisk_options_01": (
        Expect(Kind.ASTERISK),
        "J14: OPTIONS * reaches the app with PATH_INFO '*', or the server answers it.",
    ),
}

_STATUS = re.compile(r"\b[45]\d\d\b")


def expectation_from_triage(case: Case) -> Expect:
    """Read TRIAGE's ``recommended_blackbox`` for `case` (README §2.4, §2.5, J18, J19)."""
    text, group = case.triage.recommended, case.triage.group
    if group == "body-error":
        return Expect(Kind.BODY_ERROR)
    if group == "eof":
        if case.error == "NoMoreData":  # EOF inside the head: close, a 400 is optional
            return _error(400, optional_response=True, half_close=True)
        return Expect(Kind.BODY_ERROR, half_close=True)  # EOF inside the body
    if text.startswith("2xx+echo") or re.match(r"\d responses?\b", text):
        early = "or 1 response then close" in text
        return Expect(Kind.ECHO, close="then close" in text and not early, may_close_early=early)
    statuses = frozenset(int(status) for status in _STATUS.findall(text))
    if statuses and not text.startswith("skip"):
        return Expect(Kind.ERROR, statuses)
    raise LookupError(f"{case.id}: no rule reads TRIAGE's {text!r}; add it to a table")


def expectation(case: Case) -> Expect:
    """The expectation for `case`: a table entry if there is one, else TRIAGE's."""
    if case.id in PROXY_PROTOCOL:
        return _error(400)
    for table in (DEVIATIONS, HAND_WRITTEN):
        if case.id in table:
            return table[case.id][0]
    return expectation_from_triage(case)


CASES = load_cases()
CASE_BY_ID = {case.id: case for case in CASES}


def expected_requests(case: Case, expect: Expect) -> tuple[ExpectedRequest, ...]:
    if expect.requests is not None:
        return expect.requests
    source = CASE_BY_ID[expect.requests_like] if expect.requests_like else case
    assert source.requests is not None, f"{case.id}: no request expectation to compare with"
    return source.requests


# -- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture(scope="module")
def server_for(app: EchoApp) -> Iterator[Callable[[Limits], Address]]:
    """Address of a server with the given limits; started on first use, one per setting."""
    with contextlib.ExitStack() as stack:
        started: dict[Limits, Address] = {}

        def get(limits: Limits) -> Address:
            if limits not in started:
                server = stack.enter_context(
                    wsgiserve.background_server(
                        app, host="127.0.0.1", port=0, threads=4, **dict(limits)
                    )
                )
                started[limits] = (server.host, server.port)
            return started[limits]

        yield get


# -- One exchange, observed from both ends ------------------------------------------------


# `corpus_run.run` with this module's timings; failure messages count the sends.
run = partial(corpus_run.run, idle_timeout=IDLE_TIMEOUT, settle=SETTLE, show_pieces=True)


# -- Checks per kind ---------------------------------------------------------------------------


def check_echoes(outcome: Outcome, requests: Sequence[ExpectedRequest], expect: Expect) -> None:
    got = outcome.responses
    if expect.may_close_early and len(got) == 1:
        assert outcome.raw.closed, f"J21: one response, but the connection stayed open: {outcome}"
        requests = requests[:1]
    assert len(got) == len(requests), f"expected {len(requests)} response(s): {outcome}"
    assert not got.truncated, f"a partial response followed: {outcome}"
    assert got.error is None, f"response bytes are not valid HTTP: {outcome}"
    assert not got.trailing, f"bytes after a 'Connection: close' response: {outcome}"
    assert outcome.started == len(requests), f"app calls != requests: {outcome}"
    for index, (response, request) in enumerate(zip(got, requests, strict=True)):
        assert response.status == 200, f"response {index}: {outcome}"
        echo, body = decode_echo(response.body)
        assert split_values(echo) == split_values(expected_environ(request)), (
            f"response {index}: environ differs: {outcome}"
        )
        assert body == request.body, f"response {index}: body differs: {outcome}"
    if expect.close:
        assert outcome.raw.closed, f"connection should close after the response: {outcome}"


def echo_variants(case: Case) -> Iterator[tuple[str, list[bytes], ReadMode, float]]:
    """(label, pieces, read mode, settle) for each way a valid case is sent."""
    wire = case.wire
    yield "whole", [wire], "read", SETTLE
    modes: tuple[ReadMode, ...] = ("read_n", "readline", "iter")
    for number, (mode, pieces) in enumerate(
        zip(modes, splits(wire, "random", seed=case_seed(case.id), count=3), strict=True)
    ):
        yield f"random#{number}", pieces, mode, SPLIT_SETTLE
    if len(wire) <= BYTEWISE_MAX:
        yield "bytewise", bytewise(wire), "read_n", SPLIT_SETTLE
    if case.id in TWO_PIECE_SAMPLE:
        for pieces in two_piece_splits(wire):
            yield f"split@{len(pieces[0])}", pieces, "read", 0.0


LEADER_WIRE = b"GET /leader?first=1 HTTP/1.1\r\nHost: wsgiserve.test\r\n\r\n"
LEADER = ExpectedRequest("GET", "/leader?first=1", (1, 1), (("HOST", "wsgiserve.test"),), b"")


def run_echo(app: EchoApp, address: Address, case: Case, expect: Expect) -> None:
    requests = expected_requests(case, expect)
    methods = [request.method for request in requests]
    for label, pieces, mode, settle in echo_variants(case):
        app.read_mode = mode
        outcome = run(
            app,
            address,
            f"{label}, {mode}",
            pieces,
            methods,
            responses=None if expect.close else len(requests),
            settle=settle,
        )
        check_echoes(outcome, requests, expect)
    app.read_mode = "read"
    # The same bytes pipelined behind another request on one connection: both answered,
    # in order, and the case framed exactly as when it came first.
    behind = (LEADER, *requests)
    outcome = run(
        app,
        address,
        "pipelined behind another request",
        [LEADER_WIRE + case.wire],
        ["GET", *methods],
        responses=None if expect.close else len(behind),
        settle=SETTLE,
    )
    check_echoes(outcome, behind, expect)


def failure_variants(case: Case) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [case.wire]
    yield "random", next(splits(case.wire, "random", seed=case_seed(case.id)))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case, app: EchoApp, server_for: Callable[[Limits], Address]) -> None:
    expect = expectation(case)
    address = server_for(case.limits)
    if expect.kind is Kind.ECHO:
        run_echo(app, address, case, expect)
        return
    methods = [request.method for request in case.requests or ()]
    # An error closes the connection; a 2xx may leave it open, so stop after one response.
    stop_at = 1 if expect.kind in (Kind.ECHO_OR_ERROR, Kind.ASTERISK) else None
    for label, pieces in failure_variants(case):
        outcome = run(
            app, address, label, pieces, methods, half_close=expect.half_close, responses=stop_at
        )
        if expect.kind is Kind.ERROR:
            check_error(outcome, expect.statuses, optional_response=expect.optional_response)
        elif expect.kind is Kind.BODY_ERROR:
            check_body_error(outcome)
        elif expect.kind is Kind.ECHO_OR_ERROR:
            if outcome.responses and outcome.responses[0].status // 100 == 2:
                check_echoes(outcome, expected_requests(case, expect), expect)
            else:
                check_error(outcome, expect.statuses, optional_response=expect.optional_response)
        else:  # Kind.ASTERISK
            statuses = outcome.responses.statuses()
            assert [status // 100 for status in statuses] == [2], str(outcome)
            if outcome.started:
                check_echoes(outcome, expected_requests(case, expect), expect)


def test_valid_099_with_true_content_length(
    app: EchoApp, server_for: Callable[[Limits], Address]
) -> None:
    """README §2.7: valid/099 declares 17914 body bytes but carries 8599. Besides the
    truncated-body run TRIAGE asks for, send it with the true length: a full echo."""
    case = CASE_BY_ID["valid/099"]
    assert case.requests is not None
    head, _, body = case.wire.partition(b"\r\n\r\n")
    declared = b"Content-Length: 17914"
    assert declared in head
    fixed = head.replace(declared, b"Content-Length: %d" % len(body)) + b"\r\n\r\n" + body
    original = case.requests[0]
    assert original.body == body, "the .py body should be the bytes the file carries"
    headers = tuple(
        (name, str(len(body)) if name == "CONTENT-LENGTH" else value)
        for name, value in original.headers
    )
    request = replace(original, headers=headers)
    address = server_for(case.limits)
    expect = Expect(Kind.ECHO)
    modes: tuple[ReadMode, ...] = ("read", "read_n", "readline", "iter")
    for number, mode in enumerate(modes):
        app.read_mode = mode
        pieces = [fixed] if number == 0 else next(splits(fixed, "random", seed=number))
        outcome = run(app, address, f"{mode}", pieces, ["POST"], responses=1)
        check_echoes(outcome, [request], expect)
    app.read_mode = "read"


def test_tables_name_real_cases() -> None:
    """Every table entry names a corpus case, and every case has an expectation."""
    assert len(CASES) == 137, "README §2: 63 valid + 74 invalid cases"
    named = set(PROXY_PROTOCOL) | set(DEVIATIONS) | set(HAND_WRITTEN)
    assert named <= set(CASE_BY_ID)
    for case in CASES:
        expectation(case)
