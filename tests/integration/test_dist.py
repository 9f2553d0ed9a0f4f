"""The distribution: the wheel `make dist` builds installs by its own name in a fresh virtual
environment, and the `wsgiserve` it installs serves a request."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import httpx

from .support import REPO_ROOT, start_listening

DISTRIBUTION = "wsgiserve-server"  # `wsgiserve` on the package index is another project
NOT_SHIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".venv-bench",
    "results",
)


def test_the_wheel_installs_by_its_name_in_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building never writes into the checkout
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SHIPPED)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(source)],
        env={key: value for key, value in os.environ.items() if key != "WSGISERVE_COMPILE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("wsgiserve_server-")
    # The default build is pure Python, for any platform; compiling is asked for by name.
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "Name: wsgiserve-server" in text
    assert "License-Expression: MIT" in text
    assert any(name.endswith("licenses/LICENSE") for name in names), names

    # Run from elsewhere and without PYTHONPATH: what serves is the installed wheel.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    server = start_listening(
        [str(environment / "bin" / "wsgiserve"), "wsgiserve.demo:app", "-b", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
    )
    try:
        response = httpx.get(server.url + "/", timeout=10)
        assert response.status_code == 200
        where = subprocess.run(
            [str(python), "-c", "import wsgiserve; print(wsgiserve.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert where.stdout.startswith(str(environment)), where.stdout
    finally:
        assert server.stop() == 0
