"""`wsgi.input`: the bounded buffer the loop fills and a worker thread drains.

The loop side is driven from the test thread, the worker side runs in real threads.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsgiserve.body import BUFFER_LIMIT, EMPTY_BODY, RequestBody
from wsgiserve.errors import BodyFramingError, ClientDisconnected

WAIT = 5.0  # seconds: the most any step may take before the test fails


class Wakes:
    """The `wake_loop` callback: counts calls, which come from worker threads."""

    def __init__(self) -> None:
        self.count = 0
        self.called = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.called.set()


class Reader:
    """Runs `action(body)` in a worker thread and keeps what it returned or raised."""

    def __init__(self, body: RequestBody, action: Callable[[RequestBody], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._action = action
        self._body = body
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._action(self._body)
        except BaseException as error:
            self.error = error

    def blocked(self, seconds: float = 0.1) -> bool:
        """True if the action is still running after `seconds`."""
        self._thread.join(seconds)
        return self._thread.is_alive()

    def join(self) -> Any:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the reader never returned"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


def make_body(
    wakes: Wakes, content_length: int | None = None, expect_continue: bool = False
) -> RequestBody:
    return RequestBody(wakes, content_length, expect_continue)


def filled(wakes: Wakes, data: bytes) -> RequestBody:
    body = make_body(wakes, len(data))
    body.feed(data)
    body.finish()
    return body


# -- reading ---------------------------------------------------------------------------


def test_read_n_blocks_until_enough_arrives(wakes: Wakes) -> None:
    body = make_body(wakes, 10)
    reader = Reader(body, lambda b: b.read(6))
    body.feed(b"abc")
    assert reader.blocked()
    body.feed(b"defgh")
    assert reader.join() == b"abcdef"
    body.feed(b"ij")
    body.finish()
    assert body.read(100) == b"ghij"
    assert body.read(100) == b""


def test_read_n_returns_short_at_the_end(wakes: Wakes) -> None:
    body = make_body(wakes, 5)
    reader = Reader(body, lambda b: [b.read(4), b.read(4), b.read(4)])
    body.feed(b"hel")
    assert reader.blocked()
    body.feed(b"lo")
    body.finish()
    assert reader.join() == [b"hell", b"o", b""]


def test_read_all_waits_for_the_end(wakes: Wakes) -> None:
    body = make_body(wakes, None)
    reader = Reader(body, lambda b: (b.read(), b.read(None), b.read(-1)))
    body.feed(b"one ")
    assert reader.blocked()
    body.feed(b"two")
    assert reader.blocked()
    body.finish()
    assert reader.join() == (b"one two", b"", b"")


def test_readline_across_feeds(wakes: Wakes) -> None:
    body = make_body(wakes, None)
    reader = Reader(body, lambda b: b.readline())
    body.feed(b"first ")
    assert reader.blocked()
    body.feed(b"line\nsecond")
    assert reader.join() == b"first line\n"
    body.finish()
    assert body.readline() == b"second"
    assert body.readline() == b""


def test_readline_with_a_size(wakes: Wakes) -> None:
    body = filled(wakes, b"abcdef\nxy\n")
    assert body.readline(4) == b"abcd"
    assert body.readline(4) == b"ef\n"
    assert body.readline(0) == b""
    assert body.readline(100) == b"xy\n"
    assert body.readline(4) == b""


def test_readline_with_a_size_returns_before_a_newline_arrives(wakes: Wakes) -> None:
    body = make_body(wakes, None)
    reader = Reader(body, lambda b: b.readline(3))
    body.feed(b"ab")
    assert reader.blocked()
    body.feed(b"cdef")
    assert reader.join() == b"abc"


def test_readlines_and_hint(wakes: Wakes) -> None:
    assert filled(wakes, b"a\nbb\nccc").readlines() == [b"a\n", b"bb\n", b"ccc"]
    body = filled(wakes, b"a\nbb\nccc\n")
    assert body.readlines(3) == [b"a\n", b"bb\n"]
    assert body.readlines(-1) == [b"ccc\n"]
    assert body.readlines() == []


def test_iteration_yields_lines_as_they_arrive(wakes: Wakes) -> None:
    body = make_body(wakes, None)
    lines = iter(body)
    first = Reader(body, lambda b: next(lines))
    body.feed(b"one\ntw")
    assert first.join() == b"one\n"
    rest = Reader(body, lambda b: list(lines))
    body.feed(b"o\nthree")
    assert rest.blocked()
    body.finish()
    assert rest.join() == [b"two\n", b"three"]


def test_many_readers_in_turn_get_every_byte_once(wakes: Wakes) -> None:
    data = bytes(range(256)) * 400
    body = make_body(wakes, len(data))

    def drain(b: RequestBody) -> bytes:
        out = bytearray()
        while piece := b.read(777):
            out += piece
        return bytes(out)

    reader = Reader(body, drain)
    for start in range(0, len(data), 1000):
        body.feed(data[start : start + 1000])
    body.finish()
    assert reader.join() == data


def test_a_body_that_arrived_in_one_piece_is_handed_over_without_a_copy(wakes: Wakes) -> None:
    data = b"x" * 65536
    body = filled(wakes, data)
    assert body.read(65536) is data
    assert body.read() == b""


def test_partial_reads_of_one_piece_then_more_pieces(wakes: Wakes) -> None:
    body = make_body(wakes, 12)
    body.feed(b"abcdef")
    assert body.read(2) == b"ab"
    body.feed(b"gh")
    assert body.readline(3) == b"cde"
    body.feed(b"i\njkl")
    body.finish()
    assert body.readline() == b"fghi\n"
    assert body.read() == b"jkl"


def test_random_pieces_and_random_reads_keep_every_byte_in_order(wakes: Wakes) -> None:
    rng = random.Random(5)
    data = rng.randbytes(600_000)
    body = make_body(wakes, len(data))

    def drain(b: RequestBody) -> bytes:
        out = bytearray()
        local = random.Random(7)
        while True:
            piece = (
                b.readline(local.randint(1, 70_000))
                if local.random() < 0.3
                else b.read(local.randint(1, 70_000))
            )
            if not piece:
                return bytes(out)
            out += piece

    reader = Reader(body, drain)
    start = 0
    while start < len(data):
        size = rng.randint(1, 50_000)
        if body.feed(data[start : start + size]):  # full: wait as the loop would
            assert wakes.called.wait(WAIT)
            wakes.called.clear()
            body.paused_reading = False  # what the loop does when it resumes reading
        start += size
    body.finish()
    assert reader.join() == data


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "read", [lambda b: b.read(10), lambda b: b.read(), lambda b: b.readline(), list]
)
def test_fail_wakes_a_blocked_reader_with_the_error(
    wakes: Wakes, read: Callable[[RequestBody], Any]
) -> None:
    body = make_body(wakes, 100)
    body.feed(b"part")
    reader = Reader(body, read)
    assert reader.blocked()
    body.fail(ClientDisconnected("client disconnected"))
    with pytest.raises(ClientDisconnected):
        reader.join()
    with pytest.raises(ClientDisconnected):
        body.read(10)


def test_buffered_bytes_are_still_readable_after_a_failure(wakes: Wakes) -> None:
    body = make_body(wakes, 100)
    body.feed(b"abcdef")
    body.fail(BodyFramingError("cut short"))
    assert body.read(3) == b"abc"
    with pytest.raises(BodyFramingError):
        body.read(10)


def test_a_failure_after_the_end_is_ignored(wakes: Wakes) -> None:
    body = filled(wakes, b"done")
    body.fail(ClientDisconnected("late"))
    assert body.read(10) == b"done"
    assert body.read(10) == b""


# -- bounds and wake-ups --------------------------------------------------------------------


def test_feed_reports_a_full_buffer_and_reading_wakes_the_loop_once(wakes: Wakes) -> None:
    body = make_body(wakes, 2 * BUFFER_LIMIT)
    block = b"x" * 4096
    fed = 0
    while not body.feed(block):
        fed += len(block)
        assert fed < BUFFER_LIMIT
    fed += len(block)
    assert fed >= BUFFER_LIMIT
    assert body.paused_reading
    assert wakes.count == 0
    body.read(4096)  # still well above the resume mark
    assert wakes.count == 0
    reader = Reader(body, lambda b: b.read(fed - 4096))
    assert reader.join() == block * (fed // 4096 - 1)
    assert wakes.count == 1
    body.read(0)
    assert wakes.count == 1


def test_a_reader_waiting_on_a_paused_body_asks_for_more(wakes: Wakes) -> None:
    body = make_body(wakes, 4 * BUFFER_LIMIT)
    assert body.feed(b"x" * BUFFER_LIMIT)
    reader = Reader(body, lambda b: b.read(BUFFER_LIMIT + 10))
    assert wakes.called.wait(WAIT)
    assert reader.blocked()
    body.feed(b"y" * 10)
    assert reader.join() == b"x" * BUFFER_LIMIT + b"y" * 10


def test_expect_continue_wakes_the_loop_on_the_first_blocking_read(wakes: Wakes) -> None:
    body = make_body(wakes, 5, expect_continue=True)
    assert not body.continue_requested
    reader = Reader(body, lambda b: b.read(5))
    assert wakes.called.wait(WAIT)
    assert body.continue_requested
    assert not body.expect_continue
    body.feed(b"hello")
    assert reader.join() == b"hello"
    assert wakes.count == 1


def test_no_continue_without_expect(wakes: Wakes) -> None:
    body = make_body(wakes, 5)
    reader = Reader(body, lambda b: b.read(5))
    assert reader.blocked()
    body.feed(b"hello")
    assert reader.join() == b"hello"
    assert not body.continue_requested
    assert wakes.count == 0


def test_discard_drops_buffered_and_later_bytes(wakes: Wakes) -> None:
    body = make_body(wakes, 10)
    body.feed(b"abcd")
    body.discard()
    assert not body.feed(b"x" * (BUFFER_LIMIT + 1))  # never asks to pause
    assert body.received == 4 + BUFFER_LIMIT + 1
    body.finish()
    assert body.read(10) == b""


def test_remaining(wakes: Wakes) -> None:
    body = make_body(wakes, 10)
    assert body.remaining() == 10
    body.feed(b"abc")
    assert body.remaining() == 7
    body.finish()
    assert body.remaining() == 0
    chunked = make_body(wakes, None)
    assert chunked.remaining() is None
    chunked.finish()
    assert chunked.remaining() == 0


def test_empty_body_reads_nothing() -> None:
    assert EMPTY_BODY.read() == b""
    assert EMPTY_BODY.read(10) == b""
    assert EMPTY_BODY.readline() == b""
    assert EMPTY_BODY.readline(5) == b""
    assert EMPTY_BODY.readlines() == []
    assert list(EMPTY_BODY) == []
    assert EMPTY_BODY.complete


def _lines(body: RequestBody) -> Iterator[bytes]:
    yield from body


def test_read_with_no_data_yet_blocks_until_finish(wakes: Wakes) -> None:
    body = make_body(wakes, 0)
    reader = Reader(body, lambda b: list(_lines(b)))
    assert reader.blocked()
    body.finish()
    assert reader.join() == []
