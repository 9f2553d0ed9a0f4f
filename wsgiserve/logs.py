"""Logging set-up: the error log, where the access log's lines go, --log-config, capture-output.

Threads: `configure` and `reopen_files` run on the main thread (for SIGUSR1, call `reopen_files`
from the loop or supervisor, never inside the signal handler itself). What an access-log line
says is `accesslog`'s business.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import logging.config
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from .accesslog import ACCESS_LOG
from .errors import StartupError

ERROR_LOG = "wsgiserve.error"
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
_OFF = logging.CRITICAL + 1

# Unlike the access log (`accesslog.escape`), the error log keeps quotes and non-ASCII text; it
# loses only C0/C1 controls (tracebacks keep \n).
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_TRACEBACK_CONTROLS = {code: text for code, text in _CONTROLS.items() if code != ord("\n")}


class _ErrorFormatter(logging.Formatter):
    """The error log's format; request data in a message cannot forge lines or colour a tty."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROLS)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei).translate(_TRACEBACK_CONTROLS)

    def formatStack(self, stack_info: str) -> str:
        return stack_info.translate(_TRACEBACK_CONTROLS)  # a stack keeps its lines


class _JsonErrorFormatter(logging.Formatter):
    """--error-log-json: one object per line. A traceback or a stack is one field, its lines
    kept as \\n inside the string, so a log collector takes the record whole."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, ERROR_DATE_FORMAT),
            "level": record.levelname,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # ASCII only: every control character (and terminal escape) becomes a \\u escape.
        return json.dumps(entry, ensure_ascii=True)


class _ReopenableFileHandler(logging.FileHandler):
    """A log file `reopen_files` can reopen at its path after logrotate moved it away."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "a", encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        fresh = self._open()  # first, so a failure leaves the old file in use
        old = self.setStream(fresh)  # under the handler's lock: no emit sees a closed stream
        if old is not None:
            old.close()


# What `configure` installed, for `reopen_files` and the next `configure`; guarded by _lock.
_lock = threading.Lock()
_installed: list[tuple[logging.Logger, logging.Handler]] = []
_captured: list[str] = []  # the error log's path while fds 1 and 2 point at it


def configure(
    log_level: str = "info",
    access_logfile: str | None = None,
    *,
    error_logfile: str | None = None,
    log_config: str | None = None,
    capture_output: bool = False,
    error_log_json: bool = False,
) -> None:
    """Set up the error log and the access log; calling it again replaces the earlier set-up.

    Args:
        log_level: the error log's level, e.g. "info".
        error_logfile: a path, or None / "-" for stderr.
        access_logfile: a path, "-" for stdout, or None for no access log.
        log_config: a .json or .toml file for `logging.config.dictConfig`, applied first. A
            logger it names (or whose ancestor it names) is left to it entirely; the settings
            above configure only `wsgiserve.error` / `wsgiserve.access` when it does not.
        capture_output: point file descriptors 1 and 2 at `error_logfile` (if it is a file), so
            the app's prints and C extensions' stderr land in the error log.
        error_log_json: write the error log as one JSON object per line.

    Raises:
        StartupError: a log file cannot be opened, or the log config is unreadable or invalid.
    """
    with _lock:
        _release()
        taken = set(_apply_config(log_config)) if log_config else set()
        error_log = logging.getLogger(ERROR_LOG)
        if not _claim(error_log, taken):
            error_log.setLevel(log_level.upper())
            handler = _open_handler(error_logfile, sys.stderr)
            handler.setFormatter(
                _JsonErrorFormatter()
                if error_log_json
                else _ErrorFormatter(ERROR_FORMAT, ERROR_DATE_FORMAT)
            )
            _install(error_log, handler)
        access_log = logging.getLogger(ACCESS_LOG)
        if not _claim(access_log, taken):
            access_log.setLevel(logging.INFO if access_logfile else _OFF)
            if access_logfile:
                handler = _open_handler(access_logfile, sys.stdout)
                handler.setFormatter(logging.Formatter("%(message)s"))
                _install(access_log, handler)
        _captured.clear()
        if capture_output and error_logfile not in (None, "", "-"):
            _captured.append(str(error_logfile))
            _capture(_captured[0])


def access_log_enabled() -> bool:
    """Whether access-log lines go anywhere (an access log file, or a log config that names it)."""
    return logging.getLogger(ACCESS_LOG).isEnabledFor(logging.INFO)


def reopen_files() -> None:
    """Reopen every log file `configure` opened, at its path (logrotate `create` mode, SIGUSR1).

    Safe while worker threads log: each swap happens under its handler's lock. A file that cannot
    be reopened keeps its old stream, and the failure goes to the error log.
    """
    with _lock:
        for _, handler in _installed:
            if isinstance(handler, _ReopenableFileHandler):
                try:
                    handler.reopen()
                except OSError as error:
                    logging.getLogger(ERROR_LOG).error("cannot reopen log file: %s", error)
        for path in _captured:
            try:
                _capture(path)
            except OSError as error:
                logging.getLogger(ERROR_LOG).error("cannot reopen captured output: %s", error)


def _release() -> None:
    for logger, handler in _installed:
        logger.removeHandler(handler)
        handler.close()  # a StreamHandler leaves sys.stdout/sys.stderr open
    _installed.clear()


def _claim(logger: logging.Logger, taken: set[str]) -> bool:
    """Whether the log config owns `logger`; if not, `logger` is ours alone from here on."""
    named = [name for name in taken if logger.name == name or logger.name.startswith(name + ".")]
    if named and logger.name not in named:  # an ancestor is configured: hand lines up to it
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    if not named:
        logger.propagate = False
        logger.handlers.clear()
    return bool(named)


def _install(logger: logging.Logger, handler: logging.Handler) -> None:
    logger.addHandler(handler)
    _installed.append((logger, handler))


def _open_handler(target: str | None, stream: TextIO) -> logging.Handler:
    if target in (None, "", "-"):
        return logging.StreamHandler(stream)
    try:
        return _ReopenableFileHandler(str(target))
    except OSError as error:
        raise StartupError(f"cannot open log file {target}: {error.strerror}") from None


def _capture(path: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)  # a file is block-buffered otherwise


def _apply_config(path: str) -> list[str]:
    """Apply the dictConfig in `path`; return the names of the loggers it configures."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read log config {path}: {error.strerror}") from None
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".toml"):
        raise StartupError(f"log config {path}: expected a .json or .toml file")
    try:
        config = json.loads(data) if suffix == ".json" else _toml().loads(data.decode("utf-8"))
    except ValueError as error:  # JSONDecodeError, TOMLDecodeError and UnicodeDecodeError
        raise StartupError(f"log config {path} is not valid {suffix[1:]}: {error}") from None
    if not isinstance(config, dict):
        raise StartupError(f"log config {path}: expected a table of dictConfig keys")
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)  # or our own loggers fall silent
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as error:
        raise StartupError(f"log config {path}: {error}") from None
    return list(config.get("loggers", {}))


def _toml() -> ModuleType:
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise StartupError("a .toml log config needs Python 3.11+ or the tomli package installed")
