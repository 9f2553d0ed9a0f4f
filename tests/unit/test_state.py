"""The timeout rules (`state.timer_action`) and the keep-alive rule (`state.may_reuse`),
one row per rule, with plain numbers: no sockets, no sleeps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wsgiserve.state import (
    LINGER_SECONDS,
    Action,
    Closing,
    Limits,
    Reading,
    Stamps,
    body_seconds_wanted,
    may_reuse,
    timer_action,
)

LIMITS = Limits(
    keep_alive=5.0,
    header_timeout=10.0,
    body_timeout=30.0,
    write_timeout=30.0,
    min_upload_rate=240.0,
    min_download_rate=240.0,
    rate_grace=5.0,
)
T0 = 1000.0  # the loop clock when the state began


def action(
    reading: Reading,
    now: float,
    *,
    closing: Closing = Closing.OPEN,
    in_flight: bool = False,
    served: int = 0,
    limits: Limits = LIMITS,
    **stamps: float,
) -> Action:
    stamp = Stamps(since=T0, **stamps)  # type: ignore[arg-type]
    return timer_action(reading, closing, in_flight, served, stamp, limits, now)


# (id, reading, now, keyword arguments, expected)
ROWS = [
    # A fresh connection that sends nothing is closed without a word after the head timeout.
    ("fresh-idle-before", Reading.IDLE, T0 + 9.9, {}, Action.NOTHING),
    ("fresh-idle-at", Reading.IDLE, T0 + 10.0, {}, Action.CLOSE),
    # A kept-alive connection waits --keep-alive, then closes quietly: never a 408.
    ("keep-alive-before", Reading.IDLE, T0 + 4.9, {"served": 1}, Action.NOTHING),
    ("keep-alive-at", Reading.IDLE, T0 + 5.0, {"served": 3}, Action.CLOSE),
    (
        "keep-alive-off",
        Reading.IDLE,
        T0 + 99.0,
        {"served": 1, "limits": replace(LIMITS, keep_alive=0)},
        Action.NOTHING,
    ),
    # Part of a head arrived: 408 once --header-timeout has passed since it began.
    ("head-before", Reading.HEAD, T0 + 9.9, {}, Action.NOTHING),
    ("head-at", Reading.HEAD, T0 + 10.0, {}, Action.HEAD_TIMEOUT),
    (
        "head-off",
        Reading.HEAD,
        T0 + 99.0,
        {"limits": replace(LIMITS, header_timeout=0)},
        Action.NOTHING,
    ),
    # While the app works on a request no client timer runs, not even for a next head.
    ("head-while-app-runs", Reading.HEAD, T0 + 99.0, {"in_flight": True}, Action.NOTHING),
    (
        "idle-while-app-runs",
        Reading.IDLE,
        T0 + 99.0,
        {"in_flight": True, "served": 1},
        Action.NOTHING,
    ),
    # A body clock runs only while the server wants the bytes: paused, nothing is due.
    ("body-not-wanted", Reading.BODY, T0 + 999.0, {"body_progress": T0}, Action.NOTHING),
    (
        "body-stalled-before",
        Reading.BODY,
        T0 + 29.9,
        {"body_wanted_since": T0, "body_progress": T0, "body_received": 10**6},
        Action.NOTHING,
    ),
    (
        "body-stalled-at",
        Reading.BODY,
        T0 + 30.0,
        {"body_wanted_since": T0, "body_progress": T0, "body_received": 10**6},
        Action.BODY_TIMEOUT,
    ),
    (
        "body-stall-counts-from-last-byte",
        Reading.BODY,
        T0 + 40.0,
        {"body_wanted_since": T0, "body_progress": T0 + 20.0, "body_received": 10**6},
        Action.NOTHING,
    ),
    # The minimum upload rate applies after the grace period, over the time wanted.
    (
        "upload-in-grace",
        Reading.BODY,
        T0 + 4.9,
        {"body_wanted_since": T0, "body_progress": T0 + 4.0, "body_received": 1},
        Action.NOTHING,
    ),
    (
        "upload-too-slow",
        Reading.BODY,
        T0 + 5.0,
        {"body_wanted_since": T0, "body_progress": T0 + 4.0, "body_received": 1199},
        Action.BODY_TOO_SLOW,
    ),
    (
        "upload-just-fast-enough",
        Reading.BODY,
        T0 + 5.0,
        {"body_wanted_since": T0, "body_progress": T0 + 4.0, "body_received": 1200},
        Action.NOTHING,
    ),
    # 29 s of a one-byte-per-29-s trickle: under the body timeout, far under the rate.
    (
        "one-byte-every-29s",
        Reading.BODY,
        T0 + 58.0,
        {"body_wanted_since": T0, "body_progress": T0 + 29.0 * 2, "body_received": 2},
        Action.BODY_TOO_SLOW,
    ),
    # Time the server was not reading does not count against the rate: 4 s wanted
    # before a pause of any length, then 2 s now; 6 s at 240 bytes/s is 1440 bytes.
    (
        "upload-earlier-periods",
        Reading.BODY,
        T0 + 2.0,
        {
            "body_wanted_since": T0,
            "body_wanted_before": 4.0,
            "body_progress": T0 + 2.0,
            "body_received": 1440,
        },
        Action.NOTHING,
    ),
    (
        "upload-earlier-periods-slow",
        Reading.BODY,
        T0 + 2.0,
        {
            "body_wanted_since": T0,
            "body_wanted_before": 4.0,
            "body_progress": T0 + 2.0,
            "body_received": 1439,
        },
        Action.BODY_TOO_SLOW,
    ),
    (
        "upload-rate-off",
        Reading.BODY,
        T0 + 20.0,
        {
            "body_wanted_since": T0,
            "body_progress": T0 + 19.0,
            "body_received": 0,
            "limits": replace(LIMITS, min_upload_rate=0),
        },
        Action.NOTHING,
    ),
    # Draining an unread body after the response: the body rules still hold.
    (
        "draining-stalled",
        Reading.DRAINING,
        T0 + 30.0,
        {"body_wanted_since": T0, "body_progress": T0, "body_received": 10**6, "served": 1},
        Action.BODY_TIMEOUT,
    ),
    # A client that stops reading: --write-timeout with no progress at all...
    (
        "write-stalled-at",
        Reading.IDLE,
        T0 + 30.0,
        {
            "in_flight": True,
            "write_stalled_since": T0,
            "write_window_since": T0 + 29.0,
            "write_sent_at_window": 500,
            "write_sent": 500,
        },
        Action.ABORT_STALLED_WRITE,
    ),
    # ...and long before it, slower than the minimum download rate, measured in windows
    # of the grace period from the stall.
    (
        "download-in-window",
        Reading.IDLE,
        T0 + 4.9,
        {"in_flight": True, "write_stalled_since": T0, "write_window_since": T0, "write_sent": 0},
        Action.NOTHING,
    ),
    (
        "download-too-slow",
        Reading.IDLE,
        T0 + 5.0,
        {
            "in_flight": True,
            "write_stalled_since": T0,
            "write_window_since": T0,
            "write_sent_at_window": 100,
            "write_sent": 100 + 1199,
        },
        Action.ABORT_SLOW_READER,
    ),
    (
        "download-fast-enough",
        Reading.IDLE,
        T0 + 5.0,
        {
            "in_flight": True,
            "write_stalled_since": T0,
            "write_window_since": T0,
            "write_sent_at_window": 100,
            "write_sent": 100 + 1200,
        },
        Action.NEXT_DOWNLOAD_WINDOW,
    ),
    # A burst taken by the kernel in the first window does not excuse a second one.
    (
        "download-stopped-after-a-burst",
        Reading.IDLE,
        T0 + 10.0,
        {
            "in_flight": True,
            "write_stalled_since": T0,
            "write_window_since": T0 + 5.0,
            "write_sent_at_window": 300_000,
            "write_sent": 300_000,
        },
        Action.ABORT_SLOW_READER,
    ),
    (
        "download-rate-off",
        Reading.IDLE,
        T0 + 29.0,
        {
            "in_flight": True,
            "write_stalled_since": T0,
            "write_window_since": T0,
            "write_sent": 0,
            "limits": replace(LIMITS, min_download_rate=0),
        },
        Action.NOTHING,
    ),
    # After our FIN, input is read and dropped for a short linger, then the close.
    ("linger-before", Reading.LINGERING, T0 + LINGER_SECONDS - 0.1, {}, Action.NOTHING),
    ("linger-at", Reading.LINGERING, T0 + LINGER_SECONDS, {}, Action.CLOSE),
    # A closing connection whose client never takes the end of its response.
    (
        "flush-before",
        Reading.STOPPED,
        T0 + 29.0,
        {"closing": Closing.CLOSING, "closing_since": T0},
        Action.NOTHING,
    ),
    (
        "flush-at",
        Reading.STOPPED,
        T0 + 30.0,
        {"closing": Closing.CLOSING, "closing_since": T0},
        Action.ABORT_FLUSH,
    ),
    ("closed", Reading.STOPPED, T0 + 999.0, {"closing": Closing.CLOSED}, Action.NOTHING),
]


@pytest.mark.parametrize(
    ("reading", "now", "arguments", "expected"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_timer_rules(
    reading: Reading, now: float, arguments: dict[str, object], expected: Action
) -> None:
    assert action(reading, now, **arguments) is expected  # type: ignore[arg-type]


def test_seconds_wanted_add_up_the_periods() -> None:
    stamps = Stamps(body_wanted_before=3.0, body_wanted_since=T0)
    assert body_seconds_wanted(stamps, T0 + 2.5) == 5.5
    assert body_seconds_wanted(Stamps(body_wanted_before=3.0), T0 + 2.5) == 3.0


@pytest.mark.parametrize(
    ("requested", "draining", "complete", "unread", "expected"),
    [
        (True, False, True, 0, True),  # the usual keep-alive
        (False, False, True, 0, False),  # Connection: close, or HTTP/1.0 without keep-alive
        (True, True, True, 0, False),  # the server is stopping
        (True, False, False, 1000, True),  # a small unread body is read and dropped
        (True, False, False, 65536, True),
        (True, False, False, 65537, False),  # too much to drain: close instead
        (True, False, False, None, False),  # unknown: chunked, or 100 Continue never sent
    ],
)
def test_keep_alive_rule(
    requested: bool, draining: bool, complete: bool, unread: int | None, expected: bool
) -> None:
    assert may_reuse(requested, draining, complete, unread, 65536) is expected
