"""--error-log-json: the error log as one JSON object per line, a slow request's stack and a
traceback each as one field."""

from __future__ import annotations

import json
import re
import threading

import httpx

from .apps.ops_app import SLOW_MARKER
from .support import APPS, start_server

APP = f"{APPS}.ops_app:app"
TEXT_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d ")


def test_the_slow_request_report_is_one_object_with_its_stack_as_one_field() -> None:
    server = start_server(
        APP, "--error-log-json", "--slow-request-threshold", "1", "--graceful-timeout", "5"
    )
    slow = threading.Thread(
        target=lambda: httpx.get(server.url + "/slow?s=3", timeout=30), daemon=True
    )
    try:
        slow.start()
        server.log.wait_for(re.compile(SLOW_MARKER))
        [match] = server.log.wait_for(re.compile(r"^\{.*request running for.*\}$"), timeout=20)
        report = json.loads(match.group(0))
        assert report["level"] == "WARNING"
        assert "GET /slow" in report["message"]
        assert "\n" not in report["message"]
        # The stack: one field, its lines inside it, naming the app's function.
        assert "sleepy_handler" in report["stack"]
        assert report["stack"].count("\n") > 3
    finally:
        slow.join(30)
        assert server.stop() == 0
    ours = [line for line in server.log.text.splitlines() if "OPS-" not in line]
    assert not [line for line in ours if TEXT_LINE.match(line)]  # no text lines left
    for line in ours:
        entry = json.loads(line)  # every line is a whole object
        assert {"time", "level", "pid", "message"} <= set(entry)
