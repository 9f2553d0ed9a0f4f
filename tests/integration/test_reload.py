"""--reload: editing the app's source restarts the workers, which then serve the new code."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.polling import wait_until

from .support import start_server

APP_SOURCE = """
def app(environ, start_response):
    body = b"{version}"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def fetch(url: str) -> str:
    return httpx.get(url + "/", timeout=5).text


def test_editing_the_app_restarts_the_workers_with_the_new_code(tmp_path: Path) -> None:
    source = tmp_path / "reloadable.py"
    source.write_text(APP_SOURCE.format(version="one"))
    server = start_server("reloadable:app", "--reload", "--chdir", str(tmp_path))
    try:
        assert fetch(server.url) == "one"
        source.write_text(APP_SOURCE.format(version="two"))
        wait_until(lambda: fetch(server.url) == "two", "the restarted workers' new code", 15)
        assert "changed; restarting workers" in server.log.text
    finally:
        assert server.stop() == 0


def test_a_broken_edit_keeps_the_last_good_code_serving(tmp_path: Path) -> None:
    # It used to exit on the first syntax error while the developer was still typing.
    source = tmp_path / "reloadable.py"
    source.write_text(APP_SOURCE.format(version="one"))
    server = start_server("reloadable:app", "--reload", "--chdir", str(tmp_path))
    try:
        assert fetch(server.url) == "one"
        source.write_text("def app(environ, start_response:\n")  # half-typed
        server.log.wait_for(re.compile("Reload failed"), timeout=15)
        assert server.proc.poll() is None
        assert fetch(server.url) == "one"
        source.write_text(APP_SOURCE.format(version="three"))
        wait_until(lambda: fetch(server.url) == "three", "the fixed code", 15)
    finally:
        assert server.stop() == 0


def test_code_that_is_broken_from_the_start_answers_500_until_it_is_fixed(
    tmp_path: Path,
) -> None:
    # It used to exit (status 4) when the app did not import at the first start.
    source = tmp_path / "reloadable.py"
    source.write_text("import os\n\ndef app(environ, start_response:\n")  # half-typed
    server = start_server("reloadable:app", "--reload", "--chdir", str(tmp_path))
    try:
        server.log.wait_for(re.compile("answering 500 with this error"), timeout=15)
        response = httpx.get(server.url + "/", timeout=5)
        assert response.status_code == 500
        assert f"{source}:3" in response.text  # the user's file and line
        assert "SyntaxError" in response.text
        assert server.proc.poll() is None
        source.write_text(APP_SOURCE.format(version="fixed"))
        wait_until(lambda: fetch(server.url) == "fixed", "the fixed code", 15)
        # Once good code runs, a broken edit keeps it serving, as before.
        source.write_text("def app(environ, start_response:\n")
        server.log.wait_for(re.compile("Reload failed"), timeout=15)
        assert fetch(server.url) == "fixed"
    finally:
        assert server.stop() == 0
