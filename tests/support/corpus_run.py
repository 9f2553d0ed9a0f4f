"""One corpus exchange, observed from both ends, and the checks the corpus modules share.

`run` sends a case's bytes to a live server (via `rawhttp.exchange`) and pairs what the
client saw with the calls the `EchoApp` recorded meanwhile, as an `Outcome`. The timing
knobs differ per corpus, so `run` takes them as keyword arguments; each module binds its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.support.echo_app import Call, EchoApp
from tests.support.rawhttp import RawResult, ResponseList, exchange, parse_responses

Address = tuple[str, int]

APP_IDLE_TIMEOUT = 5.0  # seconds for every app call to finish once the connection is done


def clip(data: bytes, limit: int = 400) -> str:
    """``repr`` of at most `limit` bytes of `data`, noting the full length when cut."""
    text = repr(data[:limit])
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


@dataclass(frozen=True)
class Outcome:
    """An exchange as the client saw it, plus the app calls it caused.

    `show_pieces` adds the number of sends to the label in ``str()``; `clip_limit` is how
    many bytes of what was sent and received ``str()`` shows.
    """

    label: str
    pieces: int  # how many sends the bytes went out in
    sent: bytes
    raw: RawResult
    responses: ResponseList
    started: int  # app calls that began during the exchange
    calls: list[Call]  # app calls that finished during the exchange
    show_pieces: bool = field(default=False, compare=False)
    clip_limit: int = field(default=400, compare=False)

    def __str__(self) -> str:
        head = f"{self.label}, {self.pieces} piece(s)" if self.show_pieces else self.label
        return (
            f"[{head}] sent {clip(self.sent, self.clip_limit)}; "
            f"got {clip(self.raw.data, self.clip_limit)} "
            f"(closed={self.raw.closed}, reset={self.raw.reset}, "
            f"send_error={self.raw.send_error}); statuses={self.responses.statuses()} "
            f"truncated={self.responses.truncated} parse_error={self.responses.error}; "
            f"app calls started={self.started}, input errors="
            f"{[call.input_error for call in self.calls]}"
        )


def run(
    app: EchoApp,
    address: Address,
    label: str,
    pieces: list[bytes],
    methods: Sequence[str],
    *,
    idle_timeout: float,
    settle: float,
    half_close: bool = False,
    responses: int | None = None,
    show_pieces: bool = False,
    clip_limit: int = 400,
) -> Outcome:
    """Send `pieces`; read until EOF, `idle_timeout` seconds of silence, or `settle` seconds
    after `responses` complete responses arrived. `methods` frame the responses (HEAD)."""
    assert app.wait_idle(APP_IDLE_TIMEOUT), "an app call from an earlier case is still running"
    started, finished = app.started, len(app.calls)

    def enough(data: bytes) -> bool:
        assert responses is not None
        return len(parse_responses(data, methods, eof=False)) >= responses

    raw = exchange(
        address,
        pieces,
        half_close=half_close,
        idle_timeout=idle_timeout,
        until=enough if responses is not None else None,
        settle=settle,
    )
    idle = app.wait_idle(APP_IDLE_TIMEOUT)
    outcome = Outcome(
        label,
        len(pieces),
        b"".join(pieces),
        raw,
        parse_responses(raw.data, methods, eof=raw.closed),
        app.started - started,
        app.calls[finished:],
        show_pieces=show_pieces,
        clip_limit=clip_limit,
    )
    assert idle, f"an app call never finished (stuck in wsgi.input?): {outcome}"
    return outcome


def case_seed(case_id: str) -> int:
    """A stable random seed for splitting the case named `case_id`."""
    return zlib.crc32(case_id.encode())


# -- Shared checks -----------------------------------------------------------------------------


def split_values(environ: dict[str, str]) -> dict[str, list[str]]:
    """`environ` normalised for comparison: J22, repeated fields may be joined with "," or
    ", ", so compare the pieces; PEP 3333, an empty CONTENT_TYPE/LENGTH may be absent."""
    normal: dict[str, list[str]] = {}
    for key, value in environ.items():
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value == "":
            continue
        normal[key] = [v.strip() for v in value.split(",")] if key.startswith("HTTP_") else [value]
    return normal


def is_field(key: str) -> bool:
    """Whether environ `key` carries a request header field."""
    return key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")


def is_padded(value: str) -> bool:
    """Whether a field value kept leading or trailing whitespace (RFC 9110 §5.5)."""
    return value != value.strip(" \t")


def check_error(
    outcome: Outcome, statuses: frozenset[int], *, optional_response: bool = False
) -> None:
    """One error response with a status in `statuses`, the app not called, the connection
    closed; with `optional_response`, a bare close is also fine (J19)."""
    assert outcome.started == 0, f"the app was called: {outcome}"
    assert outcome.raw.closed, f"connection left open after the error: {outcome}"
    if optional_response and not outcome.raw.data:
        return
    got = outcome.responses.statuses()
    assert len(got) == 1, f"expected one response: {outcome}"
    assert not outcome.responses.trailing, f"bytes after the error response: {outcome}"
    assert got[0] in statuses, f"expected {sorted(statuses)}: {outcome}"


def check_body_error(outcome: Outcome, *, second: str = "a second request?") -> None:
    """J18: no 2xx, the app (if called) saw wsgi.input raise, the connection closed.
    `second` is the failure hint for a second response."""
    assert outcome.raw.closed, f"connection left open after a body error: {outcome}"
    statuses = outcome.responses.statuses()
    assert len(statuses) <= 1, f"more than one response ({second}): {outcome}"
    assert not outcome.responses.trailing, f"bytes after the response: {outcome}"
    assert outcome.started <= 1, f"more than one app call: {outcome}"
    assert all(call.input_error is not None for call in outcome.calls), (
        f"J18: the app read a body that was never completed without an error: {outcome}"
    )
    allowed = {400} | ({500} if outcome.calls else set())  # 500: the echo app's own answer
    assert set(statuses) <= allowed, f"J18: expected 400, or abort: {outcome}"
