"""The command's sub-path and unix socket settings, end to end: flags, -e, a config file.

Requests go straight to wsgiserve (the proxies are in test_nginx.py and test_apache.py).
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import httpx
import pytest

from .support import APPS, run_cli, start_server

pytestmark = pytest.mark.timeout(60)

APP = f"{APPS}.mount_app:app"


def _mount_seen(*flags: str, path: str = "/app/env") -> tuple[str, str]:
    server = start_server(APP, *flags)
    try:
        report = httpx.get(f"{server.url}{path}", timeout=10).json()
    finally:
        server.stop()
    return report["SCRIPT_NAME"], report["PATH_INFO"]


def test_root_path_flag() -> None:
    assert _mount_seen("--root-path", "/app/") == ("/app", "/env")


def test_script_name_from_env_flag_as_gunicorn() -> None:
    # It used to be ignored: SCRIPT_NAME stayed "" and PATH_INFO kept /app.
    assert _mount_seen("-e", "SCRIPT_NAME=/app") == ("/app", "/env")


def test_root_path_in_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text('root_path = "/app"\n')
    assert _mount_seen("-c", str(config)) == ("/app", "/env")


def test_bad_root_path_is_one_paragraph_and_exit_1() -> None:
    result = run_cli(APP, "--root-path", "app", "--check-config")
    assert result.returncode == 1, result.stderr
    assert "root_path: 'app' is not a URL path" in result.stderr
    assert "Traceback" not in result.stderr


def test_socket_mode_and_group_flags(tmp_path: Path) -> None:
    gid = os.getegid()
    sock = tmp_path / "app.sock"
    server = start_server(
        APP,
        "--socket-mode",
        "640",
        "--socket-group",
        grp.getgrgid(gid).gr_name,
        binds=(f"unix:{sock}",),
    )
    try:
        info = os.stat(sock)
    finally:
        server.stop()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, gid)


def test_socket_mode_in_a_config_file_as_text(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text('socket_mode = "600"\n')
    sock = tmp_path / "app.sock"
    server = start_server(APP, "-c", str(config), binds=(f"unix:{sock}",))
    try:
        mode = stat.S_IMODE(os.stat(sock).st_mode)
    finally:
        server.stop()
    assert mode == 0o600


def test_bad_socket_mode_flag_is_one_line() -> None:
    result = run_cli(APP, "--socket-mode", "rw-rw----")
    assert result.returncode == 2
    assert "socket_mode: 'rw-rw----' is not an octal mode such as 660" in result.stderr
    assert "usage:" not in result.stderr


def test_missing_socket_directory_names_the_fix(tmp_path: Path) -> None:
    directory = tmp_path / "run" / "wsgiserve"
    result = run_cli(APP, "-b", f"unix:{directory}/app.sock")
    assert result.returncode == 1, result.stderr
    assert f"the directory {directory} does not exist" in result.stderr
    assert f"mkdir -p {directory}" in result.stderr
