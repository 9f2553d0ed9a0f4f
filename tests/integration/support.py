"""Helpers for the integration tests: a wsgiserve CLI subprocess, and a raw HTTP/1.1 reader.

Everything here is bounded: each wait has a deadline, and every process started is stopped by
its pid when its owner stops it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = "tests.integration.apps"
START_TIMEOUT = 20.0  # seconds, for the server to log every "Listening at:" line
STOP_TIMEOUT = 15.0  # seconds, for a graceful stop before the process is killed
LISTENING = re.compile(r"Listening at: (?P<address>\S+) \((?P<pid>\d+)\)")


def subprocess_env() -> dict[str, str]:
    """The environment for a server subprocess: the repository importable, output unbuffered.

    The repository goes after what PYTHONPATH already names, so that the compiled build
    `make test-compiled` puts there is the wsgiserve a subprocess imports.
    """
    env = dict(os.environ)
    parts = [*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wsgiserve ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "wsgiserve", *args],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class StderrLog:
    """Drains a process's stderr on a thread, so the pipe never fills, and lets tests wait on it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._drain, name="stderr-drain", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def wait_for(
        self, pattern: re.Pattern[str], count: int = 1, timeout: float = 10.0
    ) -> list[re.Match[str]]:
        """Wait until ``count`` lines match ``pattern``; raise if stderr ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in map(pattern.search, self._lines) if m]
                if len(matches) >= count:
                    return matches[:count]
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "stderr closed" if self._eof else f"no match within {timeout} s"
                    raise AssertionError(
                        f"{why} waiting for {pattern.pattern!r} x{count}; stderr was:\n"
                        + "\n".join(self._lines)
                    )
                self._cond.wait(left)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


@dataclass
class ServerProcess:
    """One ``python -m wsgiserve`` subprocess and the addresses it reported."""

    proc: subprocess.Popen[bytes]
    log: StderrLog
    addresses: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """The first ``http://`` address the server reported."""
        return next(a for a in self.addresses if a.startswith("http"))

    @property
    def host_port(self) -> tuple[str, int]:
        """The first TCP address as ``(host, port)``, brackets removed from IPv6 hosts."""
        netloc = self.url.split("://", 1)[1].rstrip("/")
        host, _, port = netloc.rpartition(":")
        return host.strip("[]"), int(port)

    def worker_pids(self) -> set[int]:
        """The live (not zombie) child processes of the supervisor."""
        pids = set()
        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    pids.add(child.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    def rss(self) -> int:
        """Resident set size in bytes of the server and any worker processes it started."""
        root = psutil.Process(self.proc.pid)
        total = int(root.memory_info().rss)
        for child in root.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the server, wait for it (killing it by pid if it overstays); its exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
        finally:
            self.log.join()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        return self.proc.returncode


def start_server(
    app: str,
    *extra: str,
    binds: Sequence[str] = ("127.0.0.1:0",),
    threads: int = 4,
) -> ServerProcess:
    """Start the CLI and return once it has logged one ``Listening at:`` line per bind."""
    argv = [sys.executable, "-m", "wsgiserve", app, "--threads", str(threads)]
    for bind in binds:
        argv += ["-b", bind]
    argv += list(extra)
    return start_listening(argv, listeners=len(binds))


def start_listening(
    argv: Sequence[str],
    listeners: int = 1,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `argv` (any program that serves through wsgiserve) in `cwd` with `env` (default:
    the repository importable) and return once it has logged `listeners` ``Listening at:``
    lines."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=subprocess_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    server = ServerProcess(proc, StderrLog(proc.stderr))
    try:
        matches = server.log.wait_for(LISTENING, count=listeners, timeout=START_TIMEOUT)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    server.addresses = [m["address"] for m in matches]
    return server


# --- a deliberately small raw HTTP/1.1 client, for checking what is on the wire -------------


@dataclass
class RawResponse:
    """A response as read off the socket; ``chunks`` keeps chunked framing visible."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes] | None = None

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


class Wire:
    """A blocking socket with a receive buffer, for reading responses byte-exactly."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 30.0) -> Wire:
        sock = socket.create_connection((host, port), timeout=timeout)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError(f"peer closed; unread buffer {bytes(self._buf[:200])!r}")
        self._buf += data

    def read_until(self, marker: bytes, limit: int = 65536) -> bytes:
        while (end := self._buf.find(marker)) < 0:
            if len(self._buf) > limit:
                raise AssertionError(f"no {marker!r} in {bytes(self._buf[:200])!r}")
            self._fill()
        end += len(marker)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def discard_exact(self, size: int) -> int:
        """Read and drop ``size`` body bytes without keeping them; how many were read."""
        seen = min(size, len(self._buf))
        del self._buf[:seen]
        while seen < size:
            data = self.sock.recv(min(1024 * 1024, size - seen))
            if not data:
                break
            seen += len(data)
        return seen

    def read_head(self) -> tuple[int, list[tuple[str, str]]]:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep, f"header line without a colon: {line!r}"
            assert name == name.strip(), f"whitespace around a field name: {line!r}"
            headers.append((name, value.strip()))
        return int(status), headers

    def read_chunked(self) -> list[bytes]:
        """Read a chunked body strictly per RFC 9112 section 7.1; the chunks, in order."""
        chunks: list[bytes] = []
        while True:
            size_line = self.read_until(b"\r\n", limit=1024)[:-2]
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                trailer = self.read_until(b"\r\n", limit=8192)
                assert trailer == b"\r\n", f"unexpected trailer {trailer!r}"
                return chunks
            chunks.append(self.read_exact(size))
            assert self.read_exact(2) == b"\r\n", "chunk data not followed by CRLF"

    def read_response(self, head_request: bool = False) -> RawResponse:
        status, headers = self.read_head()
        response = RawResponse(status, headers, b"")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return response
        encoding = (response.header("transfer-encoding") or "").lower()
        if encoding:
            assert encoding == "chunked", encoding
            response.chunks = self.read_chunked()
            response.body = b"".join(response.chunks)
        elif (length := response.header("content-length")) is not None:
            response.body = self.read_exact(int(length))
        else:
            parts = [bytes(self._buf)]
            self._buf.clear()
            while data := self.sock.recv(65536):
                parts.append(data)
            response.body = b"".join(parts)
        return response


def request_bytes(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    """Serialise a request head (with a Host header) and body."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


StartServer = Callable[..., ServerProcess]
OpenWire = Callable[[str, int], Wire]
