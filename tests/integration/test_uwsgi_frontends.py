"""wsgiserve behind the real web servers that speak uwsgi, as a uWSGI site has them.

nginx (``uwsgi_pass``) runs ``docs/nginx-uwsgi.conf.example`` with Debian's own
``uwsgi_params``, Apache (``mod_proxy_uwsgi``) runs ``docs/apache-uwsgi.conf.example``; each
over a unix socket set up as the guides say and over TCP: a GET, a form POST, a 5 MB upload, a
streamed response arriving progressively, the client's address and scheme, a sub-path mount,
and code-loading vars that never reach the app. Every wait is bounded; nothing asserts how
long something took.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import httpx
import pytest

from .apache_support import Apache, start_apache
from .nginx_support import Nginx, fill_template, run_directory, start_nginx, web_server_group
from .stack import Stack
from .support import APPS, REPO_ROOT, start_server

pytestmark = pytest.mark.timeout(120)

APP = f"{APPS}.uwsgi_app:app"
NGINX_SITE = REPO_ROOT / "docs" / "nginx-uwsgi.conf.example"
APACHE_SITE = REPO_ROOT / "docs" / "apache-uwsgi.conf.example"
# Debian's libapache2-mod-proxy-uwsgi (installed by `make test-tools`).
APACHE_MODULES = [("proxy_uwsgi", "mod_proxy_uwsgi")]
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")  # Debian's nginx-common ships it
CLIENT_TIMEOUT = 30.0  # seconds, for any one request through nginx
MB = 1_000_000
UwsgiStack: TypeAlias = Stack[Nginx | Apache]


def start_stack(directory: Path, run_dir: Path, front: str, transport: str) -> UwsgiStack:
    """A web server (``nginx`` or ``apache``) in front of one wsgiserve with a uwsgi bind."""
    # A unix socket as the guides set it up: the web server's workers run as www-data.
    if transport == "unix":
        bind = f"uwsgi:unix:{run_dir / 'uwsgi.sock'}"
        flags: tuple[str, ...] = ("--socket-group", web_server_group())
    else:
        bind, flags = "uwsgi://127.0.0.1:0", ()
    server = start_server(APP, *flags, binds=(bind,))
    started: Nginx | Apache
    try:
        address = server.addresses[0].removeprefix("uwsgi:").removeprefix("//")
        if front == "nginx":
            started = start_nginx(
                directory / "nginx", [address], template=NGINX_SITE, includes=[UWSGI_PARAMS]
            )
        else:
            target = (
                f"{address}|uwsgi://wsgiserve/"
                if address.startswith("unix:")
                else f"uwsgi://{address}/"
            )
            site = fill_template(
                APACHE_SITE.read_text(), {"WSGISERVE": [target], "LISTEN": ["@LISTEN@"]}
            )
            started = start_apache(directory / "apache", site, modules=APACHE_MODULES)
    except BaseException:
        server.stop()
        raise
    return Stack([server], started)


@pytest.fixture(
    scope="module",
    params=[(f, t) for f in ("nginx", "apache") for t in ("unix", "tcp")],
    ids=lambda param: "-".join(param),
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UwsgiStack]:
    front, transport = request.param
    directory = tmp_path_factory.mktemp(f"uwsgi-{front}-{transport}")
    with run_directory() as run_dir, start_stack(directory, run_dir, front, transport) as started:
        yield started


def test_debian_ships_uwsgi_params() -> None:
    assert UWSGI_PARAMS.is_file(), "nginx-common's uwsgi_params is missing: apt-get install nginx"


def test_get_with_client_address_and_scheme(stack: UwsgiStack) -> None:
    response = httpx.get(
        f"{stack.url}/env?a=1&b=%C3%A9",
        headers={"X-Forwarded-Proto": "https", "X-Custom": "yes"},
        timeout=CLIENT_TIMEOUT,
    )
    assert response.status_code == 200, f"{response.text}\n{stack.front.diagnostics()}"
    seen = response.json()
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["PATH_INFO"] == "/env"
    assert seen["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert seen["REQUEST_URI"] == "/env?a=1&b=%C3%A9"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"  # the client the web server saw
    assert seen["wsgi.url_scheme"] == "http"  # the web server's scheme, not the client's
    assert seen["SERVER_PORT"] == str(stack.front.port)
    # Debian's uwsgi_params passes nginx's $host (no port); Apache passes the Host header.
    assert seen["HTTP_HOST"] in ("127.0.0.1", f"127.0.0.1:{stack.front.port}")
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SCRIPT_NAME"] == ""
    assert "server" in response.headers  # a real HTTP answer passed through


def test_form_post(stack: UwsgiStack) -> None:
    response = httpx.post(
        f"{stack.url}/env", data={"name": "Zoë", "n": "3"}, timeout=CLIENT_TIMEOUT
    )
    seen = response.json()
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert seen["form"] == {"name": ["Zoë"], "n": ["3"]}


def test_upload_5_mb(stack: UwsgiStack) -> None:
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


def test_streamed_response_arrives_progressively(stack: UwsgiStack, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    with httpx.stream(
        "GET", f"{stack.url}/stream", params={"marker": str(marker)}, timeout=CLIENT_TIMEOUT
    ) as response:
        lines = response.iter_lines()
        assert next(lines) == "first"  # before the app may produce the rest
        marker.touch()
        assert list(lines) == ["second"]


def test_sub_path_mount(stack: UwsgiStack) -> None:
    response = httpx.get(f"{stack.url}/sub/env", timeout=CLIENT_TIMEOUT)
    seen = response.json()
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/sub", "/env")


def test_code_loading_vars_never_reach_the_app(stack: UwsgiStack) -> None:
    # A client cannot set uwsgi vars through nginx; its header becomes HTTP_UWSGI_FILE,
    # which is only a header. No UWSGI_* key reaches the environ.
    response = httpx.get(
        f"{stack.url}/env", headers={"UWSGI-File": "/tmp/x.py"}, timeout=CLIENT_TIMEOUT
    )
    assert response.json()["uwsgi_keys"] == []
