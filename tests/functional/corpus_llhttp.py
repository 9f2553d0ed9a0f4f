"""Loading llhttp's request-parser test vectors (``shared/corpus/llhttp-request-tests``).

The markdown format and its input decoding are ``shared/corpus/README.md`` §3.2: each case is
a ``<!-- meta={...} -->`` comment, a ```` ```http ```` block (the input) and a ```` ```log ````
block (the parser events llhttp expects). `url.md` holds ```` ```url ```` blocks whose log
gives llhttp's split of a request-target. The log is read into `Message` records (the spans of
each request llhttp began) plus the error, if any. The corpus is used in place, by path;
nothing here is copied from llhttp's own runner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / ".." / "shared" / "corpus" / "llhttp-request-tests"

# Codes that mark a protocol hand-over rather than an error (README §3.2).
PAUSE_CODES = frozenset({22, 23})
CLOSED_CONNECTION = 5  # "Data after `Connection: close`"


@dataclass
class Message:
    """One request llhttp began, as its log reports it (span values concatenated)."""

    method: str = ""
    url: bytes = b""
    version: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    headers_complete: bool = False
    complete: bool = False
    version_end: int | None = None  # input offset just after the version of the request line


@dataclass(frozen=True)
class Log:
    """What llhttp reports for one input.

    `messages` lists every request begun, in order. `error_code` / `error_reason` describe the
    first error (pause codes 22/23 included), and `error_after_headers` says whether it came
    after the ``headers complete`` event of the request it interrupted. `finish` is the
    ``finish=N`` verdict of ``finish.md``.
    """

    messages: tuple[Message, ...]
    error_code: int | None = None
    error_reason: str = ""
    error_after_headers: bool = False
    finish: int | None = None

    @property
    def completed(self) -> tuple[Message, ...]:
        return tuple(message for message in self.messages if message.complete)


@dataclass(frozen=True)
class Case:
    """One request case: its id, meta type, decoded input and expected log."""

    id: str
    file: str
    name: str
    type: str
    raw: bytes
    log: Log


@dataclass(frozen=True)
class UrlCase:
    """One ``url.md`` case: the target, llhttp's spans for it, and its error code, if any."""

    id: str
    name: str
    url: bytes
    spans: dict[str, bytes]
    error_code: int | None


# -- Decoding (README §3.2) -------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\(?:([rntf])|x([0-9A-Fa-f]+)|([0-7]{1,3}))")
_SIMPLE = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"f": b"\f"}


def _unescape_input(match: re.Match[bytes]) -> bytes:
    simple, hexa, octal = match.groups()
    if simple is not None:
        return _SIMPLE[simple]
    if hexa is not None:
        return bytes([int(hexa, 16) & 0xFF])
    return bytes([int(octal, 8) & 0xFF])


def decode_input(block: str) -> bytes:
    """The bytes a case's ```` ```http ```` (or ```` ```url ````) block stands for."""
    text = block[:-1] if block.endswith("\n") else block
    text = text.replace("\\\n", "").replace("\n", "\r\n")
    return _ESCAPE.sub(_unescape_input, text.encode("utf-8"))


_LOG_ESCAPE = re.compile(rb"\\(?:([rntf])|x([0-9A-Fa-f]{2}))")


def _log_bytes(quoted: str, length: int, raw: bytes) -> bytes:
    """A log span's value as bytes.

    The log escapes only CR, LF, TAB, FF and ``\\xHH``. Other non-ASCII bytes it prints as
    text, sometimes the UTF-8 reading and sometimes the latin-1 one (``sample.md`` has one of
    each), and for ``\\xff`` its ``len=`` counts the runner's UTF-8 form while README §3.2
    decodes the escape to the single byte. So the reading that occurs in the decoded input
    wins; ``len=`` decides only when neither does.
    """
    readings = []
    for encoding in ("latin-1", "utf-8"):
        try:
            data = quoted.encode(encoding)
        except UnicodeEncodeError:
            continue
        readings.append(
            _LOG_ESCAPE.sub(
                lambda m: _SIMPLE[m.group(1)] if m.group(1) else bytes([int(m.group(2), 16)]),
                data,
            )
        )
    for data in readings:
        if data in raw:
            return data
    for data in readings:
        if len(data) == length:
            return data
    raise ValueError(f"log span {quoted!r} is neither in the input nor {length} bytes long")


_SPAN = re.compile(r'^off=\d+ len=(\d+) span\[([\w.]+)\]="(.*)"$')
_ERROR = re.compile(r'^off=\d+ error code=(\d+) reason="(.*)"$')
_FINISH = re.compile(r"^off=\d+ finish=(\d+)$")
_EVENT = re.compile(r"^off=(\d+) (.*)$")


def parse_log(block: str, raw: bytes) -> Log:
    """Read the ```` ```log ```` block of the input `raw` into a `Log`."""
    messages: list[Message] = []
    current: Message | None = None
    name = value = b""
    in_field = False
    error_code: int | None = None
    error_reason = ""
    after_headers = False
    finish: int | None = None

    def flush_field() -> None:
        nonlocal name, value, in_field
        if current is not None and (name or value):
            target = current.trailers if current.headers_complete else current.headers
            target.append((name, value))
        name = value = b""
        in_field = False

    for line in block.splitlines():
        if span := _SPAN.match(line):
            kind, data = span.group(2), _log_bytes(span.group(3), int(span.group(1)), raw)
            if current is None:  # spans before "message begin" only happen in url.md
                current = Message()
                messages.append(current)
            if kind == "header_field":
                if not in_field:
                    flush_field()
                    in_field = True
                name += data
            elif kind == "header_value":
                in_field = False
                value += data
            elif kind == "method":
                current.method += data.decode("latin-1")
            elif kind == "url":
                current.url += data
            elif kind == "version":
                current.version += data.decode("latin-1")
            elif kind == "body":
                current.body += data
        elif error := _ERROR.match(line):
            flush_field()
            if error_code is None:
                error_code, error_reason = int(error.group(1)), error.group(2)
                after_headers = current is not None and current.headers_complete
        elif done := _FINISH.match(line):
            finish = int(done.group(1))
        elif event := _EVENT.match(line):
            what = event.group(2)
            if what == "version complete" and current is not None:
                current.version_end = int(event.group(1))
            elif what == "message begin":
                current = Message()
                messages.append(current)
            elif what.startswith("headers complete"):
                flush_field()
                assert current is not None
                current.headers_complete = True
            elif what == "message complete":
                flush_field()
                assert current is not None
                current.complete = True
            elif what == "header_value complete":
                flush_field()
    return Log(tuple(messages), error_code, error_reason, after_headers, finish)


# -- Reading the markdown files ---------------------------------------------------------------

_FENCE = re.compile(r"^```(\w*)\s*$")
_META = re.compile(r"^<!--\s*meta=(\{.*\})\s*-->\s*$")
_HEADING = re.compile(r"^(#{1,4})\s+(.*?)\s*$")


def _blocks(text: str) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(heading, fence language, meta, block text) for each fenced block, in order."""
    lines = text.splitlines(keepends=True)
    heading = ""
    meta: dict[str, Any] = {}
    index = 0
    while index < len(lines):
        line = lines[index].rstrip("\n")
        if match := _HEADING.match(line):
            heading, meta = match.group(2), {}
        elif match := _META.match(line):
            meta = json.loads(match.group(1))
        elif match := _FENCE.match(line):
            language = match.group(1)
            end = index + 1
            while lines[end].rstrip("\n") != "```":
                end += 1
            yield heading, language, meta, "".join(lines[index + 1 : end])
            if language != "log":
                meta = {}
            index = end
        index += 1


def _unique(name: str, seen: dict[str, int]) -> str:
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} ({seen[name]})"


def load_cases() -> list[Case]:
    """Every case of ``request/*.md``, in file order; ids ``llhttp/<file>/<heading>``."""
    cases = []
    for path in sorted((CORPUS / "request").glob("*.md")):
        seen: dict[str, int] = {}
        pending: tuple[str, dict[str, Any], bytes] | None = None
        for heading, language, meta, block in _blocks(path.read_text("utf-8")):
            if language == "http":
                pending = (heading, meta, decode_input(block))
            elif language == "log" and pending is not None:
                name, case_meta, raw = pending
                name = _unique(name, seen)
                cases.append(
                    Case(
                        f"llhttp/{path.name}/{name}",
                        path.name,
                        name,
                        str(case_meta.get("type", "")),
                        raw,
                        parse_log(block, raw),
                    )
                )
                pending = None
    return cases


def load_url_cases() -> list[UrlCase]:
    """Every case of ``url.md``; ids ``llhttp/url.md/<heading>``."""
    cases = []
    seen: dict[str, int] = {}
    pending: tuple[str, bytes] | None = None
    for heading, language, _meta, block in _blocks((CORPUS / "url.md").read_text("utf-8")):
        if language == "url":
            pending = (heading, decode_input(block))
        elif language == "log" and pending is not None:
            name, url = pending
            name = _unique(name, seen)
            spans: dict[str, bytes] = {}
            error_code: int | None = None
            for line in block.splitlines():
                if span := _SPAN.match(line):
                    key = span.group(2).removeprefix("url.")
                    data = _log_bytes(span.group(3), int(span.group(1)), url)
                    spans[key] = spans.get(key, b"") + data
                elif error := _ERROR.match(line):
                    error_code = int(error.group(1))
            cases.append(UrlCase(f"llhttp/url.md/{name}", name, url, spans, error_code))
            pending = None
    return cases


# -- What goes on the wire, and the environ each request should produce -----------------------

INJECTED_HOST = "wsgiserve.test"
INJECTED_LINE = f"Host: {INJECTED_HOST}\r\n".encode()


def _has_host(message: Message) -> bool:
    return any(name.lower() == b"host" for name, _ in message.headers)


def wire(case: Case) -> bytes:
    """`case.raw` with ``Host: wsgiserve.test`` after the request line of every HTTP/1.1
    request llhttp began that carries no Host field (README §1, J1). The log's ``version
    complete`` offset says where each request line ends; a line not ended by CRLF is left
    alone, since inserting there would change what is being tested."""
    data = case.raw
    for message in reversed(case.log.messages):
        end = message.version_end
        if (
            message.version == "1.1"
            and end is not None
            and data[end : end + 2] == b"\r\n"
            and not _has_host(message)
        ):
            data = data[: end + 2] + INJECTED_LINE + data[end + 2 :]
    return data


def closes_after(message: Message) -> bool:
    """Whether the connection ends after `message` (RFC 9112 §9.3, §9.6)."""
    tokens = {
        token.strip(b" \t").lower()
        for name, value in message.headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    if b"close" in tokens:
        return True
    return message.version == "1.0" and b"keep-alive" not in tokens


_ABSOLUTE = re.compile(rb"(?i)https?://([^/?#]*)")


def split_target(target: bytes) -> tuple[str, str, str | None]:
    """(PATH_INFO, QUERY_STRING, authority or None) for a request-target (README §2.4).

    The fragment is dropped (J15); an absolute-form target with an empty path means "/"
    (RFC 9112 §3.2.2 with RFC 9110 §4.2.3's normalisation).
    """
    authority = None
    match = _ABSOLUTE.match(target)
    if match:
        authority = match.group(1).decode("latin-1")
        target = target[match.end() :] or b"/"
        if target[:1] in (b"?", b"#"):
            target = b"/" + target
    path, _, query = target.partition(b"#")[0].partition(b"?")
    return unquote_to_bytes(path).decode("latin-1"), query.decode("latin-1"), authority


def environ_key(name: bytes) -> str | None:
    """The environ key of a field name; None when the name holds "_" (dropped, J5)."""
    if b"_" in name:
        return None
    key = name.decode("latin-1").upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def expected_environ(message: Message) -> dict[str, str]:
    """The echo entries `message` should produce; repeated fields joined with ","."""
    path_info, query, authority = split_target(message.url)
    environ = {
        "REQUEST_METHOD": message.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": f"HTTP/{message.version}",
        "wsgi.url_scheme": "http",
    }
    for name, value in message.headers:  # never the trailers (J13)
        key = environ_key(name)
        if key is not None:
            text = value.strip(b" \t").decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    if message.version == "1.1" and "HTTP_HOST" not in environ:
        environ["HTTP_HOST"] = INJECTED_HOST
    if authority is not None:
        environ["HTTP_HOST"] = authority  # RFC 9112 §3.2.2 / J14
    return environ
