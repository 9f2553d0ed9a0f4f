"""Logging set-up and the access log (gunicorn's default format, every field escaped)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from .exchange import Exchange

ERROR_LOG = "wsgiserve.error"
ACCESS_LOG = "wsgiserve.access"

# Control characters (and so ANSI escape sequences) from a request never reach a log.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def configure(level: str, access_logfile: str | None = None) -> None:
    """Send the error log to stderr at `level`; the access log to `access_logfile` if given."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                          "%Y-%m-%d %H:%M:%S %z")
    )
    error_log = logging.getLogger(ERROR_LOG)
    error_log.handlers[:] = [handler]
    error_log.setLevel(level.upper())
    error_log.propagate = False
    access_log = logging.getLogger(ACCESS_LOG)
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
    if access_logfile:
        stream: TextIO = (
            sys.stdout if access_logfile == "-"
            else open(access_logfile, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        )
        access_handler = logging.StreamHandler(stream)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.handlers[:] = [access_handler]


class AccessLog:
    """Formats one line per request in gunicorn's default access-log format."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(ACCESS_LOG)

    def __call__(self, exchange: Exchange, status: int, sent: int) -> None:
        environ = exchange.environ
        request_line = (
            f"{environ['REQUEST_METHOD']} {environ.get('RAW_URI', '')} "
            f"{environ['SERVER_PROTOCOL']}"
        )
        fields: list[Any] = [
            escape(environ.get("REMOTE_ADDR", "-") or "-"),
            "-",
            "-",
            time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            f'"{escape(request_line)}"',
            status,
            sent if sent else "-",
            f'"{escape(environ.get("HTTP_REFERER", "-"))}"',
            f'"{escape(environ.get("HTTP_USER_AGENT", "-"))}"',
        ]
        self._logger.info(" ".join(str(field) for field in fields))
