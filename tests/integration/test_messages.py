"""Errors a person can act on: each start-up mistake gets one short paragraph naming the
problem and the fix, no traceback, and the exit code the README documents (1 configuration,
2 usage, 4 the app could not be imported)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from .support import APPS, subprocess_env

APP = f"{APPS}.ops_app:app"
CONFIGURATION, USAGE, APP_IMPORT = 1, 2, 4


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgiserve", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def cert_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "cert.pem"
    trustme.CA().issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(path))
    return path


CASES = [
    # (id, arguments, exit code, what the message must say)
    ("file-path-for-app", ["./hello.py"], APP_IMPORT, "like hello:app"),
    # The user's file and line, not `<frozen os>:679` where os.environ raised.
    ("import-error-line", ["needs_env:app"], APP_IMPORT, "needs_env.py:2: KeyError"),
    ("syntax-error-line", ["half_typed:app"], APP_IMPORT, "half_typed.py:1: SyntaxError"),
    ("pyproject-as-config", [APP, "-c", "pyproject.toml"], CONFIGURATION, "drop -c"),
    ("missing-chdir", [APP, "--chdir", "/nonexistent-dir"], CONFIGURATION, "--chdir"),
    ("unknown-user", [APP, "-u", "no-such-user-xyz"], CONFIGURATION, "no such user"),
    (
        "pidfile-dir-missing",
        [APP, "-p", "/nonexistent-dir/x.pid"],
        CONFIGURATION,
        "cannot write the pidfile",
    ),
    ("url-as-bind", [APP, "-b", "http://127.0.0.1:8020"], CONFIGURATION, "not a URL"),
    ("bad-umask", [APP, "--umask", "nine"], USAGE, "an octal umask"),
    ("certfile-without-key", [APP, "--certfile", "{cert}"], CONFIGURATION, "--keyfile"),
]


@pytest.mark.parametrize(
    ("args", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_start_up_mistake_is_one_paragraph_and_its_exit_code(
    tmp_path: Path, cert_only: Path, args: list[str], code: int, says: str
) -> None:
    (tmp_path / "hello.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "pyproject.toml").write_text("[tool.wsgiserve]\nthreads = 2\n")
    (tmp_path / "needs_env.py").write_text('import os\nDB = os.environ["NO_SUCH_VARIABLE_X"]\n')
    (tmp_path / "half_typed.py").write_text("def app(environ, start_response:\n")
    result = run(tmp_path, *[arg.format(cert=cert_only) for arg in args], "--check-config")
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def test_a_metrics_bind_clash_names_metrics_bind_not_b(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, APP, "-b", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}")
    assert result.returncode == CONFIGURATION, result.stderr
    assert f"--metrics-bind: cannot bind 127.0.0.1:{port}: the address is already in use" in (
        result.stderr
    )
    assert "with -b" not in result.stderr
    assert "Traceback" not in result.stderr
