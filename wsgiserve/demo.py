"""The demo app `make run` serves: a page that shows its own WSGI environ."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(repr(value))}</td></tr>"
        for key, value in sorted(environ.items())
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>wsgiserve demo</title>"
        "<style>body{font:15px system-ui;margin:2em}th{text-align:left;padding-right:1em}"
        "td{font-family:monospace}</style>"
        "<h1>Hello from wsgiserve</h1><p>This is the WSGI environ of your request.</p>"
        f"<table>{rows}</table>"
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
    )
    return [page]
