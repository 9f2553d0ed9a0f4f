"""The access log: a line per finished request, in gunicorn's atoms or JSON, every field escaped.

Threads: `AccessLog.__call__` runs on worker threads and writes synchronously there, so the event
loop never waits on the access log's disk; a slow disk costs pool threads instead. Where the lines
go (files, --log-config, reopening on SIGUSR1) is the business of `logs`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

ACCESS_LOG = "wsgiserve.access"
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
_UTC = datetime.timezone.utc

# PEP 3333 strings carry bytes as latin-1 code points. Every byte outside printable ASCII is
# written as \xNN, so no control character or ANSI sequence (7-bit ESC or 8-bit CSI) from a
# request reaches a log, and a UTF-8 path shows its exact bytes.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0x100)]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape(text: str) -> str:
    """Return `text` with quotes, backslashes and all but printable ASCII as escapes."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    escaped = text.translate(_ESCAPES)  # code points above 0xff (not from a request) remain
    return escaped if escaped.isascii() else escaped.encode("ascii", "backslashreplace").decode()


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
        self,
        environ: Mapping[str, Any],
        status: int,
        response_headers: Sequence[tuple[str, str]],
        sent: int,
        duration: float,
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
