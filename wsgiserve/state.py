"""Pure: the states of a connection, and the timeout rules as a function of them.

Two enums, in the manner of h11's "ours" and "theirs": `Reading` says what the
connection expects from the client, `Closing` how far it is from closed. Only
`connection.py` assigns them. `timer_action` holds every timeout rule: given the
state, the time stamps and the limits, it says what is due now. It does no I/O
and reads no clock, so each rule is unit-tested with plain numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

LINGER_SECONDS = 2.0  # how long a closing connection reads and drops what still arrives


class Reading(enum.Enum):
    """What the connection is reading now."""

    IDLE = "idle"  # waiting for the first byte of a request (a fresh or kept-alive connection)
    HEAD = "head"  # part of a request head arrived
    BODY = "body"  # the body of a request taken in is arriving
    DRAINING = "draining"  # the response is out; the rest of its unread body is dropped
    STOPPED = "stopped"  # no further request will be read (close, EOF, error)
    LINGERING = "lingering"  # after our FIN: reading and dropping until the client closes


class Closing(enum.Enum):
    """How far the connection is from closed."""

    OPEN = "open"
    CLOSING = "closing"  # transport.close() asked: the buffered response is flushing
    CLOSED = "closed"  # connection_lost, or aborted


class Action(enum.Enum):
    """What a timer asks of the connection; NOTHING almost always."""

    NOTHING = "nothing"
    CLOSE = "close"  # close quietly: an idle connection, or the end of a linger
    ABORT_FLUSH = "abort-flush"  # the client never took the end of its response
    ABORT_STALLED_WRITE = "abort-stalled-write"  # --write-timeout with no progress
    ABORT_SLOW_READER = "abort-slow-reader"  # slower than --min-download-rate
    NEXT_DOWNLOAD_WINDOW = "next-download-window"  # fast enough: measure the next window
    HEAD_TIMEOUT = "head-timeout"  # 408: the head did not arrive in --header-timeout
    BODY_TIMEOUT = "body-timeout"  # the body paused for --body-timeout while we read
    BODY_TOO_SLOW = "body-too-slow"  # the body arrives slower than --min-upload-rate


@dataclass(frozen=True)
class Limits:
    """The timeout settings, in seconds and bytes per second; 0 turns a rule off."""

    keep_alive: float
    header_timeout: float
    body_timeout: float
    write_timeout: float
    min_upload_rate: float
    min_download_rate: float
    rate_grace: float


@dataclass
class Stamps:
    """A connection's clock readings (seconds) and byte counts, kept by `connection.py`.

    `since` is when the current `Reading` began. Body figures count only the time the
    server wanted to read (not paused, no `100 Continue` still owed): a pause of ours
    is never the client's fault.
    """

    since: float = 0.0
    body_progress: float = 0.0  # last body byte, or when we (again) wanted one
    body_wanted_since: float = 0.0  # start of the current wanting period; 0: not wanting
    body_wanted_before: float = 0.0  # seconds wanted in earlier periods of this body
    body_received: int = 0  # body bytes of the current request
    write_stalled_since: float = 0.0  # the transport paused writing; 0: it is not paused
    write_window_since: float = 0.0  # start of the current download-rate window
    write_sent_at_window: int = 0  # bytes the client had taken when that window began
    write_sent: int = 0  # bytes the client has taken (given to the kernel)
    closing_since: float = 0.0


def body_seconds_wanted(stamps: Stamps, now: float) -> float:
    """How long, in total, the server has wanted the current body's bytes."""
    current = now - stamps.body_wanted_since if stamps.body_wanted_since else 0.0
    return stamps.body_wanted_before + current


def timer_action(
    reading: Reading,
    closing: Closing,
    in_flight: bool,
    served: int,
    stamps: Stamps,
    limits: Limits,
    now: float,
) -> Action:
    """The timeout due now for a connection in this state, or `Action.NOTHING`.

    Args:
        reading, closing: the connection's state.
        in_flight: a request is waiting for, or running in, the app.
        served: responses completed on this connection.
        stamps: its time stamps and byte counts.
        limits: the timeout settings.
        now: the clock, in the stamps' units.
    """
    if closing is Closing.CLOSED:
        return Action.NOTHING
    if closing is Closing.CLOSING:
        if limits.write_timeout and now - stamps.closing_since >= limits.write_timeout:
            return Action.ABORT_FLUSH
        return Action.NOTHING
    if reading is Reading.LINGERING:
        return Action.CLOSE if now - stamps.since >= LINGER_SECONDS else Action.NOTHING
    stalled = stamps.write_stalled_since
    if stalled:
        if limits.write_timeout and now - stalled >= limits.write_timeout:
            return Action.ABORT_STALLED_WRITE
        # Measured in windows of --min-rate-grace from the stall, not from its start: the
        # kernel's send buffer takes a burst just after a client stops reading, which
        # would otherwise pass for progress for a long time.
        window = now - stamps.write_window_since
        if limits.min_download_rate and window >= max(limits.rate_grace, 1.0):
            taken = stamps.write_sent - stamps.write_sent_at_window
            if taken < limits.min_download_rate * window:
                return Action.ABORT_SLOW_READER
            return Action.NEXT_DOWNLOAD_WINDOW
    if reading is Reading.BODY or reading is Reading.DRAINING:
        if not stamps.body_wanted_since:
            return Action.NOTHING  # we are not reading: not the client's fault
        if limits.body_timeout and now - stamps.body_progress >= limits.body_timeout:
            return Action.BODY_TIMEOUT
        wanted = body_seconds_wanted(stamps, now)
        if (
            limits.min_upload_rate
            and wanted >= limits.rate_grace
            and stamps.body_received < limits.min_upload_rate * wanted
        ):
            return Action.BODY_TOO_SLOW
        return Action.NOTHING
    if in_flight:
        return Action.NOTHING  # the app is working: no client timer runs
    if reading is Reading.IDLE:
        limit = limits.keep_alive if served else limits.header_timeout
        if limit and now - stamps.since >= limit:
            return Action.CLOSE  # nothing of a request arrived: close without a word
        return Action.NOTHING
    if (
        reading is Reading.HEAD
        and limits.header_timeout
        and now - stamps.since >= limits.header_timeout
    ):
        return Action.HEAD_TIMEOUT
    return Action.NOTHING


def may_reuse(
    requested: bool, draining: bool, body_complete: bool, unread: int | None, drain_limit: int
) -> bool:
    """Whether a connection may carry another request after the current response.

    Args:
        requested: the client allows it, and nothing in the exchange forbade it.
        draining: the server is stopping.
        body_complete: the request body has fully arrived.
        unread: request-body bytes still to come, None when unknown (chunked, or a
            `100 Continue` not sent: the client may or may not send the body).
        drain_limit: the most unread body bytes worth reading and dropping.
    """
    if not requested or draining:
        return False
    if body_complete:
        return True
    return unread is not None and unread <= drain_limit
