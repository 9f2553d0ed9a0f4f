"""--error-log-json: one object per line, whatever the record carries."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsgiserve import logs


@pytest.fixture
def error_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "error.log"
    logs.configure("info", error_logfile=str(path), error_log_json=True)
    yield path
    logs.configure()  # back to the default set-up, closing the file


def test_a_traceback_and_a_stack_are_one_field_each(error_log: Path) -> None:
    log = logging.getLogger(logs.ERROR_LOG)
    try:
        raise RuntimeError("the app broke")
    except RuntimeError:
        log.exception("request failed: %s", "/items")
    log.warning("slow", stack_info=True)
    log.info("a path with an escape: /\x1b[31mred\nforged line")
    for handler in log.handlers:
        handler.flush()
    raw = error_log.read_text(encoding="utf-8")
    assert "\x1b" not in raw  # a terminal escape never reaches the file as is
    failed, slow, escaped = [json.loads(line) for line in raw.splitlines()]
    assert failed["level"] == "ERROR"
    assert failed["message"] == "request failed: /items"
    assert failed["exception"].startswith("Traceback")
    assert "RuntimeError: the app broke" in failed["exception"]
    assert "Stack (most recent call last)" in slow["stack"]
    assert escaped["message"] == "a path with an escape: /\x1b[31mred\nforged line"
    assert {"time", "pid"} <= set(failed)
