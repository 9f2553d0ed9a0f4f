"""Answers with the uid and gid the worker process runs as."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"{os.getuid()} {os.getgid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
