"""One way for tests to wait for something that happens on another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_INTERVAL = 0.01  # seconds between looks
DEFAULT_TIMEOUT = 10.0  # seconds; generous for a shared 2-core machine, never a timing claim


def wait_until(
    predicate: Callable[[], object], what: str, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Return once `predicate()` is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def eventually(predicate: Callable[[], object], timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether `predicate()` becomes true within `timeout` seconds (for asserting a negative
    alongside a positive, where `wait_until`'s failure message would not fit)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True
