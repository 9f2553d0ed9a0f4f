"""Logging set-up, and the access log: gunicorn's atoms or JSON lines, every field escaped.

Threads: `configure` and `reopen_files` run on the main thread (for SIGUSR1, call `reopen_files`
from the loop or supervisor, never inside the signal handler itself). `AccessLog.__call__` runs
on worker threads and writes synchronously there, so the event loop never waits on the access
log's disk; a slow disk costs pool threads instead.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import importlib
import io
import json
import logging
import logging.config
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TextIO

from .errors import StartupError

ERROR_LOG = "wsgiserve.error"
ACCESS_LOG = "wsgiserve.access"
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
_OFF = logging.CRITICAL + 1
_UTC = datetime.timezone.utc

# PEP 3333 strings carry bytes as latin-1 code points. Every byte outside printable ASCII is
# written as \xNN, so no control character or ANSI sequence (7-bit ESC or 8-bit CSI) from a
# request reaches a log, and a UTF-8 path shows its exact bytes.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0x100)]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"
# The error log keeps quotes and non-ASCII text; it loses only C0/C1 controls (tracebacks keep \n).
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_TRACEBACK_CONTROLS = {code: text for code, text in _CONTROLS.items() if code != ord("\n")}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape(text: str) -> str:
    """Return `text` with quotes, backslashes and all but printable ASCII as escapes."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    escaped = text.translate(_ESCAPES)  # code points above 0xff (not from a request) remain
    return escaped if escaped.isascii() else escaped.encode("ascii", "backslashreplace").decode()


class _ErrorFormatter(logging.Formatter):
    """The error log's format; request data in a message cannot forge lines or colour a tty."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROLS)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei).translate(_TRACEBACK_CONTROLS)


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
    log_level: str = "info", access_logfile: str | None = None, *, error_logfile: str | None = None,
    log_config: str | None = None, capture_output: bool = False,
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
            handler.setFormatter(_ErrorFormatter(ERROR_FORMAT, ERROR_DATE_FORMAT))
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


class Entry(NamedTuple):
    """One finished request, as the access log sees it."""

    environ: Mapping[str, Any]
    status: int
    headers: Sequence[tuple[str, str]]  # the response headers the app gave start_response
    sent: int  # body bytes
    duration: float  # seconds


Atom = Callable[[Entry], object]


def _path(environ: Mapping[str, Any]) -> str:
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


def _request_line(environ: Mapping[str, Any]) -> str:
    target = environ.get("RAW_URI") or _path(environ)
    if not environ.get("RAW_URI") and environ.get("QUERY_STRING"):
        target += "?" + environ["QUERY_STRING"]
    return f"{environ.get('REQUEST_METHOD', '-')} {target} {environ.get('SERVER_PROTOCOL', '-')}"


def _basic_user(environ: Mapping[str, Any]) -> str:
    """The escaped user name of a Basic `Authorization` header (RFC 7617), else "-"."""
    scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        credentials = base64.b64decode(token.strip(), validate=True)
    except (ValueError, binascii.Error):  # not base64, or not ASCII at all
        return "-"
    user, colon, _ = credentials.partition(b":")
    return escape(user.decode("latin-1")) if colon and user else "-"


def _field(key: str, default: str = "-") -> Atom:
    return lambda entry: escape(str(entry.environ.get(key) or default))


def _response_header(name: str) -> Atom:
    def value(entry: Entry) -> str:
        found = [escape(str(v)) for k, v in entry.headers if k.lower() == name]
        return ", ".join(found) if found else "-"

    return value


_ATOMS: dict[str, Atom] = {
    "h": _field("REMOTE_ADDR"),
    "l": lambda entry: "-",
    "u": lambda entry: _basic_user(entry.environ),
    "r": lambda entry: escape(_request_line(entry.environ)),
    "m": _field("REQUEST_METHOD"),
    "U": lambda entry: escape(_path(entry.environ)),
    "q": _field("QUERY_STRING", ""),
    "H": _field("SERVER_PROTOCOL"),
    "s": lambda entry: entry.status,
    "B": lambda entry: entry.sent,
    "b": lambda entry: entry.sent or "-",
    "f": _field("HTTP_REFERER"),
    "a": _field("HTTP_USER_AGENT"),
    "T": lambda entry: int(entry.duration),
    "M": lambda entry: int(entry.duration * 1_000),
    "D": lambda entry: int(entry.duration * 1_000_000),
    "L": lambda entry: f"{entry.duration:.6f}",
    "p": lambda entry: os.getpid(),
}
_KEY = re.compile(r"%\(([^)]*)\)")
_VARIABLE = re.compile(r"\{([^}]+)\}([ioe])")


def _variable_atom(key: str) -> Atom:
    match = _VARIABLE.fullmatch(key)
    if match is None:
        raise ValueError(f"unknown access-log atom %({key})s")
    name, kind = match.groups()
    if kind == "o":
        return _response_header(name.lower())
    if kind == "e":  # a WSGI environ key, e.g. {REMOTE_ADDR}e or {wsgiserve.request_id}e
        return _field(name)
    environ_key = name.upper().replace("-", "_")
    if environ_key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        environ_key = "HTTP_" + environ_key
    return _field(environ_key)


class AccessLog:
    """Writes one line per request to the `wsgiserve.access` logger: gunicorn atoms, or JSON.

    Args:
        fmt: a %-format of gunicorn atoms, like `%(h)s "%(r)s" %(s)s`; None is gunicorn's default.
        json_lines: write one JSON object per line instead, and ignore `fmt`.

    Raises:
        ValueError: `fmt` names an unknown atom or is not a valid %-format.
    """

    def __init__(self, fmt: str | None = None, json_lines: bool = False) -> None:
        self._logger = logging.getLogger(ACCESS_LOG)
        self._format = DEFAULT_ACCESS_FORMAT if fmt is None else fmt
        self._json = json_lines
        self._clock = (-1, "")  # (second, its CLF time): one localtime() a second, not a line
        self._atoms: list[tuple[str, Atom]] = []
        if json_lines:
            return
        own: dict[str, Atom] = {"t": lambda entry: self._clf_time(time.time() - entry.duration)}
        for key in dict.fromkeys(_KEY.findall(self._format)):  # only the atoms the format uses
            self._atoms.append((key, own.get(key) or _ATOMS.get(key) or _variable_atom(key)))
        if "%" in _KEY.sub("", self._format.replace("%%", "")):
            raise ValueError(f"access-log format {self._format!r}: use %(atom)s, or %% for %")
        sample = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
        try:
            self._line(Entry(sample, 200, (), 0, 0.0))
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"invalid access-log format {self._format!r}: {error}") from None

    def __call__(
        self, environ: Mapping[str, Any], status: int,
        response_headers: Sequence[tuple[str, str]], sent: int, duration: float,
    ) -> None:
        """Log one request: `sent` body bytes, `duration` seconds. Synchronous: worker threads."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        entry = Entry(environ, status, response_headers, sent, duration)
        line = self._json_line(entry) if self._json else self._line(entry)
        # makeRecord + handle skips Logger.info's walk up the stack; filters still apply.
        logger.handle(logger.makeRecord(ACCESS_LOG, logging.INFO, "", 0, line, (), None))

    def _line(self, entry: Entry) -> str:
        return self._format % {key: atom(entry) for key, atom in self._atoms}

    def _clf_time(self, when: float) -> str:
        second, text = self._clock  # one read of one tuple: other threads may replace it
        if second == int(when):
            return text
        local = time.localtime(when)
        hours, minutes = divmod(abs(local.tm_gmtoff) // 60, 60)
        text = (
            f"[{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
            f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
            f"{'-' if local.tm_gmtoff < 0 else '+'}{hours:02d}{minutes:02d}]"
        )
        self._clock = (int(when), text)
        return text

    @staticmethod
    def _json_line(entry: Entry) -> str:
        environ = entry.environ
        started = datetime.datetime.fromtimestamp(time.time() - entry.duration, _UTC)
        record: dict[str, Any] = {
            "remote_addr": environ.get("REMOTE_ADDR") or None,
            "time": started.isoformat(timespec="milliseconds"),
            "method": environ.get("REQUEST_METHOD"),
            "path": _path(environ),
            "query": environ.get("QUERY_STRING", ""),
            "protocol": environ.get("SERVER_PROTOCOL"),
            "status": entry.status,
            "bytes": entry.sent,
            "referer": environ.get("HTTP_REFERER"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "duration_ms": round(entry.duration * 1000, 3),
            "pid": os.getpid(),
        }
        if environ.get("wsgiserve.request_id") is not None:
            record["request_id"] = str(environ["wsgiserve.request_id"])
        # ensure_ascii escapes every control character and non-ASCII code point as \u and hex.
        return json.dumps(record, ensure_ascii=True, default=str)
