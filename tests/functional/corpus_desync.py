"""Loading AWS http-desync-guardian's request descriptions (``shared/corpus/http-desync-guardian``).

Each YAML entry is a request already split into method, target, version and a field list,
with a risk tier (README §4.1, §4.2). `Case.wire` serialises it as README §4.3 says: the request
line, the fields as given, ``Host: wsgiserve.test`` when the case has no Host, the empty line,
a body consistent with the declared framing, then a canary request on the same connection. The
corpus is used in place, by path; nothing here is copied from the upstream test runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / ".." / "shared" / "corpus" / "http-desync-guardian" / "tests"

INJECTED_HOST = "wsgiserve.test"
INJECTED_LINE = f"Host: {INJECTED_HOST}\r\n".encode()
CANARY = b"GET /canary HTTP/1.1\r\n" + INJECTED_LINE + b"\r\n"
BODY_BYTE = b"x"
BODY_MAX = 1 << 23  # bytes; a larger declared length is sent without its body (see `body`)
_OWS = " \t"


def encode(text: str) -> bytes:
    """latin-1 where every character fits, else UTF-8 (README §4.2)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


@dataclass(frozen=True)
class Case:
    """One request description and its expected tier."""

    id: str
    file: str
    name: str
    method: str
    uri: str
    version: str
    headers: tuple[tuple[str, str], ...]
    tier: str
    reason: str

    def _named(self, name: str) -> list[str]:
        return [value for field, value in self.headers if field.lower() == name]

    @property
    def has_host(self) -> bool:
        return bool(self._named("host"))

    @property
    def body(self) -> bytes:
        """The body that matches the declared framing (README §4.3 step 2).

        Only fields named exactly Transfer-Encoding / Content-Length declare framing (RFC 9112
        §6.1, §6.2); look-alikes such as ``Transfer_Encoding`` or ``Content-Length `` are other
        fields. When both are declared, chunked wins, as RFC 9112 §6.3 (item 3) frames it.
        """
        if any("chunked" in value.lower() for value in self._named("transfer-encoding")):
            return b"0\r\n\r\n"
        lengths = self._named("content-length")
        if len(lengths) == 1:
            digits = lengths[0].strip(_OWS)
            if digits.isascii() and digits.isdigit() and int(digits) <= BODY_MAX:
                return BODY_BYTE * int(digits)
        return b""

    @property
    def content(self) -> bytes:
        """What an app should read: `body` without the chunked framing."""
        return b"" if self.body == b"0\r\n\r\n" else self.body

    @property
    def head(self) -> bytes:
        line = encode(self.method) + b" " + encode(self.uri)
        if self.version:
            line += b" " + encode(self.version)
        fields = b"".join(
            encode(name) + b": " + encode(value) + b"\r\n" for name, value in self.headers
        )
        host = b"" if self.has_host else INJECTED_LINE
        return line + b"\r\n" + fields + host + b"\r\n"

    @property
    def wire(self) -> bytes:
        """Head, framed body and the canary request, as one byte string."""
        return self.head + self.body + CANARY


def _text(value: Any) -> str:
    # Unquoted numbers come back as ints (README §4.2).
    return value if isinstance(value, str) else str(value)


def load_cases() -> list[Case]:
    """Every case of every YAML file, in file order; ids ``desync/<file>/<name>``."""
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        seen: dict[str, int] = {}
        for entry in yaml.safe_load(path.read_text("utf-8")):
            name = entry["name"]
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} ({seen[name]})"
            cases.append(
                Case(
                    id=f"desync/{path.name}/{name}",
                    file=path.name,
                    name=name,
                    method=_text(entry["method"]),
                    uri=_text(entry["uri"]),
                    version=_text(entry["version"]),
                    headers=tuple(
                        (_text(field["name"]), _text(field["value"]))
                        for field in entry.get("headers") or ()
                    ),
                    tier=entry["expected"]["tier"],
                    reason=entry["expected"]["reason"],
                )
            )
    return cases


def expected_environ(case: Case) -> dict[str, str]:
    """The echo entries an accepted `case` should produce; repeated fields joined with ","."""
    target = encode(case.uri)
    path, _, query = target.partition(b"#")[0].partition(b"?")
    environ = {
        "REQUEST_METHOD": case.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_PROTOCOL": case.version,
        "wsgi.url_scheme": "http",
    }
    for name, value in case.headers:
        if "_" in name:
            continue  # dropped (J5)
        key = encode(name).decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = encode(value).strip(b" \t").decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    environ.setdefault("HTTP_HOST", INJECTED_HOST)
    return environ


CANARY_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/canary",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": INJECTED_HOST,
    "wsgi.url_scheme": "http",
}
