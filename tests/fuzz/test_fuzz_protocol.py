"""Fuzzing the request parser of a live server (issue 4 item 7), with hypothesis.

Requests are built from parts (methods, targets, versions, headers including Content-Length
and Transfer-Encoding variants, plain and chunked bodies, pipelines of up to three), then
mutated byte by byte (inserts, deletes, replacements, CR/LF/NUL/space injections) and sent
in random fragments on a fresh connection, which is then half-closed. Pure random bytes go
the same way. For every connection:

1. the server ends it within a bound (it answers what it accepted, then closes) and never
   logs an internal error, nor lets an exception reach the event loop;
2. what comes back parses as HTTP/1.1 responses, one per request the app saw plus at most
   one refusal;
3. the app never sees a request the reference would refuse. The reference is h11 in server
   mode, fed the same bytes: the n-th request the app saw must be the n-th request h11
   parsed, with the same method, target, version, header fields and body. We may refuse
   more than h11 (httptools is stricter in places); we must never accept more.

`KNOWN_DIFFERENCES` lists where the two legitimately part ways and how the comparison
allows for it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis.errors import InvalidArgument

import wsgiserve
from tests.support.rawhttp import exchange, parse_responses

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

TIMEOUTS = {"header_timeout": 2.0, "body_timeout": 2.0, "keep_alive": 2.0}
# No connection may outlive every timeout of the server put together, plus a margin.
HANG_BOUND = sum(TIMEOUTS.values()) + 3.0  # seconds
SERVER_SETTINGS: dict[str, Any] = {
    **TIMEOUTS,
    "threads": 4,
    "forwarded_allow_ips": "",  # no TCP peer is trusted: X-Forwarded-* never rewrite
}

# (difference, why it is legitimate, how the comparison allows for it)
KNOWN_DIFFERENCES: tuple[tuple[str, str, str], ...] = (
    (
        "empty lines before a request-line",
        "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request-line; "
        "llhttp skips any CR and LF bytes there, h11 refuses them",
        "the reference drops leading CR and LF bytes before each request",
    ),
    (
        "runs of spaces in the request-line",
        "RFC 9112 §3 lets a recipient parse the request-line on whitespace boundaries; llhttp "
        "accepts several SP between its three parts (never before or after them), h11 only one",
        "the reference collapses runs of SP between the parts of each request-line",
    ),
    (
        "HTTP/1.0 keep-alive",
        "h11 closes after every HTTP/1.0 request; RFC 9112 §9.3 and Appendix C.2.2 let a 1.0 "
        "client ask to keep the connection with `Connection: keep-alive`, which we honour",
        "the reference parses on after a 1.0 request that asked for keep-alive",
    ),
    (
        "the app runs before its body has arrived",
        "PEP 3333 streams `wsgi.input`: the app is called once the head is complete; a body "
        "that turns out malformed or cut short makes `wsgi.input` raise instead",
        "a call whose body read raised must match a head h11 accepted, and what it read must "
        "be a prefix of the body h11 parsed; only a clean read must match a whole request",
    ),
    (
        "Upgrade",
        "we decline every Upgrade (RFC 9110 §7.8), frame its body by Content-Length and close "
        "after answering; h11 pauses, waiting for the server to accept or decline",
        "the reference stops after a request that asks to upgrade (`Connection: upgrade`)",
    ),
    (
        "normalised fields",
        "h11 folds a repeated identical Content-Length into one and lower-cases "
        "Transfer-Encoding; the environ keeps what was sent",
        "both fields are compared after the same normalisation",
    ),
    (
        "the environ is CGI-shaped",
        "PEP 3333 / CGI: names with `_` are dropped (RFC 9110 §17.10), repeats are joined, an "
        "absolute-form target's authority replaces Host (RFC 9112 §3.2.2), and forwarding "
        "fields from an untrusted peer are removed",
        "the reference's fields are mapped to environ keys by the same rules",
    ),
)

PROXY_KEYS = frozenset(
    {
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PORT",
        "HTTP_FORWARDED",
    }
)


# -- the app and the reference -----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the app saw it."""

    method: str
    target: str  # RAW_URI: the request-target as sent
    protocol: str
    fields: dict[str, str]  # HTTP_*, CONTENT_TYPE, CONTENT_LENGTH
    body: bytes
    input_error: str | None


class RecordingApp:
    """Reads the whole body, records what it saw, answers 200 with a short body."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._seen: list[Seen] = []

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        with self._cond:
            self._active += 1
        try:
            body = bytearray()
            error: str | None = None
            stream = environ["wsgi.input"]
            try:
                while piece := stream.read(4096):
                    body += piece
            except Exception as exc:  # the point: record what wsgi.input raised
                error = f"{type(exc).__name__}: {exc}"
            fields = {
                key: value
                for key, value in environ.items()
                if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
            }
            seen = Seen(
                environ["REQUEST_METHOD"],
                environ["RAW_URI"],
                environ["SERVER_PROTOCOL"],
                fields,
                bytes(body),
                error,
            )
            with self._cond:
                self._seen.append(seen)
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def drain(self, timeout: float) -> list[Seen]:
        """Wait until no call is running (at most `timeout` s); return and forget the calls."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._active == 0, timeout), "the app hangs"
            seen, self._seen = self._seen, []
            return seen


@dataclass(frozen=True)
class Parsed:
    """One request as h11 parsed it; `complete` when its whole body arrived."""

    method: str
    target: str
    protocol: str
    fields: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool


_SPACE_RUNS = re.compile(rb"(?<=[^ ]) {2,}(?=[^ ])")


def reference_parse(data: bytes) -> list[Parsed]:
    """The requests h11 in server mode finds in `data` followed by EOF, in order.

    Parsing stops at the first error, at a request cut short, and after a request that
    ends the connection. One h11 connection per request, so the allowances of
    `KNOWN_DIFFERENCES` (leading empty lines, 1.0 keep-alive) can be applied between them.
    """
    parsed: list[Parsed] = []
    rest = data
    while rest := rest.lstrip(b"\r\n"):
        line, newline, after = rest.partition(b"\n")
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        conn.receive_data(_SPACE_RUNS.sub(b" ", line) + newline + after)
        conn.receive_data(b"")
        request: h11.Request | None = None
        body = bytearray()
        complete = False
        with contextlib.suppress(h11.RemoteProtocolError):
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    complete = True
                    break
                else:  # NEED_DATA, PAUSED or ConnectionClosed
                    break
        if request is None:
            break
        parsed.append(
            Parsed(
                request.method.decode("latin-1"),
                request.target.decode("latin-1"),
                "HTTP/" + request.http_version.decode("latin-1"),
                list(request.headers.raw_items()),
                bytes(body),
                complete,
            )
        )
        if not complete or not _persists(request):
            break
        rest = bytes(conn.trailing_data[0])
    return parsed


def _tokens(request: h11.Request, name: bytes) -> set[bytes]:
    return {
        token.strip().lower()
        for field, value in request.headers
        if field == name
        for token in value.split(b",")
    }


def _persists(request: h11.Request) -> bool:
    """Whether the connection goes on after `request` (RFC 9112 §9.3), as we read it."""
    connection = _tokens(request, b"connection")
    if b"close" in connection:
        return False
    if b"upgrade" in connection and any(name == b"upgrade" for name, _ in request.headers):
        return False
    return request.http_version == b"1.1" or b"keep-alive" in connection


def environ_fields(parsed: Parsed) -> dict[str, str]:
    """The reference's fields mapped to environ keys (see `KNOWN_DIFFERENCES`)."""
    fields: dict[str, str] = {}
    for raw_name, raw_value in parsed.fields:
        if b"_" in raw_name:
            continue
        key = raw_name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        if key in fields:
            fields[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            fields[key] = value
    if not parsed.target.startswith(("/", "*")):
        fields.pop("HTTP_HOST", None)  # the absolute-form authority replaces it
    return normalised(fields)


def normalised(fields: dict[str, str]) -> dict[str, str]:
    out = {key: value for key, value in fields.items() if key not in PROXY_KEYS}
    if "CONTENT_LENGTH" in out:
        values = {part.strip() for part in out["CONTENT_LENGTH"].split(",")}
        out["CONTENT_LENGTH"] = ",".join(sorted(values))
    if "HTTP_TRANSFER_ENCODING" in out:
        out["HTTP_TRANSFER_ENCODING"] = out["HTTP_TRANSFER_ENCODING"].lower()
    return out


def check_against_reference(data: bytes, seen: list[Seen]) -> None:
    """Property 3: every call of the app matches the request h11 parsed in its place."""
    parsed = reference_parse(data)
    assert len(seen) <= len(parsed), (
        f"the app saw {len(seen)} request(s), the reference accepts {len(parsed)}: "
        f"{seen[len(parsed)]}"
    )
    for index, (call, ref) in enumerate(zip(seen, parsed, strict=False)):
        where = f"request {index}"
        assert (call.method, call.target, call.protocol) == (
            ref.method,
            ref.target,
            ref.protocol,
        ), where
        fields = normalised(call.fields)
        if not ref.target.startswith(("/", "*")):
            fields.pop("HTTP_HOST", None)  # the absolute-form authority's, checked by environ
        assert fields == environ_fields(ref), where
        if call.input_error is None:
            assert ref.complete, f"{where}: the app read a whole body h11 did not accept"
            assert call.body == ref.body, where
        else:
            assert ref.body.startswith(call.body), where


# -- the harness -------------------------------------------------------------------------------


class ErrorRecords(logging.Handler):
    """Collects ERROR records, and any record that reports an internal error."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._records_lock = threading.Lock()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or "internal error" in record.getMessage():
            with self._records_lock:
                self.records.append(record)

    def drain(self) -> list[str]:
        with self._records_lock:
            records, self.records = self.records, []
        return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records]


# The server's own logger and asyncio's, where the loop reports exceptions that escaped
# a callback (a Protocol method, a call_soon_threadsafe hop).
WATCHED_LOGGERS = ("wsgiserve.error", "asyncio")


class Harness:
    """One live server with a `RecordingApp`, and the checks every connection must pass."""

    def __init__(
        self, server: wsgiserve.BackgroundServer, app: RecordingApp, errors: ErrorRecords
    ) -> None:
        self.server = server
        self.app = app
        self.errors = errors
        self.connections = 0

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Harness]:
        app = RecordingApp()
        errors = ErrorRecords()
        loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.addHandler(errors)
            if logger.getEffectiveLevel() > logging.ERROR:
                logger.setLevel(logging.ERROR)
        try:
            with wsgiserve.background_server(app, **SERVER_SETTINGS) as server:
                yield cls(server, app, errors)
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(errors)
                logger.setLevel(level)

    def check(self, data: bytes, cuts: Iterable[float]) -> None:
        """Send `data` cut at the `cuts` (fractions of its length), half-close, check all."""
        self.connections += 1
        self.app.drain(HANG_BOUND)
        result = exchange(
            self.server.address, fragments(data, cuts), half_close=True, idle_timeout=HANG_BOUND
        )
        seen = self.app.drain(HANG_BOUND)
        errors = self.errors.drain()
        assert errors == [], "the server logged an internal error"
        assert result.closed, f"the connection outlived every timeout ({HANG_BOUND:g} s)"
        methods = [call.method for call in seen]
        # A refusal after them answers a request the app never saw: a HEAD's has no body.
        responses = parse_responses(result.data, methods)
        if responses.error is not None or responses.truncated:
            responses = parse_responses(result.data, [*methods, "HEAD"])
        assert responses.error is None, responses.error
        assert not responses.truncated, "a response was cut short"
        assert len(seen) <= len(responses) <= len(seen) + 1, (len(seen), responses.statuses())
        assert all(r.status == 200 for r in responses[: len(seen)]), responses.statuses()
        check_against_reference(data, seen)
        refusal = responses.statuses()[len(seen) :]
        with contextlib.suppress(InvalidArgument):  # outside a hypothesis test (run.py, seeds)
            event(f"app calls: {len(seen)}, refusal: {refusal[0] if refusal else None}")

    def assert_serves(self) -> None:
        """A well-formed request on a fresh connection is answered."""
        self.check(b"GET /after HTTP/1.1\r\nHost: fuzz\r\n\r\n", [])


def fragments(data: bytes, cuts: Iterable[float]) -> list[bytes]:
    points = sorted({int(cut * len(data)) for cut in cuts} - {0, len(data)})
    bounds = [0, *points, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)] or [b""]


# -- strategies --------------------------------------------------------------------------------
# Each part has a tame pool (what a real client sends) and a wild one (what it should not).
# A request is tame with odds of four in five, so that most reach the app and the comparison
# with the reference has something to compare; mutations then break some of those.

TAME_METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"]
WILD_METHODS = [b"CONNECT", b"TRACE", b"get", b"PRI", b"FOO", b"G\x00T", b""]
PATH_CHARS = st.sampled_from(list(b"abcXYZ019-._~!$&'()*+,;=:@/%?"))
TAME_TARGETS = st.one_of(
    st.sampled_from([b"/", b"/a/b?c=d&e", b"/%41%2f", b"http://example.com/x?y", b"*"]),
    st.lists(PATH_CHARS, max_size=12).map(lambda chars: b"/" + bytes(chars)),
)
WILD_TARGETS = st.one_of(
    st.sampled_from(
        [
            b"http://user@host/",
            b"example.com:443",
            b"/a#frag",
            b"//double",
            b"/\xc3\xa9",
            b"/a b",
            b"",
            b"/%zz",
            b"/?" + b"q" * 300,
        ]
    ),
    st.binary(max_size=12).map(lambda b: b"/" + b),
)
TAME_VERSIONS = [b"HTTP/1.1"] * 3 + [b"HTTP/1.0"]
WILD_VERSIONS = [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11", b""]
TAME_NAMES = [
    b"X-A",
    b"Cookie",
    b"Content-Type",
    b"Connection",
    b"Expect",
    b"Upgrade",
    b"Accept",
    b"X-Forwarded-For",
    b"Forwarded",
    b"Trailer",
    b"X_Under",
    b"Host",
]
WILD_NAMES = [b"Bad Name", b"", b"X-\xff", b"X-A\x00", b"Host "]
TAME_VALUES = [
    b"example.com",
    b"x",
    b"close",
    b"keep-alive",
    b"upgrade",
    b"Upgrade, close",
    b"websocket",
    b"100-continue",
    b"a=1; b=2",
    b"text/plain",
    b"10.0.0.1",
    b"",
    b"a\tb",
    b"[::1]:80",
    b"host:8080",
    b"\xe9t\xe9",
]
WILD_VALUES = st.one_of(
    st.sampled_from([b"  padded  ", b"bad host", b"a\x00b", b"a\rb", b"\x7f", b"x\r\n y"]),
    st.binary(max_size=10),
)
BODIES = st.one_of(st.just(b""), st.binary(max_size=40), st.just(b"0\r\n\r\n"))
BAD_CHUNKS = [
    b"zz\r\n",
    b"5\r\nab\r\n0\r\n\r\n",
    b"1\nx\n0\n\n",
    b"ffffffffffffffffff\r\n",
    b"1\r\nxy\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"5;\x00\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: y\n\r\n",
    b"5\r\r\nhello\r\n0\r\n\r\n",
]
TAME_FRAMINGS = ["none", "cl", "te", "te-case"]
WILD_FRAMINGS = [
    "cl-short",
    "cl-long",
    "cl-twice",
    "cl-conflict",
    "cl-list",
    "cl-plus",
    "cl-space",
    "cl-hex",
    "cl-negative",
    "te-list",
    "te-not-last",
    "te-twice",
    "te-space",
    "te+cl",
    "te-identity",
    "te-bad-chunk",
    "cl-zeros",
    "cl-nul",
    "cl-empty",
    "cl-vt",
    "te-vt",
    "te-quoted",
    "te-comma",
    "te-empty-item",
    "te-fold",
]


def pick(wild: bool, tame: list[bytes], extra: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(tame + extra) if wild else st.sampled_from(tame)


@st.composite
def chunked(draw: st.DrawFn, body: bytes, wild: bool) -> bytes:
    """`body` in chunked coding, with random chunk sizes, extensions, hex case and trailers."""
    out = bytearray()
    start = 0
    while start < len(body):
        size = draw(st.integers(1, max(1, len(body) - start)))
        piece = body[start : start + size]
        start += size
        digits = f"{len(piece):x}"
        digits = draw(st.sampled_from([digits, digits.upper(), "0" + digits]))
        ext = draw(pick(wild, [b"", b";a=b", b';q="x"'], [b" ;bad", b";"]))
        out += digits.encode() + ext + b"\r\n" + piece + b"\r\n"
    out += draw(st.sampled_from([b"0\r\n", b"000\r\n", b"0;e=1\r\n"]))
    out += draw(pick(wild, [b"", b"X-Trailer: t\r\n"], [b"Content-Length: 9\r\n", b"bad\r\n"]))
    return bytes(out + b"\r\n")


@st.composite
def framed(draw: st.DrawFn, wild: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Framing fields and the body bytes they announce (or, when wild, misannounce)."""
    body = draw(BODIES)
    framing = draw(st.sampled_from(TAME_FRAMINGS + WILD_FRAMINGS if wild else TAME_FRAMINGS))
    length = str(len(body)).encode()
    if framing == "none":
        return [], body if wild else b""
    if framing.startswith("cl"):
        value = {
            "cl": length,
            "cl-short": str(max(0, len(body) - 2)).encode(),
            "cl-long": str(len(body) + 3).encode(),
            "cl-list": length + b", " + length,
            "cl-plus": b"+" + length,
            "cl-space": b" " + length + b" ",
            "cl-hex": b"0x1",
            "cl-negative": b"-1",
            "cl-twice": length,
            "cl-conflict": length,
            "cl-zeros": b"00" + length,
            "cl-nul": length + b"\x00",
            "cl-empty": b"",
            "cl-vt": b"\x0b" + length,
        }[framing]
        fields = [(b"Content-Length", value)]
        if framing == "cl-twice":
            fields.append((b"Content-Length", length))
        elif framing == "cl-conflict":
            fields.append((b"Content-Length", str(len(body) + 1).encode()))
        return fields, body
    encoded = draw(chunked(body, wild))
    coding = {
        "te": b"chunked",
        "te-case": b"Chunked",
        "te-list": b"gzip, chunked",
        "te-not-last": b"chunked, gzip",
        "te-twice": b"chunked",
        "te-space": b" chunked ",
        "te+cl": b"chunked",
        "te-identity": b"identity",
        "te-bad-chunk": b"chunked",
        "te-vt": b"\x0bchunked",
        "te-quoted": b'"chunked"',
        "te-comma": b"chunked,",
        "te-empty-item": b", chunked",
        "te-fold": b"\r\n chunked",
    }[framing]
    fields = [(b"Transfer-Encoding", coding)]
    if framing == "te-twice":
        fields.append((b"Transfer-Encoding", b"chunked"))
    elif framing == "te+cl":
        fields.append((b"Content-Length", length))
    elif framing == "te-bad-chunk":
        encoded = draw(st.sampled_from(BAD_CHUNKS))
    return fields, encoded


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request built from parts; tame (well-formed) four times in five."""
    wild = draw(st.integers(0, 4)) == 0
    method = draw(pick(wild, TAME_METHODS, WILD_METHODS))
    target = draw(st.one_of(TAME_TARGETS, WILD_TARGETS) if wild else TAME_TARGETS)
    version = draw(pick(wild, TAME_VERSIONS, WILD_VERSIONS))
    fields: list[tuple[bytes, bytes]] = []
    if not wild or draw(st.booleans()):
        fields.append((b"Host", b"fuzz.example"))
    names = pick(wild, TAME_NAMES, WILD_NAMES)
    values = (
        st.one_of(st.sampled_from(TAME_VALUES), WILD_VALUES)
        if wild
        else st.sampled_from(TAME_VALUES)
    )
    fields += draw(st.lists(st.tuples(names, values), max_size=4))
    framing, body = draw(framed(wild))
    fields += framing
    fields = draw(st.permutations(fields))
    separator = draw(pick(wild, [b": ", b":", b":\t"], [b" : ", b"\t:"]))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + separator + value + b"\r\n" for name, value in fields)
    return head + b"\r\n" + body


INJECTIONS = st.one_of(
    st.sampled_from(
        [
            b"\r",
            b"\n",
            b"\r\n",
            b"\x00",
            b" ",
            b"\t",
            b":",
            b"\x7f",
            b"\xff",
            b"0",
            b"a",
            b"\r\n\r\n",
            b",",
            b";",
        ]
    ),
    st.binary(min_size=1, max_size=3),
)
MUTATION = st.tuples(
    st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1), INJECTIONS, st.integers(1, 4)
)


def mutate(data: bytes, mutations: list[tuple[str, float, bytes, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, injected, span in mutations:
        at = min(int(where * len(out)), len(out))
        if kind == "insert":
            out[at:at] = injected
        elif kind == "delete":
            del out[at : at + span]
        else:
            out[at : at + len(injected)] = injected
    return bytes(out)


@st.composite
def mutated_pipelines(draw: st.DrawFn) -> bytes:
    """Up to three requests on one connection, then (half the time) byte-level mutations."""
    pipeline = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    if draw(st.integers(0, 5)) == 0:
        pipeline = b"\r\n" + pipeline
    count = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    return mutate(pipeline, draw(st.lists(MUTATION, min_size=count, max_size=count)))


RANDOM_BYTES = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from([b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: x\r\n"]),
        st.binary(max_size=100),
    ).map(b"".join),
)
CUTS = st.lists(st.floats(0, 1), max_size=6)

# CI: deterministic (derandomize, no example database), bounded, never a deadline per example.
CI_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with Harness.running() as running:
        yield running


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n"
        b"T: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=[
        "simple",
        "leading-crlf",
        "http10-keep-alive",
        "chunked-pipeline",
        "cut-short",
        "bad-chunk",
    ],
)
def test_reference_agrees_on_known_cases(harness: Harness, data: bytes) -> None:
    """The checks themselves, on hand-picked inputs, byte by byte as well as whole."""
    harness.check(data, [])
    harness.check(data, [index / len(data) for index in range(1, len(data))])


UNFINISHED = [
    b"",
    b"GET / HT",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",  # answered, then idle on keep-alive
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHo",
]


def test_unfinished_requests_are_ended_by_the_timeouts(harness: Harness) -> None:
    """Without a half-close it is the server's timeouts that must end each connection."""
    with concurrent.futures.ThreadPoolExecutor(len(UNFINISHED)) as pool:
        results = list(
            pool.map(
                lambda data: exchange(harness.server.address, data, idle_timeout=HANG_BOUND),
                UNFINISHED,
            )
        )
    harness.app.drain(HANG_BOUND)
    assert harness.errors.drain() == []
    for data, result in zip(UNFINISHED, results, strict=True):
        assert result.closed, data
        assert parse_responses(result.data).error is None, data


def test_absolute_form_without_host_is_refused(harness: Harness) -> None:
    """RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    HTTP/1.1 request message that lacks a Host header field" — an absolute-form target does
    not stand in for it (h11 refuses it too; the fuzzer found us accepting it)."""
    result = exchange(
        harness.server.address,
        b"GET http://example.com/x HTTP/1.1\r\n\r\n",
        half_close=True,
        idle_timeout=HANG_BOUND,
    )
    assert harness.app.drain(HANG_BOUND) == []
    assert parse_responses(result.data).statuses() == [400]


@CI_SETTINGS
@given(data=mutated_pipelines(), cuts=CUTS)
def test_mutated_requests(harness: Harness, data: bytes, cuts: list[float]) -> None:
    harness.check(data, cuts)


@CI_SETTINGS
@given(data=RANDOM_BYTES, cuts=CUTS)
def test_random_bytes(harness: Harness, data: bytes, cuts: list[float]) -> None:
    harness.check(data, cuts)


def test_server_survives_the_fuzzing(harness: Harness) -> None:
    """Runs after the properties (file order): the server still answers, the app still runs."""
    assert harness.connections > 0
    harness.assert_serves()
