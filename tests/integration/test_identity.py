"""--user/--group: the workers run as the given identity once the sockets are bound."""

from __future__ import annotations

import os
import pwd

import httpx

from .support import run_cli, start_server

APP = "tests.integration.apps.whoami_app:app"


def test_workers_run_as_the_given_user() -> None:
    nobody = pwd.getpwnam("nobody")
    if os.getuid() != 0:
        result = run_cli(APP, "-b", "127.0.0.1:0", "--user", "nobody")
        assert result.returncode != 0
        assert "needs root" in result.stderr
        return
    server = start_server(APP, "--user", "nobody")
    try:
        response = httpx.get(server.url + "/", timeout=5)
        assert response.text == f"{nobody.pw_uid} {nobody.pw_gid}"
    finally:
        assert server.stop() == 0


def test_an_unknown_user_is_a_clear_error() -> None:
    result = run_cli(APP, "-b", "127.0.0.1:0", "--user", "no-such-user-here")
    assert result.returncode != 0
    assert "no such user" in result.stderr
    assert "Traceback" not in result.stderr
