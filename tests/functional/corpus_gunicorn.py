"""Loading gunicorn's request corpus (``shared/corpus/gunicorn-requests``) without gunicorn.

Decoding follows ``shared/corpus/README.md`` §2.2, loading the ``.py`` expectation files §2.3
(each is executed in a fresh namespace, with stub ``gunicorn`` modules present only while it
runs), and `expected_environ` the environ mapping of §2.4. The corpus is used in place, by
path; nothing here is copied from gunicorn.
"""

from __future__ import annotations

import csv
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / ".." / "shared" / "corpus" / "gunicorn-requests"
INJECTED_HOST = "wsgiserve.test"
INJECTED_LINE = f"Host: {INJECTED_HOST}\r\n".encode()

# gunicorn's defaults, and what its 0 ("use the maximum default") means for each limit.
GUNICORN_LIMITS = {
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}
GUNICORN_LIMIT_FOR_ZERO = {
    "limit_request_line": 8190,
    "limit_request_fields": 32768,
    "limit_request_field_size": 8190,
}

Limits = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ExpectedRequest:
    """One parsed message as gunicorn describes it (header names upper-case, wire order)."""

    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    trailers: tuple[tuple[str, str], ...] = ()
    scheme: str = "http"  # wsgi.url_scheme the app should see


@dataclass(frozen=True)
class TriageRow:
    """One row of ``TRIAGE.tsv`` (README §2.6)."""

    case: str
    gunicorn_expects: str
    gunicorn_cfg: str
    httptools: str
    group: str
    recommended: str
    notes: str


@dataclass(frozen=True)
class Case:
    """A corpus case: decoded bytes, gunicorn's expectation and config, and its TRIAGE row.

    `requests` is set for valid cases, `error` (the exception name) for invalid ones.
    """

    id: str
    raw: bytes
    requests: tuple[ExpectedRequest, ...] | None
    error: str | None
    cfg: dict[str, Any]
    triage: TriageRow

    @property
    def limits(self) -> Limits:
        """The server limits to run this case with: gunicorn's, plus the case's overrides."""
        limits = dict(GUNICORN_LIMITS)
        for name in limits:
            if name in self.cfg:
                value = int(self.cfg[name])
                limits[name] = value or GUNICORN_LIMIT_FOR_ZERO[name]
        return tuple(sorted(limits.items()))

    @property
    def wire(self) -> bytes:
        """The bytes to send: `raw` with Host injected (README §1), unless the case's field
        size limit is smaller than the injected line, which would then be what trips it."""
        if dict(self.limits)["limit_request_field_size"] < len(INJECTED_LINE):
            return self.raw
        return inject_host(self.raw)


def decode_http(text: bytes) -> bytes:
    """The wire bytes of a ``.http`` file (README §2.2)."""
    data = text.replace(b"\n", b"")
    data = data.replace(b"\\r\\n", b"\r\n")
    data = data.replace(b"\\0", b"\0").replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    data = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    if b"\\" in data:
        raise ValueError("a backslash is left after decoding")
    return data


class _Config:
    """Stands in for ``gunicorn.config.Config``: records ``set()`` calls."""

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.overrides[name] = value


class _ErrorsModule(types.ModuleType):
    """Stands in for ``gunicorn.http.errors``: any attribute is a distinct exception class."""

    def __getattr__(self, name: str) -> type[Exception]:
        if name.startswith("__"):
            raise AttributeError(name)
        error = type(name, (Exception,), {"__module__": self.__name__})
        setattr(self, name, error)
        return error


@contextmanager
def _gunicorn_stubs() -> Iterator[None]:
    config = types.ModuleType("gunicorn.config")
    vars(config)["Config"] = _Config
    stubs = {
        "gunicorn": types.ModuleType("gunicorn"),
        "gunicorn.http": types.ModuleType("gunicorn.http"),
        "gunicorn.http.errors": _ErrorsModule("gunicorn.http.errors"),
        "gunicorn.config": config,
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_expectation(path: Path) -> tuple[object, dict[str, Any]]:
    """Execute one ``.py`` expectation file; return its ``request`` and its cfg overrides."""
    namespace: dict[str, Any] = {"uri": lambda target: target, "cfg": _Config()}
    with _gunicorn_stubs():
        exec(compile(path.read_text("utf-8"), str(path), "exec"), namespace)
    cfg = namespace["cfg"]
    return namespace["request"], dict(cfg.overrides) if isinstance(cfg, _Config) else {}


def _as_bytes(body: bytes | str) -> bytes:
    # Three old files write the empty body as '' (README §2.3).
    return body if isinstance(body, bytes) else body.encode("latin-1")


def expected_request(spec: Any) -> ExpectedRequest:
    """An `ExpectedRequest` from one dict of a valid case's ``request``."""
    return ExpectedRequest(
        method=spec["method"],
        target=spec["uri"],
        version=(spec["version"][0], spec["version"][1]),
        headers=tuple((name, value) for name, value in spec["headers"]),
        body=_as_bytes(spec["body"]),
        trailers=tuple((name, value) for name, value in spec.get("trailers", ())),
    )


def load_triage() -> dict[str, TriageRow]:
    """``TRIAGE.tsv`` by case id."""
    with (CORPUS / "TRIAGE.tsv").open(encoding="utf-8", newline="") as file:
        rows = [TriageRow(*row) for row in csv.reader(file, delimiter="\t")][1:]
    return {row.case: row for row in rows}


def load_cases() -> list[Case]:
    """Every case in the corpus, valid then invalid, sorted by id."""
    triage = load_triage()
    cases = []
    for kind in ("valid", "invalid"):
        for http in sorted((CORPUS / kind).glob("*.http")):
            case_id = f"{kind}/{http.stem}"
            request, cfg = load_expectation(http.with_suffix(".py"))
            requests: tuple[ExpectedRequest, ...] | None = None
            error: str | None = None
            if isinstance(request, type):
                error = request.__name__
            else:
                specs = request if isinstance(request, list) else [request]
                requests = tuple(expected_request(spec) for spec in specs)
            raw = decode_http(http.read_bytes())
            cases.append(Case(case_id, raw, requests, error, cfg, triage[case_id]))
    return cases


# -- Host injection (README §1) ------------------------------------------------------------


@dataclass
class _Message:
    start: int
    line_end: int  # index of the CRLF ending the request line, or -1
    host: bool = field(default=False)
    http11: bool = field(default=False)


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        pairs.append((name.strip().lower(), value.strip()))
    return pairs


_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _chunked_end(data: bytes, pos: int) -> int:
    """Where a chunked body starting at `pos` ends (after the trailer section), or -1."""
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return -1
        digits = data[pos:line_end].split(b";")[0].strip()
        if not _HEX.fullmatch(digits):
            return -1
        size = int(digits, 16)
        if size == 0:
            if data[line_end + 2 : line_end + 4] == b"\r\n":
                return line_end + 4
            end = data.find(b"\r\n\r\n", line_end + 2)
            return end + 4 if end >= 0 else -1
        pos = line_end + 2 + size + 2


def _messages(data: bytes) -> list[_Message]:
    """Best-effort cut of `data` into requests by their declared framing."""
    messages = []
    pos = 0
    while pos < len(data):
        line_end = data.find(b"\r\n", pos)
        head_end = data.find(b"\r\n\r\n", pos)
        message = _Message(pos, line_end)
        messages.append(message)
        if line_end < 0:
            break
        message.http11 = data[pos:line_end].endswith(b" HTTP/1.1")
        head = data[pos:head_end] if head_end >= 0 else data[pos:]
        fields = _fields(head)
        message.host = any(name == b"host" for name, _ in fields)
        if head_end < 0:
            break
        codings = [v for n, v in fields if n == b"transfer-encoding"]
        lengths = [v for n, v in fields if n == b"content-length"]
        if codings and codings[-1].split(b",")[-1].strip().lower() == b"chunked":
            end = _chunked_end(data, head_end + 4)
        elif len(lengths) == 1 and lengths[0].isdigit():
            end = head_end + 4 + int(lengths[0])
        elif codings or lengths:
            end = -1
        else:
            end = head_end + 4
        if end < 0:
            break
        pos = end
    return messages


def inject_host(data: bytes) -> bytes:
    """Insert ``Host: wsgiserve.test`` after the request line of each HTTP/1.1 message that
    lacks a Host field (README §1, J1). Only messages whose start can be found by their
    declared framing are touched; the cases *about* Host all carry one, so stay unchanged.
    """
    out = bytearray()
    pos = 0
    for message in _messages(data):
        if message.http11 and not message.host:
            out += data[pos : message.line_end + 2] + INJECTED_LINE
            pos = message.line_end + 2
    return bytes(out + data[pos:])


# -- The environ a request should produce (README §2.4) -------------------------------------


def split_target(target: str) -> tuple[str, str, str | None]:
    """(PATH_INFO, QUERY_STRING, authority or None) for a raw request-target."""
    if target == "*":
        return "*", "", None
    authority = None
    match = re.match(r"(?i)https?://([^/?#]*)", target)
    if match:
        authority = match.group(1)
        target = target[match.end() :]
    path, _, query = target.partition("#")[0].partition("?")
    path_info = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    return path_info, query, authority


def environ_key(name: str) -> str | None:
    """The environ key for a header name (upper-case, as in the corpus), None if dropped (J5)."""
    if "_" in name:
        return None
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def expected_environ(request: ExpectedRequest) -> dict[str, str]:
    """The echo entries `request` should produce, header values joined with ","."""
    path_info, query, authority = split_target(request.target)
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/{}.{}".format(*request.version),
        "wsgi.url_scheme": request.scheme,
    }
    for name, value in request.headers:
        key = environ_key(name)
        if key is not None:
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if request.version == (1, 1) and "HTTP_HOST" not in environ:
        environ["HTTP_HOST"] = INJECTED_HOST
    if authority is not None:
        environ["HTTP_HOST"] = authority  # RFC 9112 §3.2.2 / J14
    return environ
