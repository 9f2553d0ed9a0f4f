"""The servers compared by ``bench``: how each one is started.

Every peer gets the idiomatic one-process configuration with ``threads`` threads
running the app (bjoern and gunicorn's sync worker have no thread pool: one thread).
Executables and ``-m`` modules resolve inside the benchmark virtualenv.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import HOST, REPO_ROOT

# `make compiled` puts the compiled build here; the wsgiserve-compiled peer imports it first.
COMPILED = REPO_ROOT / "build" / "compiled"


@dataclass(frozen=True)
class Launch:
    """What a command line is built from."""

    python: str  # the benchmark virtualenv's interpreter
    bindir: Path  # its bin/ directory
    app: str  # MODULE:ATTRIBUTE
    port: int
    threads: int
    workers: int

    def exe(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def bind(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Peer:
    name: str
    argv: Callable[[Launch], list[str]]
    needs: str  # an importable module that must be present for this peer to run
    threaded: bool = True  # runs the app in a pool of `threads` threads
    multi_process: bool = False  # can run several worker processes (the -w 2 scenario)
    note: str = ""
    built: Path | None = None  # a build this peer runs from, which must exist

    def available(self) -> bool:
        if self.built is not None and not self.built.is_dir():
            return False
        return importlib.util.find_spec(self.needs) is not None

    def missing(self, prefix: str) -> str:
        """Why `available()` is false."""
        if self.built is not None and not self.built.is_dir():
            return f"{self.built} is not built (make compiled)"
        return f"{self.needs} is not installed in {prefix}"


def _runner(module: str, extra: Callable[[Launch], list[str]]) -> Callable[[Launch], list[str]]:
    def argv(x: Launch) -> list[str]:
        return [x.python, "-m", f"benchmarks.runners.{module}", x.app, "--bind", x.bind, *extra(x)]

    return argv


def _wsgiserve(x: Launch) -> list[str]:
    return [
        x.python,
        "-m",
        "wsgiserve",
        x.app,
        "-b",
        x.bind,
        "-w",
        str(x.workers),
        "--threads",
        str(x.threads),
        "--log-level",
        "warning",
    ]


def _wsgiserve_compiled(x: Launch) -> list[str]:
    # The same command on the compiled build: PYTHONPATH puts it first, PYTHONSAFEPATH keeps
    # the checkout (the working directory) from coming before it.
    return ["env", f"PYTHONPATH={COMPILED}", "PYTHONSAFEPATH=1", *_wsgiserve(x)]


PEERS: tuple[Peer, ...] = (
    Peer("wsgiserve", _wsgiserve, needs="wsgiserve", multi_process=True),
    Peer(
        "wsgiserve-compiled",
        _wsgiserve_compiled,
        needs="wsgiserve",
        multi_process=True,
        note="the optional mypyc build (make compiled)",
        built=COMPILED,
    ),
    Peer(
        "gunicorn-gthread",
        lambda x: [
            x.exe("gunicorn"),
            "-k",
            "gthread",
            "-w",
            str(x.workers),
            "--threads",
            str(x.threads),
            "-b",
            x.bind,
            "--log-level",
            "warning",
            x.app,
        ],
        needs="gunicorn",
        multi_process=True,
    ),
    Peer(
        "gunicorn-sync",
        lambda x: [
            x.exe("gunicorn"),
            "-k",
            "sync",
            "-w",
            str(x.workers),
            "-b",
            x.bind,
            "--log-level",
            "warning",
            x.app,
        ],
        needs="gunicorn",
        threaded=False,
        multi_process=True,
        note="one request at a time per worker; no keep-alive",
    ),
    Peer(
        "waitress",
        lambda x: [x.exe("waitress-serve"), f"--listen={x.bind}", f"--threads={x.threads}", x.app],
        needs="waitress",
        note="default connection_limit=100",
    ),
    Peer(
        "granian",
        lambda x: [
            x.exe("granian"),
            "--interface",
            "wsgi",
            "--host",
            HOST,
            "--port",
            str(x.port),
            "--workers",
            str(x.workers),
            "--blocking-threads",
            str(x.threads),
            "--log-level",
            "warning",
            x.app,
        ],
        needs="granian",
        multi_process=True,
    ),
    Peer(
        "cheroot",
        lambda x: [
            x.exe("cheroot"),
            "--bind",
            x.bind,
            "--threads",
            str(x.threads),
            "--max-threads",
            str(x.threads),
            "--request-queue-size",
            "1024",
            x.app,
        ],
        needs="cheroot",
        note="listen backlog raised from 5 to 1024",
    ),
    Peer(
        "pyruvate",
        _runner("pyruvate_runner", lambda x: ["--threads", str(x.threads)]),
        needs="pyruvate",
        note="closes the connection after every response (its keep-alive is broken in 1.6.1)",
    ),
    Peer(
        "uvicorn-a2wsgi",
        _runner(
            "uvicorn_a2wsgi",
            lambda x: ["--threads", str(x.threads), "--workers", str(x.workers)],
        ),
        needs="a2wsgi",
        multi_process=True,
    ),
    Peer(
        "bjoern",
        _runner("bjoern_runner", lambda x: []),
        needs="bjoern",
        threaded=False,
        note="single-threaded",
    ),
)
PEER_NAMES = tuple(p.name for p in PEERS)
BASELINE = "wsgiserve"


def select(names: list[str] | None) -> list[Peer]:
    """Peers by name, in the order given (all of them for None).

    Raises:
        ValueError: an unknown name.
    """
    if not names:
        return list(PEERS)
    by_name = {p.name: p for p in PEERS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown server(s) {unknown}; choose from {', '.join(PEER_NAMES)}")
    return [by_name[n] for n in names]
