"""Fixtures for the functional tests (a live server, raw bytes or httpx)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from wsgiref.validate import validator

import pytest

App = Callable[..., Any]


@pytest.fixture(params=["bare", "validated"])
def wrap(request: pytest.FixtureRequest) -> Callable[[App], App]:
    """Run the test's app as is, and again inside `wsgiref.validate.validator`."""
    if request.param == "validated":
        return validator
    return lambda app: app
