"""wsgiserve behind a real nginx speaking uwsgi (``uwsgi_pass``), as a uWSGI site has it.

nginx runs ``docs/nginx-uwsgi.conf.example`` with Debian's own ``uwsgi_params``, over a
unix socket and over TCP: a GET, a form POST, a 5 MB upload, a streamed response arriving
progressively, the client's address and scheme, a sub-path mount, and code-loading vars
that never reach the app. Every wait is bounded; nothing asserts how long something took.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .nginx_support import run_directory, start_nginx, web_server_group
from .support import APPS, REPO_ROOT, ServerProcess, start_server

pytestmark = pytest.mark.timeout(120)

APP = f"{APPS}.uwsgi_app:app"
TEMPLATE = REPO_ROOT / "docs" / "nginx-uwsgi.conf.example"
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")  # Debian's nginx-common ships it
CLIENT_TIMEOUT = 30.0  # seconds, for any one request through nginx
MB = 1_000_000


class Stack:
    def __init__(self, directory: Path, run_dir: Path, transport: str) -> None:
        # A unix socket as the nginx guide sets it up: nginx's workers run as www-data.
        if transport == "unix":
            bind = f"uwsgi:unix:{run_dir / 'uwsgi.sock'}"
            flags: tuple[str, ...] = ("--socket-group", web_server_group())
        else:
            bind, flags = "uwsgi://127.0.0.1:0", ()
        self.server: ServerProcess = start_server(APP, *flags, binds=(bind,))
        try:
            address = self.server.addresses[0]
            upstream = address.removeprefix("uwsgi:").removeprefix("//")
            self.nginx = start_nginx(
                directory / "nginx", [upstream], template=TEMPLATE, includes=[UWSGI_PARAMS]
            )
        except BaseException:
            self.server.stop()
            raise
        self.url = self.nginx.url

    def stop(self) -> None:
        try:
            self.nginx.stop()
        finally:
            self.server.stop()


@pytest.fixture(scope="module", params=("unix", "tcp"))
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with run_directory() as run_dir:
        started = Stack(tmp_path_factory.mktemp(f"uwsgi-{request.param}"), run_dir, request.param)
        try:
            yield started
        finally:
            started.stop()


def test_debian_ships_uwsgi_params() -> None:
    assert UWSGI_PARAMS.is_file(), "nginx-common's uwsgi_params is missing: apt-get install nginx"


def test_get_with_client_address_and_scheme(stack: Stack) -> None:
    response = httpx.get(
        f"{stack.url}/env?a=1&b=%C3%A9",
        headers={"X-Forwarded-Proto": "https", "X-Custom": "yes"},
        timeout=CLIENT_TIMEOUT,
    )
    assert response.status_code == 200, f"{response.text}\n{stack.nginx.diagnostics()}"
    seen = response.json()
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["PATH_INFO"] == "/env"
    assert seen["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert seen["REQUEST_URI"] == "/env?a=1&b=%C3%A9"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"  # the client nginx saw
    assert seen["wsgi.url_scheme"] == "http"  # nginx's scheme, not the client's header
    assert seen["SERVER_PORT"] == str(stack.nginx.port)
    assert seen["HTTP_HOST"] == "127.0.0.1"  # uwsgi_params passes $host
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SCRIPT_NAME"] == ""
    assert "server" in response.headers  # a real HTTP answer passed through


def test_form_post(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/env", data={"name": "Zoë", "n": "3"}, timeout=CLIENT_TIMEOUT
    )
    seen = response.json()
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert seen["form"] == {"name": ["Zoë"], "n": ["3"]}


def test_upload_5_mb(stack: Stack) -> None:
    body = bytes(range(256)) * (5 * MB // 256)

    def pieces() -> Iterator[bytes]:
        for at in range(0, len(body), 256 * 1024):
            yield body[at : at + 256 * 1024]

    response = httpx.post(
        f"{stack.url}/count",
        content=pieces(),
        headers={"Content-Length": str(len(body))},
        timeout=CLIENT_TIMEOUT,
    )
    assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_streamed_response_arrives_progressively(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    with httpx.stream(
        "GET", f"{stack.url}/stream", params={"marker": str(marker)}, timeout=CLIENT_TIMEOUT
    ) as response:
        lines = response.iter_lines()
        assert next(lines) == "first"  # before the app may produce the rest
        marker.touch()
        assert list(lines) == ["second"]


def test_sub_path_mount(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/sub/env", timeout=CLIENT_TIMEOUT)
    seen = response.json()
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/sub", "/env")


def test_code_loading_vars_never_reach_the_app(stack: Stack) -> None:
    # A client cannot set uwsgi vars through nginx; its header becomes HTTP_UWSGI_FILE,
    # which is only a header. No UWSGI_* key reaches the environ.
    response = httpx.get(
        f"{stack.url}/env", headers={"UWSGI-File": "/tmp/x.py"}, timeout=CLIENT_TIMEOUT
    )
    assert response.json()["uwsgi_keys"] == []
