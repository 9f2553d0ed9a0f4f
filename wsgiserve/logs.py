"""Logging set-up: the error log, where the access log's lines go, --log-config, logconfig_dict,
syslog, capture-output.

Threads: `configure` and `reopen_files` run on the main thread (for SIGUSR1, call `reopen_files`
from the loop or supervisor, never inside the signal handler itself). What an access-log line
says is `accesslog`'s business.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import logging
import logging.config
import logging.handlers
import os
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from .accesslog import ACCESS_LOG
from .errors import StartupError

if TYPE_CHECKING:
    from .settings import Settings

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


@dataclasses.dataclass(frozen=True)
class Syslog:
    """Where --log-syslog sends lines, and which."""

    address: str = "udp://localhost:514"  # udp://HOST:PORT, tcp://HOST:PORT or unix://PATH
    facility: str = "user"
    prefix: str = "wsgiserve"  # the program name each line carries
    access: bool = True  # the access log's lines too


def parse_syslog_address(text: str) -> tuple[str | tuple[str, int], socket.SocketKind | None]:
    """`udp://HOST:PORT`, `tcp://HOST:PORT` or `unix://PATH` (`#dgram`/`#stream` may follow a
    path) -> the address and socket type `SysLogHandler` takes; a bare HOST:PORT is UDP.

    Raises:
        StartupError: the text is none of these.
    """
    if text.startswith("unix://"):
        path, _, suffix = text[len("unix://") :].partition("#")
        types = {"": None, "dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}
        if not path or suffix not in types:
            raise StartupError(f"--log-syslog-to {text}: expected unix://PATH[#dgram|#stream]")
        return path, types[suffix]
    scheme = text.partition("://")[0] if "://" in text else "udp"
    if scheme not in ("udp", "tcp"):
        raise StartupError(
            f"--log-syslog-to {text}: expected udp://HOST:PORT, tcp://HOST:PORT or unix://PATH"
        )
    parts = urllib.parse.urlsplit(text if "://" in text else f"udp://{text}")
    try:
        port = parts.port or 514
    except ValueError:
        raise StartupError(f"--log-syslog-to {text}: the port is not a number") from None
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    return (parts.hostname or "localhost", port), kind


def configure_from(settings: Settings) -> None:
    """`configure` with everything `settings` says about logging."""
    syslog = None
    if settings.syslog:
        syslog = Syslog(
            settings.syslog_addr,
            settings.syslog_facility,
            settings.syslog_prefix or settings.proc_name or "wsgiserve",
            access=not settings.disable_redirect_access_to_syslog,
        )
    configure(
        settings.log_level,
        settings.access_logfile,
        error_logfile=settings.error_logfile,
        log_config=settings.log_config,
        logconfig_dict=settings.logconfig_dict,
        syslog=syslog,
        capture_output=settings.capture_output,
        error_log_json=settings.error_log_json,
    )


def wants_access_log(settings: Settings) -> bool:
    """Whether access-log lines are wanted anywhere (as gunicorn decides it)."""
    return bool(
        settings.access_logfile
        or settings.log_config
        or settings.logconfig_dict
        or (settings.syslog and not settings.disable_redirect_access_to_syslog)
    )


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
    logconfig_dict: dict[str, Any] | None = None,
    syslog: Syslog | None = None,
    capture_output: bool = False,
    error_log_json: bool = False,
) -> None:
    """Set up the error log and the access log; calling it again replaces the earlier set-up.

    Args:
        log_level: the error log's level, e.g. "info".
        error_logfile: a path, or None / "-" for stderr.
        access_logfile: a path, "-" for stdout, or None for no access log.
        log_config: a file applied first: .ini/.conf/.cfg for `logging.config.fileConfig`,
            .toml or JSON for `dictConfig`. A logger it names (or whose ancestor it names) is
            left to it entirely; the settings above configure only `wsgiserve.error` /
            `wsgiserve.access` when it does not.
        logconfig_dict: a `dictConfig` dictionary, applied after `log_config`, with the same
            rule for the loggers it names.
        syslog: also send the error log (and the access log if `syslog.access`) to syslog.
        capture_output: point file descriptors 1 and 2 at `error_logfile` (if it is a file), so
            the app's prints and C extensions' stderr land in the error log.
        error_log_json: write the error log as one JSON object per line.

    Raises:
        StartupError: a log file cannot be opened, or the log config is unreadable or invalid.
    """
    with _lock:
        _release()
        taken = set(_apply_config(log_config)) if log_config else set()
        if logconfig_dict:
            taken.update(_apply_dict(dict(logconfig_dict), "logconfig_dict"))
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
            if syslog is not None:
                fmt = f"{syslog.prefix}[%(process)d]: [%(levelname)s] %(message)s"
                _install(error_log, _syslog_handler(syslog, _ErrorFormatter(fmt)))
        access_log = logging.getLogger(ACCESS_LOG)
        if not _claim(access_log, taken):
            to_syslog = syslog is not None and syslog.access
            access_log.setLevel(logging.INFO if access_logfile or to_syslog else _OFF)
            if access_logfile:
                handler = _open_handler(access_logfile, sys.stdout)
                handler.setFormatter(logging.Formatter("%(message)s"))
                _install(access_log, handler)
            if syslog is not None and to_syslog:
                fmt = f"{syslog.prefix}[%(process)d]: %(message)s"
                _install(access_log, _syslog_handler(syslog, logging.Formatter(fmt)))
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


def _syslog_handler(target: Syslog, formatter: logging.Formatter) -> logging.Handler:
    address, kind = parse_syslog_address(target.address)
    facility = logging.handlers.SysLogHandler.facility_names.get(target.facility.lower())
    if facility is None:
        raise StartupError(f"--log-syslog-facility {target.facility}: no such syslog facility")
    try:
        handler = logging.handlers.SysLogHandler(address, facility, kind)
    except OSError as error:
        raise StartupError(
            f"--log-syslog-to {target.address}: cannot reach syslog there "
            f"({error.strerror or error}); is the syslog daemon running?"
        ) from None
    opened: socket.socket | None = getattr(handler, "socket", None)
    if opened is None or opened.fileno() < 0:
        # The handler keeps a unix socket it could not open as "later"; every line would
        # then print a traceback instead of reaching syslog. Better to say so now.
        handler.close()
        raise StartupError(
            f"--log-syslog-to {target.address}: cannot reach syslog there (no syslog socket "
            "at that path); is the syslog daemon running? In a container, send to "
            "udp://HOST:PORT instead"
        )
    handler.setFormatter(formatter)
    return handler


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
    """Apply the log config in `path`; return the names of the loggers it configures."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read log config {path}: {error.strerror}") from None
    suffix = Path(path).suffix.lower()
    if suffix in (".ini", ".conf", ".cfg"):
        return _apply_file_config(path)
    kind = "toml" if suffix == ".toml" else "json"
    try:
        config = json.loads(data) if kind == "json" else _toml().loads(data.decode("utf-8"))
    except ValueError as error:  # JSONDecodeError, TOMLDecodeError and UnicodeDecodeError
        raise StartupError(
            f"log config {path} is not valid {kind}: {error}. An .ini, .conf or .cfg file is "
            "read by logging.config.fileConfig; .toml as TOML; anything else as JSON"
        ) from None
    if not isinstance(config, dict):
        raise StartupError(f"log config {path}: expected a table of dictConfig keys")
    return _apply_dict(config, f"log config {path}")


def _apply_dict(config: dict[str, Any], source: str) -> list[str]:
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)  # or our own loggers fall silent
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as error:
        raise StartupError(f"{source}: {error}") from None
    return list(config.get("loggers", {}))


def _apply_file_config(path: str) -> list[str]:
    """gunicorn's --log-config: an ini file for `fileConfig`, its [loggers] keys as names."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
        keys = [k.strip() for k in parser.get("loggers", "keys").split(",") if k.strip()]
        names = [
            "" if key == "root" else parser.get(f"logger_{key}", "qualname", fallback=key)
            for key in keys
        ]
        logging.config.fileConfig(parser, disable_existing_loggers=False)
    except (configparser.Error, KeyError, ValueError, TypeError, ImportError) as error:
        raise StartupError(f"log config {path}: {error!r}") from None
    return [name for name in names if name]


def _toml() -> ModuleType:
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise StartupError("a .toml log config needs Python 3.11+ or the tomli package installed")
