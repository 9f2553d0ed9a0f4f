"""HTTPS with certificates made by trustme, through the command and through the Python API."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

import wsgiserve

from .support import run_cli, start_server


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    files = {"cert": folder / "cert.pem", "key": folder / "key.pem", "ca": folder / "ca.pem"}
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    authority.cert_pem.write_to_path(str(files["ca"]))
    return files


def scheme_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.url_scheme"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def tls_server(cert_files: dict[str, Path]) -> Iterator[wsgiserve.BackgroundServer]:
    with wsgiserve.background_server(
        scheme_app, threads=2, certfile=str(cert_files["cert"]), keyfile=str(cert_files["key"])
    ) as server:
        yield server


def test_https_request_sees_the_https_scheme(
    tls_server: wsgiserve.BackgroundServer, cert_files: dict[str, Path]
) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(cert_files["ca"]))
    with httpx.Client(verify=context) as client:
        for _ in range(3):  # keep-alive over TLS
            response = client.get(tls_server.url + "/")
            assert (response.status_code, response.text) == (200, "https")


def test_plain_http_to_the_tls_port_gets_no_response(
    tls_server: wsgiserve.BackgroundServer,
) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/", timeout=3)


def test_the_command_serves_https(cert_files: dict[str, Path]) -> None:
    server = start_server(
        "tests.integration.apps.plain_app:app",
        "--certfile",
        str(cert_files["cert"]),
        "--keyfile",
        str(cert_files["key"]),
    )
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert_files["ca"]))
        response = httpx.get(server.url + "/hello", verify=context, timeout=5)
        assert response.status_code == 200
    finally:
        assert server.stop() == 0


def test_a_missing_key_file_is_a_clear_startup_error(
    cert_files: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "tests.integration.apps.plain_app:app",
        "-b",
        "127.0.0.1:0",
        "--certfile",
        str(cert_files["cert"]),
        "--keyfile",
        str(tmp_path / "missing.pem"),
    )
    assert result.returncode != 0
    assert "--keyfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_client_that_never_starts_the_handshake_is_dropped_after_the_header_timeout(
    cert_files: dict[str, Path],
) -> None:
    # asyncio's default would hold such a client for 60 s, outside every connection count.
    with (
        wsgiserve.background_server(
            scheme_app,
            threads=1,
            header_timeout=1,
            certfile=str(cert_files["cert"]),
            keyfile=str(cert_files["key"]),
        ) as server,
        socket.create_connection(server.address) as silent,
    ):
        silent.settimeout(15)  # a TimeoutError here means the server held on
        try:
            data = silent.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b""


SSL_CONTEXT_HOOK = """\
def ssl_context(conf, default_ssl_context_factory):
    context = default_ssl_context_factory()
    context.set_alpn_protocols(["http/1.1"])
    return context
"""


def test_gunicorns_ssl_context_hook_builds_the_servers_context(
    cert_files: dict[str, Path], tmp_path: Path
) -> None:
    # The hook was ignored without a word.
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(SSL_CONTEXT_HOOK)
    server = start_server(
        "tests.integration.apps.plain_app:app",
        "-w",
        "1",
        "-c",
        str(conf),
        "--certfile",
        str(cert_files["cert"]),
        "--keyfile",
        str(cert_files["key"]),
    )
    try:
        context = ssl.create_default_context(cafile=str(cert_files["ca"]))
        context.set_alpn_protocols(["h2", "http/1.1"])
        host, port = server.host_port
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.selected_alpn_protocol() == "http/1.1"  # set by the hook
    finally:
        assert server.stop() == 0
