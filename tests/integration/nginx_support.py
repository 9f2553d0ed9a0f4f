"""Run a real nginx in front of wsgiserve, configured from ``docs/nginx.conf.example``.

The site configuration is the documented example with its placeholders filled in, so the
configuration users copy is the one the tests run. Around it goes a small main configuration
that keeps everything nginx writes (pid file, logs, lock and temp files) under one directory.

nginx is not handed a port to bind. The test binds and listens on each address itself and
passes the sockets down the way nginx passes them to a new binary on upgrade (the ``NGINX``
environment variable: ``fd;fd;``), so the port is known and already accepting before nginx
starts, and no other process can take it in between.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.support.polling import eventually

from .support import REPO_ROOT, STOP_TIMEOUT, StderrLog

TEMPLATE = REPO_ROOT / "docs" / "nginx.conf.example"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
START_TIMEOUT = 15.0  # seconds, for nginx to write its pid file
MISSING = (
    "nginx is not installed, and these tests need it: `make test` installs it "
    "(apt-get install -y nginx), or install nginx yourself and put it on PATH"
)

MAIN_CONF = """\
{user}
worker_processes 2;
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;

    include {prefix}/wsgiserve.conf;
}}
"""


def nginx_binary() -> str:
    """The nginx executable; fails the test (never skips it) when there is none."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


def fill_template(template: str, values: Mapping[str, Sequence[str]]) -> str:
    """The template with each line holding ``@NAME@`` repeated once per value of NAME.

    Raises:
        ValueError: a line holds two placeholders, a placeholder has no values, or a
            value was given for a placeholder the template does not have.
    """
    out: list[str] = []
    used: set[str] = set()
    for line in template.splitlines():
        names = set(PLACEHOLDER.findall(line))
        if not names:
            out.append(line)
            continue
        if len(names) > 1:
            raise ValueError(f"one placeholder per line, please: {line!r}")
        name = names.pop()
        if not values.get(name):
            raise ValueError(f"no value for @{name}@ in {line!r}")
        used.add(name)
        out.extend(line.replace(f"@{name}@", value) for value in values[name])
    if unused := set(values) - used:
        raise ValueError(f"the template has no {sorted(unused)} placeholder")
    return "\n".join(out) + "\n"


def _listen(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, 0))
        sock.listen(511)  # nginx's own default backlog
        # nginx uses an inherited socket as it finds it (ngx_open_listening_sockets: "TODO:
        # nonblocking"); its own are non-blocking. On a blocking one, a worker woken for a
        # connection that the other worker accepted first sits in accept4() - with every
        # request it holds - until another connection arrives (a 30 s client timeout here).
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_spec(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def web_server_group() -> str:
    """The group nginx's and Apache's workers run as: www-data as root (Debian's), else ours.

    The README's guide gives the unix socket to this group (``--socket-group``).
    """
    return "www-data" if os.geteuid() == 0 else grp.getgrgid(os.getegid()).gr_name


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    """The guide's /run/wsgiserve, made as `mkdir -p` makes it: anyone may enter (0755).

    pytest's own temporary directories are private (0700): a web server's workers could not
    reach a socket in them whatever the socket's mode.
    """
    directory = Path(tempfile.mkdtemp(prefix="wsgiserve-run-"))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _user_directive() -> str:
    # As root, run the workers as Debian's nginx does (user www-data), so that the unix
    # socket's permissions are tested as users meet them.
    if os.geteuid() != 0:
        return ""
    return f"user www-data {web_server_group()};"


@dataclass
class Nginx:
    """A foreground nginx master (``daemon off``) with its workers, and where it listens."""

    proc: subprocess.Popen[bytes]
    prefix: Path
    sockets: list[socket.socket]
    log: StderrLog
    urls: dict[str, str] = field(default_factory=dict)  # listening host -> base URL

    @property
    def url(self) -> str:
        """The base URL on 127.0.0.1."""
        return self.urls["127.0.0.1"]

    @property
    def port(self) -> int:
        """The port on 127.0.0.1."""
        return self.port_of("127.0.0.1")

    def port_of(self, host: str) -> int:
        return int(self.urls[host].rsplit(":", 1)[1])

    @property
    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error.log)"

    def diagnostics(self) -> str:
        """nginx's stderr, error log and where its processes wait, for assertion messages."""
        return (
            f"nginx stderr:\n{self.log.text}\nnginx error.log:\n{self.error_log}\n"
            f"nginx processes waiting in (/proc/PID/wchan): {_wait_channels(self.proc.pid)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGQUIT (graceful stop) to the master, then SIGKILL to it and its workers."""
        try:
            if self.proc.poll() is None:
                workers = _children(self.proc.pid)
                self.proc.send_signal(signal.SIGQUIT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    for pid in [self.proc.pid, *workers]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout)
        finally:
            for sock in self.sockets:
                sock.close()
            self.log.join()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        return self.proc.returncode


def _wait_channels(pid: int) -> dict[int, str]:
    """pid -> the kernel function it sleeps in, for nginx's master and workers (Linux)."""
    channels = {}
    for each in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            channels[each] = Path(f"/proc/{each}/wchan").read_text() or "running"
    return channels


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def start_nginx(
    prefix: Path,
    upstreams: Sequence[str],
    hosts: Sequence[str] = ("127.0.0.1",),
    server_name: str = "localhost",
    template: Path = TEMPLATE,
    includes: Sequence[Path] = (),
    mount: str | None = None,
) -> Nginx:
    """Start nginx in front of ``upstreams`` (``unix:/path`` or ``host:port`` each).

    Args:
        prefix: an empty directory for the configuration, logs and temp files.
        upstreams: the wsgiserve instances, one ``server`` line each.
        hosts: loopback addresses to listen on, each on a fresh port.
        server_name: the value for ``@SERVER_NAME@``.
        template: the site configuration (a file of docs/).
        includes: files the site includes by name (e.g. Debian's /etc/nginx/uwsgi_params),
            copied beside it.
        mount: the value for ``@MOUNT@``: ``/``, or a sub-path with its trailing slash;
            by default ``/`` when the template has that placeholder.

    Returns:
        The running nginx; its sockets are listening, its pid file is written.
    """
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    sockets: list[socket.socket] = []
    text = template.read_text()
    values = {"WSGISERVE": list(upstreams), "SERVER_NAME": [server_name]}
    if mount is not None or "@MOUNT@" in text:
        values["MOUNT"] = [mount or "/"]
    try:
        sockets.extend(_listen(host) for host in hosts)
        values["LISTEN"] = [_listen_spec(sock) for sock in sockets]
        site = fill_template(text, values)
        (prefix / "wsgiserve.conf").write_text(site)
        for include in includes:
            shutil.copyfile(include, prefix / include.name)
        conf = prefix / "nginx.conf"
        conf.write_text(MAIN_CONF.format(user=_user_directive(), prefix=prefix))
        base = [binary, "-p", f"{prefix}/", "-c", str(conf)]
        check = subprocess.run(
            [*base, "-t", "-q"], capture_output=True, text=True, timeout=30, check=False
        )
        assert check.returncode == 0, f"nginx -t rejected the configuration:\n{check.stderr}"
        fds = [sock.fileno() for sock in sockets]
        proc = subprocess.Popen(
            [*base, "-g", "daemon off; master_process on;"],
            env={**os.environ, "NGINX": "".join(f"{fd};" for fd in fds)},
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    assert proc.stderr is not None
    nginx = Nginx(proc, prefix, sockets, StderrLog(proc.stderr))
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        nginx.urls[host] = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        _wait_for_pid_file(nginx)
    except BaseException:
        nginx.stop()
        raise
    return nginx


def _wait_for_pid_file(nginx: Nginx) -> None:
    """Wait until the master wrote its pid: its configuration is loaded, workers starting."""
    pid_file = nginx.prefix / "nginx.pid"

    def written() -> bool:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(pid_file.read_text().strip()) == nginx.proc.pid:
                return True
        if nginx.proc.poll() is not None:
            raise AssertionError(
                f"nginx exited with {nginx.proc.returncode} while starting\n{nginx.diagnostics()}"
            )
        return False

    if not eventually(written, START_TIMEOUT):
        raise AssertionError(
            f"nginx wrote no pid file within {START_TIMEOUT} s\n{nginx.diagnostics()}"
        )
