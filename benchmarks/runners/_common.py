"""Argument parsing and app loading shared by the runner scripts."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

WSGIApp = Callable[..., Any]


def load_app(spec: str) -> WSGIApp:
    """Import ``module:attribute`` and return the attribute.

    Raises:
        SystemExit: the spec has no colon.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise SystemExit(f"app must be MODULE:ATTRIBUTE, not {spec!r}")
    app: WSGIApp = getattr(importlib.import_module(module_name), attr)
    return app


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """``APP --bind HOST:PORT [--threads N] [--workers N]`` for every runner."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("app", help="WSGI app as MODULE:ATTRIBUTE")
    parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("--threads", type=int, default=1, help="threads running the app")
    parser.add_argument("--workers", type=int, default=1, help="processes (where supported)")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    args.host, args.port = host, int(port)
    return args
