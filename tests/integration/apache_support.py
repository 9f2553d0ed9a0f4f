"""Run a real Apache httpd in front of wsgiserve, configured from ``docs/apache.conf.example``.

The site configuration is the documented example with its placeholders filled in (see
`site_from_example`), so the configuration users copy is the one the tests run. Around it
goes a small main configuration that loads modules from Debian's module directory and keeps
everything Apache writes (pid file, error log, runtime files) under one directory.

Apache cannot be handed a listening socket, so it binds its own port: a random one, tried
again with another when it is taken (Apache then exits saying so). `start_apache` takes any
site text and extra modules, so other tests (mod_proxy_uwsgi) can reuse it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.polling import eventually

from .nginx_support import fill_template
from .support import REPO_ROOT, STOP_TIMEOUT, StderrLog

TEMPLATE = REPO_ROOT / "docs" / "apache.conf.example"
MODULES_DIR = Path("/usr/lib/apache2/modules")
# What the documented example needs, as `a2enmod` names them (module name, file stem).
MODULES = (
    ("mpm_event", "mod_mpm_event"),
    ("authz_core", "mod_authz_core"),
    ("headers", "mod_headers"),
    ("proxy", "mod_proxy"),
    ("proxy_http", "mod_proxy_http"),
    ("proxy_balancer", "mod_proxy_balancer"),
    ("lbmethod_byrequests", "mod_lbmethod_byrequests"),
    ("slotmem_shm", "mod_slotmem_shm"),
)
START_TIMEOUT = 15.0  # seconds, for Apache to write its pid file
PORT_ATTEMPTS = 8  # random ports tried before giving up
MISSING = (
    "apache2 is not installed, and these tests need it: `make test-tools` installs it "
    "(apt-get install -y apache2), or install Apache httpd yourself"
)

MAIN_CONF = """\
ServerRoot "{root}"
DefaultRuntimeDir "{root}"
PidFile "{root}/apache2.pid"
Mutex file:{root} default
ErrorLog "{root}/error.log"
LogLevel warn proxy:info proxy_balancer:info
{modules}
{user}
ServerName localhost
Listen 127.0.0.1:{port}
# Few processes and threads: a shared test machine, and enough for the tests' clients.
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
Include "{root}/site.conf"
"""


def apache_binary() -> str:
    """The apache2 executable; fails the test (never skips it) when there is none."""
    found = shutil.which("apache2") or shutil.which("apache2", path="/usr/sbin:/usr/local/sbin")
    if found is None or not MODULES_DIR.is_dir():
        pytest.fail(MISSING, pytrace=False)
    return found


def site_from_example(
    members: Sequence[str], mount: str = "/", server_name: str = "localhost"
) -> str:
    """``docs/apache.conf.example`` filled in; ``@LISTEN@`` is left for `start_apache`.

    Args:
        members: the ``@WSGISERVE@`` values, such as ``http://127.0.0.1:8000`` or
            ``unix:/run/wsgiserve/app.sock|http://localhost``.
        mount: the ``@MOUNT@`` path, ``/`` or a sub-path with its trailing slash.
        server_name: the ``@SERVER_NAME@`` value.
    """
    return fill_template(
        TEMPLATE.read_text(),
        {
            "WSGISERVE": list(members),
            "MOUNT": [mount],
            "SERVER_NAME": [server_name],
            "LISTEN": ["@LISTEN@"],  # filled once the port is chosen
        },
    )


def member(server_address: str) -> str:
    """A wsgiserve "Listening at" address as a BalancerMember URL.

    Over a unix socket the part after ``|`` names the member, and must differ between
    members: Apache keys its connection pools by it, so two members both called
    ``http://localhost`` share one pool and one socket. The socket's file name is used.
    """
    if server_address.startswith("unix:"):
        name = re.sub(r"[^A-Za-z0-9-]", "-", Path(server_address).stem).strip("-")
        return f"{server_address}|http://{name or 'wsgiserve'}"
    return server_address


def _user_directive() -> str:
    # As root, Apache refuses to run its workers as root; Debian runs them as www-data,
    # and so do the tests (which is what makes the unix socket's group matter).
    return "User www-data\nGroup www-data" if os.geteuid() == 0 else ""


@dataclass
class Apache:
    """A foreground Apache parent (``-DFOREGROUND``) with its children, and its port."""

    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    log: StderrLog

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error.log)"

    def diagnostics(self) -> str:
        return f"apache2 stderr:\n{self.log.text}\napache2 error.log:\n{self.error_log}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM to the parent (by pid), then SIGKILL to it and its children."""
        try:
            if self.proc.poll() is None:
                children = _children(self.proc.pid)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    for pid in [self.proc.pid, *children]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout)
        finally:
            self.log.join()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        return self.proc.returncode


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def start_apache(
    root: Path, site: str, modules: Mapping[str, str] | Sequence[tuple[str, str]] = ()
) -> Apache:
    """Start Apache serving ``site`` (its ``@LISTEN@`` placeholder becomes the address).

    Args:
        root: an empty directory for the configuration, logs and runtime files.
        site: site configuration text, such as `site_from_example` returns.
        modules: extra (module name, file stem) pairs to load, e.g.
            ``[("proxy_uwsgi", "mod_proxy_uwsgi")]``.

    Returns:
        The running Apache; it is listening and has written its pid file.
    """
    binary = apache_binary()
    root.mkdir(parents=True, exist_ok=True)
    extra = list(modules.items()) if isinstance(modules, Mapping) else list(modules)
    loads = "\n".join(
        f"LoadModule {name}_module {MODULES_DIR / stem}.so" for name, stem in [*MODULES, *extra]
    )
    failures = []
    for _ in range(PORT_ATTEMPTS):
        port = random.randint(20000, 60000)
        (root / "site.conf").write_text(site.replace("@LISTEN@", f"127.0.0.1:{port}"))
        conf = root / "apache2.conf"
        conf.write_text(
            MAIN_CONF.format(root=root, modules=loads, user=_user_directive(), port=port)
        )
        base = [binary, "-d", str(root), "-f", str(conf)]
        check = subprocess.run(
            [*base, "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        assert check.returncode == 0, f"apache2 -t rejected the configuration:\n{check.stderr}"
        proc = subprocess.Popen(
            [*base, "-DFOREGROUND"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        apache = Apache(proc, root, port, StderrLog(proc.stderr))
        try:
            if _started(apache):
                return apache
        except BaseException:
            apache.stop()
            raise
        apache.stop()
        diagnostics = apache.diagnostics()
        if "could not bind" not in diagnostics:
            raise AssertionError(f"apache2 did not start\n{diagnostics}")
        failures.append(port)
        (root / "error.log").unlink(missing_ok=True)
    raise AssertionError(f"apache2 found no free port (tried {failures})")


def _started(apache: Apache) -> bool:
    """Whether the parent wrote its pid (it is listening); False if it exited instead."""
    pid_file = apache.root / "apache2.pid"

    def settled() -> bool:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(pid_file.read_text().strip()) == apache.proc.pid:
                return True
        return apache.proc.poll() is not None

    if not eventually(settled, START_TIMEOUT):
        raise AssertionError(
            f"apache2 wrote no pid file within {START_TIMEOUT} s\n{apache.diagnostics()}"
        )
    return apache.proc.poll() is None
