"""Fixtures shared by every test folder."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

# Asserts in the shared corpus harness get pytest's detailed failure output too.
pytest.register_assert_rewrite("tests.support.corpus_run")

import wsgiserve  # noqa: E402

ServeFactory = Callable[..., AbstractContextManager[wsgiserve.BackgroundServer]]


@pytest.fixture
def serve() -> Iterator[Callable[..., wsgiserve.BackgroundServer]]:
    """Start `app` on a free loopback port for the rest of the test: `serve(app, **settings)`."""
    running: list[AbstractContextManager[wsgiserve.BackgroundServer]] = []

    def start(app: Any, **settings: Any) -> wsgiserve.BackgroundServer:
        settings.setdefault("threads", 4)
        manager = wsgiserve.background_server(app, **settings)
        server = manager.__enter__()
        running.append(manager)
        return server

    yield start
    for manager in reversed(running):
        manager.__exit__(None, None, None)


# Under PYTHONASYNCIODEBUG=1 (make test runs tests/functional once so) uvloop raises on loop
# calls from a foreign thread and logs callbacks slower than 0.1 s on the "asyncio" logger.
# Log records are not warnings, so `filterwarnings = error` never sees them: this turns them
# into failures. A slow callback counts past SLOW_CALLBACK_LIMIT only: its time is wall
# time, and on a shared 2-core machine a preempted callback can pass 0.1 s doing nothing wrong.
ASYNCIO_DEBUG = sys.flags.dev_mode or (
    not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
)
SLOW_CALLBACK_LIMIT = 0.5  # seconds; the loop blocked this long is a bug on any machine


class _LoopComplaints(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: dict[int, logging.LogRecord] = {}  # by id: root and "asyncio" both see some

    def emit(self, record: logging.LogRecord) -> None:
        if _is_complaint(record):
            self.records[id(record)] = record


def _is_complaint(record: logging.LogRecord) -> bool:
    if "Non-thread-safe operation" in record.getMessage() or (
        record.exc_info and "Non-thread-safe operation" in str(record.exc_info[1])
    ):
        return True
    if record.name != "asyncio":
        return False
    slow = isinstance(record.msg, str) and record.msg.startswith("Executing ")
    if slow and isinstance(record.args, tuple) and isinstance(record.args[-1], float):
        return record.args[-1] > SLOW_CALLBACK_LIMIT
    return True


@pytest.fixture(autouse=ASYNCIO_DEBUG)
def loop_complaints() -> Iterator[None]:
    """In asyncio debug runs, fail a test whose loops logged a complaint (see above)."""
    handler = _LoopComplaints()
    loggers = [logging.getLogger(), logging.getLogger("asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    if handler.records:
        complaints = "\n".join(
            f"{record.name}: {record.getMessage()}" for record in handler.records.values()
        )
        pytest.fail(f"the event loop complained in asyncio debug mode:\n{complaints}")
