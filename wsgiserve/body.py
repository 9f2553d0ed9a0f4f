"""`wsgi.input`: a bounded buffer that the loop fills and a worker thread drains.

Loop side: `feed(data)` returns True when the buffer is past its bound and the
loop must pause reading; `finish()` marks the end of the body; `fail(exc)`
makes every further read raise (a malformed chunk, a vanished client).
Worker side: the file-like methods PEP 3333 asks for. A read blocks until data
or the end arrives; after it consumes enough, it calls `wake_loop()` once so
the loop resumes reading. The first read also wakes the loop for a pending
`Expect: 100-continue`.

Most bodies arrive whole before the app reads them (a 64 KiB upload over a fast
link is one socket read), so that path costs no copy and no condition variable:
a single piece of the body is kept as the bytes object the parser made and handed
out as it is, and the lock a reader sleeps on is made the first time one must.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

BUFFER_LIMIT = 256 * 1024  # bytes held before the loop stops reading the socket
_RESUME_BELOW = BUFFER_LIMIT // 4


class EmptyBody:
    """The `wsgi.input` of a request without a body: stateless, so one instance serves all."""

    complete = True
    expect_continue = False

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


EMPTY_BODY = EmptyBody()


class RequestBody:
    """A request body streamed from the loop thread to the worker running the app.

    Args:
        wake_loop: called from the worker thread when the loop should act on
            this body (resume reading, or send `100 Continue`).
        content_length: the declared length, or None for a chunked body.
        expect_continue: the client waits for `100 Continue` before sending.
    """

    def __init__(
        self,
        wake_loop: Callable[[], None],
        content_length: int | None,
        expect_continue: bool = False,
    ) -> None:
        self._wake_loop = wake_loop
        self.content_length = content_length
        self.expect_continue = expect_continue
        self.received = 0  # loop thread
        self.complete = False
        self.paused_reading = False  # set by the loop when it paused because of us
        self.continue_requested = False  # the app wants the body: time for `100 Continue`
        self.continue_sent = False  # loop thread
        self.discarding = False
        self._resume_asked = False
        # One piece is kept as the parser's bytes object; a second turns it into a bytearray.
        self._buffer: bytes | bytearray = b""
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # guards everything above between the two threads
        # A waiting reader blocks acquiring `_signal` (held while nobody has signalled);
        # the loop releases it once. Made by the first reader that has to wait.
        self._signal: threading.Lock | None = None
        self._wake_at = 0  # buffer length at which to wake a waiting reader; 0: none waits

    # -- loop thread -----------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Add body bytes; True means the buffer is full and reading should pause."""
        self.received += len(data)
        if self.discarding:
            return False
        with self._lock:
            buffer = self._buffer
            if not buffer:
                buffer = self._buffer = data
            else:
                if type(buffer) is bytes:
                    buffer = self._buffer = bytearray(buffer)
                buffer += data
            # Wake the reader only once it has what it asked for: a worker woken for every
            # packet of an upload would cost a thread handoff each time.
            if self._wake_at and len(buffer) >= self._wake_at:
                self._signal_reader()
            if len(buffer) < BUFFER_LIMIT:
                return False
            # Under the lock, so a worker about to wait sees it and asks for a resume.
            self.paused_reading = True
            self._resume_asked = False
            return True

    def finish(self) -> None:
        with self._lock:
            self.complete = True
            self._signal_reader()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if not self.complete:
                self._error = error
            self._signal_reader()

    def discard(self) -> None:
        """The app is done with the body: drop what is buffered and whatever still comes."""
        self.discarding = True
        with self._lock:
            self._buffer = b""

    def _signal_reader(self) -> None:
        """Wake the reader if one waits (lock held); it then re-checks what it waited for."""
        if self._wake_at:
            self._wake_at = 0  # cleared under the lock: `_signal` is released once per wait
            assert self._signal is not None
            self._signal.release()

    def remaining(self) -> int | None:
        """Bytes still expected, or None when unknown (chunked)."""
        if self.complete:
            return 0
        if self.content_length is None:
            return None
        return self.content_length - self.received

    # -- worker thread ---------------------------------------------------------------

    def _take(self, size: int) -> bytes:
        """Remove and return up to `size` bytes; called with the lock held."""
        buffer = self._buffer
        if size >= len(buffer):
            data = buffer if type(buffer) is bytes else bytes(buffer)
            self._buffer = b""
        elif isinstance(buffer, bytearray):
            data = bytes(buffer[:size])
            del buffer[:size]
        else:
            data = buffer[:size]
            # The rest moves to a bytearray, whose front can be cut without copying.
            self._buffer = bytearray(memoryview(buffer)[size:])
        buffer = self._buffer
        if self.paused_reading and not self._resume_asked and len(buffer) < _RESUME_BELOW:
            self._resume_asked = True
            self._wake_loop()
        return data

    def read(self, size: int | None = -1) -> bytes:
        with self._lock:
            if size is None or size < 0:
                while not self.complete:
                    self._wait_for_more(BUFFER_LIMIT)
                return self._take(len(self._buffer))
            while len(self._buffer) < size and not self.complete:
                self._wait_for_more(size)
            return self._take(size)

    def _wait_for_more(self, wanted: int) -> None:
        """Wait (lock held) until the buffer holds `wanted` bytes, or the body ends or fails;
        callers re-check their own goal afterwards."""
        if self._error is not None:
            raise self._error
        if self.expect_continue:
            self.expect_continue = False
            self.continue_requested = True
            self._wake_loop()
        if self.paused_reading and not self._resume_asked:
            self._resume_asked = True
            self._wake_loop()
        signal = self._signal
        if signal is None:
            signal = self._signal = threading.Lock()
            signal.acquire()  # held: nobody has signalled yet
        self._wake_at = min(max(wanted, 1), BUFFER_LIMIT)
        self._lock.release()
        try:
            signal.acquire()  # until `_signal_reader` releases it
        finally:
            self._lock.acquire()

    def readline(self, size: int | None = -1) -> bytes:
        with self._lock:
            start = 0
            while True:
                newline = self._buffer.find(b"\n", start)
                if newline >= 0:
                    end = newline + 1
                    break
                if size is not None and 0 <= size <= len(self._buffer):
                    end = size
                    break
                if self.complete:
                    end = len(self._buffer)
                    break
                start = len(self._buffer)
                self._wait_for_more(start + 1)
            if size is not None and 0 <= size < end:
                end = size
            return self._take(end)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        pass
