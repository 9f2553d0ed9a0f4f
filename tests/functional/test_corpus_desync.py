"""Black-box request-smuggling checks from AWS http-desync-guardian, every case, real sockets.

The corpus lives outside the repository (``../shared/corpus/http-desync-guardian``) and is
used by path. Each case is serialised per README §4.3, followed on the same connection by a
canary request, and judged by its tier, as an origin server (README §4.3 step 4):

* **Severe**: 400, the app never called, the connection closed, the canary never answered.
* **Ambiguous**: 400 and close, or exactly one 2xx echo of the body we framed, then close;
  the canary is never answered.
* **Compliant**: a 2xx echo, then the canary answered too.
* **Acceptable**: the Compliant outcome, or the Severe one.

Where wsgiserve is stricter than the corpus (it predates RFC 9110/9112, and judges a field
list rather than bytes), `DEVIATIONS` gives the outcome we expect and the RFC reason.

One server for the module, one echo app recording every call (README §1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import wsgiserve
from tests.functional.corpus_desync import (
    CANARY_ENVIRON,
    CORPUS,
    Case,
    expected_environ,
    load_cases,
)
from tests.support import corpus_run
from tests.support.corpus_run import Address, case_seed, is_field, is_padded, split_values
from tests.support.corpus_run import Outcome as Exchange
from tests.support.echo_app import EchoApp, decode_echo
from tests.support.rawhttp import splits

if not CORPUS.is_dir():
    # shared/ lies beside every checkout and CI clone: a missing corpus is a broken setup,
    # not a reason to pass without testing.
    raise RuntimeError(
        f"http-desync-guardian corpus not found at {CORPUS.resolve()} (expected beside the "
        "repository, in shared/corpus/http-desync-guardian/tests)",
    )

IDLE_TIMEOUT = 1.0  # seconds of silence that end a read (the server keeps alive 5 s)
SETTLE = 0.1  # seconds to keep reading once the expected responses are in
SPLIT_MAX = 4096  # cases up to this size are also sent in random pieces


class Outcome(enum.Enum):
    """What a case must produce (the tier's rule, or a deviation's)."""

    REJECT = "one error response, app not called, close; the canary never answered"
    ECHO_THEN_CLOSE = "reject, or one 2xx echo of the framed body then close (Ambiguous)"
    ECHO_AND_CANARY = "a 2xx echo, then the canary's 2xx echo (Compliant)"
    EITHER = "ECHO_AND_CANARY or REJECT (Acceptable)"


@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    statuses: frozenset[int] = frozenset({400})


TIERS = {
    "Severe": Expect(Outcome.REJECT),
    "Ambiguous": Expect(Outcome.ECHO_THEN_CLOSE),
    "Compliant": Expect(Outcome.ECHO_AND_CANARY),
    "Acceptable": Expect(Outcome.EITHER, frozenset({400, 505})),
}

_REJECT_400 = Expect(Outcome.REJECT)
_REJECT_501 = Expect(Outcome.REJECT, frozenset({501}))

# Where we expect something other than the tier's rule, and why. Compliant cases we reject:
# the first four are the RFC 9112 cases README §4.3 lists (httptools already refuses them);
# the rest are wsgiserve's policy of decoding only a lone "chunked" (J6/J7). Ambiguous cases
# we answer and keep alive follow below.
DEVIATIONS: dict[str, tuple[Expect, str]] = {
    "desync/rfc-compliant.yaml/Transfer-Encoding with a param: chunked;custom_param": (
        _REJECT_400,
        "RFC 9112 §7.1: chunked defines no parameters; their presence SHOULD be treated as "
        "an error (README §4.3).",
    ),
    "desync/more-compliant-tests.yaml/TE with custom parameters OK": (
        _REJECT_400,
        "RFC 9112 §7.1, as above (README §4.3).",
    ),
    "desync/rfc-compliant.yaml/International in URI": (
        _REJECT_400,
        "J8: raw octets >= 0x80 are not allowed in a request-target (RFC 9112 §3.2 on "
        "RFC 3986); the percent-encoded spelling is the valid one (README §4.3).",
    ),
    "desync/rfc-compliant.yaml/Empty URI": (
        _REJECT_400,
        "RFC 9112 §3: 'GET  HTTP/1.1' has no request-target, so it is not a request-line "
        "(README §4.3).",
    ),
    "desync/rfc-compliant.yaml/Different Transfer-Encoding headers": (
        _REJECT_501,
        "J6/J7, RFC 9112 §6.1: a server that does not understand a transfer coding (gzip, "
        "deflate, compress; identity is no longer defined) SHOULD answer 501.",
    ),
    "desync/rfc-compliant.yaml/Different Transfer-Encoding headers combined": (
        _REJECT_501,
        "J6/J7, RFC 9112 §6.1: as above, as one comma-separated field.",
    ),
    "desync/more-compliant-tests.yaml/Correct TE OK": (
        _REJECT_501,
        "J7, RFC 9112 §6.1: 'gzip, chunked'; wsgiserve will not hand the app gzip bytes.",
    ),
    "desync/more-compliant-tests.yaml/Transfer-Encoding: identity and chunked OK": (
        _REJECT_501,
        "J6/J7, RFC 9112 §6.1: 'deflate, identity, chunked'.",
    ),
    "desync/more-compliant-tests.yaml/"
    + "Multiple transfer encoding headers in a single request OK": (
        _REJECT_501,
        "J6/J7, RFC 9112 §6.1: gzip, deflate, identity, compress, chunked in five fields.",
    ),
}


# Ambiguous cases that wsgiserve frames exactly as the field list declares, so the canary
# behind them is a separate, correctly framed request, answered on the kept-alive connection
# (RFC 9112 §9.3). README §4.3 asks for a close after the echo; we deliberately keep alive.
_FRAMED_AS_DECLARED = Expect(Outcome.ECHO_AND_CANARY)
_NOT_FRAMING = (
    "J5 / RFC 9112 §6.1, §6.2: only the field names Transfer-Encoding and Content-Length "
    "declare framing; this look-alike is an ordinary field (dropped from the environ when "
    "its name has '_', RFC 9110 §17.10), so the request has no body and the canary is the "
    "next request (RFC 9112 §6.3 item 7, §9.3). A server that read it as framing would see "
    "the canary as body, or reject."
)
_GET_HEAD_BODY = (
    "J23 / RFC 9110 §9.3.1, §9.3.2: content in a GET or HEAD has no defined semantics but is "
    "framed like any other body (RFC 9112 §6.3); the app reads exactly the framed bytes and "
    "the canary after them is the next request (RFC 9112 §9.3)."
)
DEVIATIONS.update(
    {
        f"desync/{file}/{name}": (_FRAMED_AS_DECLARED, reason)
        for file, name, reason in (
            ("ambiguous.yaml", "Transfer_Encoding with underscore.", _NOT_FRAMING),
            ("ambiguous.yaml", "Content_Length with underscore.", _NOT_FRAMING),
            ("ambiguous.yaml", "Transfer-Encoding with multiple hyphens", _NOT_FRAMING),
            ("ambiguous.yaml", "Transfer-Encoding with multiple delimiters", _NOT_FRAMING),
            ("ambiguous.yaml", "Get with a body and Content-Length", _GET_HEAD_BODY),
            ("ambiguous.yaml", "Get with a body and Transfer-Encoding", _GET_HEAD_BODY),
            ("ambiguous.yaml", "Head with a body and Content-Length", _GET_HEAD_BODY),
            ("ambiguous.yaml", "Head with a body and Transfer-Encoding", _GET_HEAD_BODY),
            ("real-life-test-cases.yaml", "Has a CL in GET", _GET_HEAD_BODY),
            ("real-life-test-cases.yaml", "Has a TE in GET", _GET_HEAD_BODY),
        )
    }
)


def expectation(case: Case) -> Expect:
    if case.id in DEVIATIONS:
        return DEVIATIONS[case.id][0]
    return TIERS[case.tier]


CASES = load_cases()


# -- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture(scope="module")
def address(app: EchoApp) -> Iterator[Address]:
    with wsgiserve.background_server(app, host="127.0.0.1", port=0, threads=4) as server:
        yield (server.host, server.port)


# -- One exchange ------------------------------------------------------------------------------


def run(app: EchoApp, address: Address, label: str, pieces: list[bytes], method: str) -> Exchange:
    """Send `pieces`; read until EOF, the idle timeout, or shortly after two responses (the
    request's and the canary's) arrived."""
    methods = ["HEAD" if method == "HEAD" else "GET", "GET"]  # h11 needs a valid token
    return corpus_run.run(
        app,
        address,
        label,
        pieces,
        methods,
        idle_timeout=IDLE_TIMEOUT,
        settle=SETTLE,
        responses=2,
        clip_limit=600,
    )


# -- Checks ------------------------------------------------------------------------------------


def check_reject(result: Exchange, case: Case, expect: Expect) -> None:
    assert result.started == 0, f"the app was called: {result}"
    assert result.raw.closed, f"connection left open after the error: {result}"
    statuses = result.responses.statuses()
    assert len(statuses) == 1, f"expected exactly one response (the canary answered?): {result}"
    assert not result.responses.trailing, (
        f"bytes after the error response (content in a response to HEAD breaks RFC 9110 "
        f"§9.3.2 / RFC 9112 §6.3): {result}"
        if case.method == "HEAD"
        else f"bytes after the error response: {result}"
    )
    assert statuses[0] in expect.statuses, f"expected {sorted(expect.statuses)}: {result}"


def check_echo(result: Exchange, case: Case) -> None:
    """The first response is the request's 2xx echo, body exactly what we framed."""
    got = result.responses
    assert got, f"no response: {result}"
    assert got.error is None, f"response bytes are not valid HTTP: {result}"
    assert got[0].status == 200, f"expected a 2xx echo: {result}"
    assert result.calls, f"a 2xx without an app call: {result}"
    call = result.calls[0]
    assert call.input_error is None, f"wsgi.input raised: {result}"
    echo, body = call.echo, call.body
    if case.method != "HEAD":
        echo, body = decode_echo(got[0].body)
    assert split_values(echo) == split_values(expected_environ(case)), (
        f"environ differs: {echo}: {result}"
    )
    padded = {key: value for key, value in echo.items() if is_field(key) and is_padded(value)}
    assert not padded, (
        f"RFC 9110 §5.5: a field value excludes leading and trailing whitespace: {padded}; "
        + str(result)
    )
    assert body == case.content, f"the app read other bytes than we framed: {result}"


def check_canary(result: Exchange) -> None:
    got = result.responses
    assert len(got) == 2, f"expected the request's and the canary's responses: {result}"
    assert got[1].status == 200, f"the canary was not answered: {result}"
    echo, body = decode_echo(got[1].body)
    assert split_values(echo) == split_values(CANARY_ENVIRON), f"canary: {echo}: {result}"
    assert body == b"", str(result)
    assert result.started == 2, f"app calls != 2: {result}"


def check(result: Exchange, case: Case, expect: Expect) -> None:
    ok = result.responses and result.responses[0].status // 100 == 2
    if expect.outcome is Outcome.REJECT or (
        expect.outcome in (Outcome.ECHO_THEN_CLOSE, Outcome.EITHER) and not ok
    ):
        check_reject(result, case, expect)
    elif expect.outcome is Outcome.ECHO_THEN_CLOSE:
        check_echo(result, case)
        assert len(result.responses) == 1, f"Ambiguous: the canary was answered: {result}"
        assert result.started == 1, f"more than one app call: {result}"
        assert result.raw.closed, f"Ambiguous: the connection must close after the echo: {result}"
        assert not result.responses.trailing, f"bytes after the response: {result}"
    else:
        check_echo(result, case)
        check_canary(result)
        assert not result.raw.closed, f"keep-alive connection closed: {result}"


def _variants(case: Case) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [case.wire]
    if len(case.wire) <= SPLIT_MAX:
        yield "random", next(splits(case.wire, "random", seed=case_seed(case.id)))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case, app: EchoApp, address: Address) -> None:
    expect = expectation(case)
    for label, pieces in _variants(case):
        check(run(app, address, label, pieces, case.method), case, expect)


def test_tables_name_real_cases() -> None:
    """Every deviation names a corpus case; the corpus has the size README §0 gives."""
    assert len(CASES) == 159, "README: 159 request descriptions"
    ids = {case.id for case in CASES}
    assert len(ids) == len(CASES), "case ids must be unique"
    assert set(DEVIATIONS) <= ids
    assert {case.tier for case in CASES} <= set(TIERS)
    assert all(CASE_BY_ID[case_id].tier in ("Compliant", "Ambiguous") for case_id in DEVIATIONS)


CASE_BY_ID = {case.id: case for case in CASES}
