"""Fixtures shared by every test folder."""

from __future__ import annotations

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
