"""Pure checks that httptools leaves to us, each tied to the RFC that asks for it.

httptools (llhttp in strict mode) already refuses malformed request lines and
fields, Content-Length with Transfer-Encoding, bad chunk sizes and obs-fold.
What it accepts but a server must not is checked here, on the environ, before
the app is called.
"""

from __future__ import annotations

import re

from .environ import Environ
from .errors import BadRequest, ExpectationFailed, NotImplementedCoding, VersionNotSupported

# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ], with uri-host a
# reg-name, an IPv4 address or a bracketed IP literal.
_HOST = re.compile(
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[\w\-.~!$&'()*+,;=:]+\])"
    r"(?::[0-9]*)?"
)

_good_hosts: set[str] = set()


def check_version(version: str) -> None:
    """Only HTTP/1.0 and 1.1 reach the app (RFC 9110 §6.2, §15.6.6)."""
    if version in ("1.1", "1.0"):
        return
    if version.startswith("0."):
        raise BadRequest("HTTP/0.9 requests are not served")
    raise VersionNotSupported(f"HTTP/{version} is not supported")


def check_request(environ: Environ, version: str) -> None:
    """Raise an `HTTPError` for a request that must not reach the app."""
    host = environ.get("HTTP_HOST")
    if host is None:
        if version == "1.1":
            raise BadRequest("missing Host field")  # RFC 9112 §3.2
    elif host not in _good_hosts:
        if not _HOST.fullmatch(host):
            raise BadRequest("invalid Host field")  # RFC 9112 §3.2
        if len(_good_hosts) >= 256:  # a server answers to a handful of names
            _good_hosts.clear()
        _good_hosts.add(host)

    coding = environ.get("HTTP_TRANSFER_ENCODING")
    if coding is not None:
        if version == "1.0":
            # RFC 9112 §6.1: faulty framing on HTTP/1.0; refusing is the safe reading.
            raise BadRequest("Transfer-Encoding on an HTTP/1.0 request")
        codings = [part.strip().lower() for part in coding.split(",")]
        if codings != ["chunked"]:
            if codings[-1] != "chunked":
                raise BadRequest("Transfer-Encoding does not end in chunked")  # RFC 9112 §6.3
            raise NotImplementedCoding("only the chunked transfer coding is supported")

    expect = environ.get("HTTP_EXPECT")
    if expect is not None and expect.lower() != "100-continue":
        raise ExpectationFailed(f"cannot meet the expectation {expect!r}")  # RFC 9110 §10.1.1


def wants_continue(environ: Environ, version: str) -> bool:
    """True when the client waits for `100 Continue` (never on HTTP/1.0: RFC 9110 §10.1.1)."""
    return version == "1.1" and "HTTP_EXPECT" in environ


_connection_tokens: dict[str, frozenset[str]] = {}


def keep_alive_requested(environ: Environ, version: str) -> bool:
    """Whether the client lets the connection persist (RFC 9112 §9.3)."""
    connection = environ.get("HTTP_CONNECTION")
    if connection is None:
        return version == "1.1"
    tokens = _connection_tokens.get(connection)
    if tokens is None:  # clients send a handful of spellings: parse each once
        tokens = frozenset(token.strip().lower() for token in connection.split(","))
        if len(_connection_tokens) < 256:
            _connection_tokens[connection] = tokens
    if "close" in tokens:
        return False
    return version == "1.1" or "keep-alive" in tokens
