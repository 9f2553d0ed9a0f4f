"""--reload: editing the app's source restarts the workers, which then serve the new code."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .support import start_server

APP_SOURCE = '''
def app(environ, start_response):
    body = b"{version}"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def fetch(url: str) -> str:
    return httpx.get(url + "/", timeout=5).text


def test_editing_the_app_restarts_the_workers_with_the_new_code(tmp_path: Path) -> None:
    source = tmp_path / "reloadable.py"
    source.write_text(APP_SOURCE.format(version="one"))
    server = start_server("reloadable:app", "--reload", "--chdir", str(tmp_path))
    try:
        assert fetch(server.url) == "one"
        source.write_text(APP_SOURCE.format(version="two"))
        deadline = time.monotonic() + 15
        seen = "one"
        while seen != "two" and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = fetch(server.url)
        assert seen == "two"
        assert "changed; restarting workers" in server.log.text
    finally:
        assert server.stop() == 0
