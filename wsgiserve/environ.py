"""Pure: a parsed request head plus addresses and settings become a PEP 3333 environ.

Three layers, so that per-request work is one dict copy plus the request's own
keys: a server template (wsgi.* keys), a connection template (addresses), and
the request (method, target, headers).
"""

from __future__ import annotations

import itertools
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast
from urllib.parse import unquote_to_bytes

import httptools

from .errors import BadRequest, NotImplementedCoding
from .proxy import SCRIPT_NAME_HEADER_KEY, mount
from .version import __version__

Environ = dict[str, Any]

# Fields a request may carry once only (RFC 9112 §3.2 for Host; RFC 9110 §5.3 and
# the single CONTENT_TYPE slot of CGI for Content-Type).
_SINGLETONS = frozenset({"HTTP_HOST", "CONTENT_TYPE", "CONTENT_LENGTH"})

_OWS = (" ", "\t")
_KEYS_CACHE_LIMIT = 4096
_keys: dict[bytes, str | None] = {}
_UNSEEN = ""  # never a key: the cache's "not there" (None means "dropped")
_methods: dict[bytes, str] = {}
# Sites serve a few hot URLs: each one's environ values are decoded once.
_TARGETS_CACHE_LIMIT = 1024
_TARGET_CACHEABLE = 256  # bytes: longer targets are decoded every time
_targets: dict[bytes, dict[str, str]] = {}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


def header_key(name: bytes) -> str | None:
    """The environ key for a header name as sent, or None when the field is dropped.

    Names containing "_" are dropped: CGI maps "-" to "_", so `Content_Length`
    would otherwise collide with `Content-Length` (RFC 9110 §17.10). `SCRIPT_NAME`
    is the exception gunicorn makes: it gets a private key that proxy.py believes
    from a trusted peer and removes otherwise.
    """
    try:
        return _keys[name]
    except KeyError:
        pass
    key: str | None
    if b"_" in name:
        key = SCRIPT_NAME_HEADER_KEY if name.upper() == b"SCRIPT_NAME" else None
    else:
        upper = name.decode("latin-1").upper().replace("-", "_")
        key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    if len(_keys) < _KEYS_CACHE_LIMIT:
        _keys[name] = key
    return key


def server_environ(
    scheme: str, multiprocess: bool, file_wrapper: Any, root_path: str = ""
) -> Environ:
    """The keys every request of one server shares; `root_path` is the app's mount point
    (`--root-path`, already normalised by the settings), "" for none."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": file_wrapper,
        "wsgi.input_terminated": True,
        "SCRIPT_NAME": root_path,
        "SERVER_SOFTWARE": f"wsgiserve/{__version__}",
    }


def connection_environ(base: Environ, sockname: Any, peername: Any) -> Environ:
    """`base` plus the addresses of one connection (TCP tuples, or a unix path string)."""
    environ = base.copy()
    if isinstance(sockname, tuple):
        environ["SERVER_NAME"] = str(sockname[0])
        environ["SERVER_PORT"] = str(sockname[1])
    else:
        # A unix socket has no port, but PEP 3333 requires a non-empty SERVER_PORT. The
        # scheme's default port is what uvicorn's WSGI adapter uses, and what gunicorn uses
        # when a Host field has no port (from a Host field it takes name and port; without
        # one, ""). The client's Host is not used: it is per request and the client's to
        # choose, and it already reaches the app as HTTP_HOST, which PEP 3333's URL
        # reconstruction prefers. A trusted proxy's X-Forwarded-Port still overrides this.
        environ["SERVER_NAME"] = "localhost"
        environ["SERVER_PORT"] = "443" if base.get("wsgi.url_scheme") == "https" else "80"
    if isinstance(peername, tuple):
        environ["REMOTE_ADDR"] = str(peername[0])
        environ["REMOTE_PORT"] = str(peername[1])
    else:
        environ["REMOTE_ADDR"] = ""
    return environ


class _ParsedURL(Protocol):
    """What `httptools.parse_url` really returns: its stub says bytes, but a part the
    target lacks is None (a compiled build checks the stub's types and would refuse it)."""

    schema: bytes | None
    host: bytes | None
    port: int | None
    path: bytes | None
    query: bytes | None
    userinfo: bytes | None


def _split_target(method: str, target: bytes) -> tuple[bytes, bytes, str | None]:
    """(path, query, authority) from a request-target (RFC 9112 §3.2)."""
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        if b"#" in path:
            path = path.partition(b"#")[0]
            query = b""
        elif b"#" in query:
            query = query.partition(b"#")[0]
        return path, query, None
    if method == "CONNECT":
        raise NotImplementedCoding("CONNECT is not supported")  # RFC 9110 §9.3.6: for proxies
    if target == b"*":
        if method != "OPTIONS":
            raise BadRequest("asterisk-form is only for OPTIONS")
        return b"*", b"", None
    try:
        url = cast(_ParsedURL, httptools.parse_url(target))
    except httptools.HttpParserInvalidURLError:
        raise BadRequest("unparseable request-target") from None
    if not url.schema or url.host is None:
        raise BadRequest("request-target is neither origin- nor absolute-form")
    if url.schema.lower() not in (b"http", b"https"):
        # RFC 9112 §3.2.2: an origin server is asked for its own http(s) resources; any
        # other scheme is a proxy request (or a confused client), never a path to serve.
        raise BadRequest("absolute-form target with a scheme other than http(s)")
    if url.userinfo:
        raise BadRequest("userinfo in the request-target")  # RFC 9110 §4.2.4
    authority = url.host.decode("latin-1")
    if ":" in authority:  # parse_url strips the brackets of an IP literal
        authority = f"[{authority}]"
    if url.port is not None:
        authority += f":{url.port}"
    return url.path or b"/", url.query or b"", authority


def request_environ(
    base: Environ,
    method: bytes,
    target: bytes,
    version: str,
    headers: Iterable[tuple[bytes, bytes]],
    body: Any,
) -> Environ:
    """The environ of one request; raises `BadRequest` for a repeated singleton field."""
    environ = base.copy()
    method_str = _methods.get(method)
    if method_str is None:
        method_str = method.decode("ascii")
        if len(_methods) < 64:
            _methods[method] = method_str
    environ["REQUEST_METHOD"] = method_str
    known = _targets.get(target)
    if known is None:
        path, query, authority = _split_target(method_str, target)
        known = {
            "PATH_INFO": (
                unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
            ),
            "QUERY_STRING": query.decode("latin-1"),
            "RAW_URI": target.decode("latin-1"),
        }
        known["REQUEST_URI"] = known["RAW_URI"]
        # Only origin-form targets: their meaning does not depend on the method.
        if target[:1] == b"/" and len(target) <= _TARGET_CACHEABLE:
            if len(_targets) >= _TARGETS_CACHE_LIMIT:
                _targets.clear()
            _targets[target] = known
    else:
        authority = None
    environ.update(known)
    root = environ["SCRIPT_NAME"]  # --root-path, from the server's template
    if root:
        mount(environ, root)
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
    environ["wsgi.input"] = body
    keys = _keys
    for name, value in headers:
        key = keys.get(name, _UNSEEN)  # header_key's cache, without the call
        if key is _UNSEEN:
            key = header_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if text[-1:] in _OWS:  # httptools strips leading OWS only (RFC 9110 §5.5)
            text = text.rstrip(" \t")
        if key in environ:
            if key in _SINGLETONS:
                raise BadRequest(f"repeated {name.decode('latin-1')} field")
            separator = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] += separator + text
        else:
            environ[key] = text
    if authority is not None:
        if "HTTP_HOST" not in environ and version == "1.1":
            raise BadRequest("missing Host field")  # RFC 9112 §3.2, whatever the target
        # RFC 9112 §3.2.2: with an absolute-form target the target's authority wins.
        environ["HTTP_HOST"] = authority
    return environ


# Ids unique across the workers of a server: a random prefix per process, then a count.
_id_prefix = ""
_next_id: Callable[[], int] = int


def _renew_ids() -> None:
    global _id_prefix, _next_id
    _id_prefix = secrets.token_hex(6) + "-%x"
    _next_id = itertools.count(1).__next__


_renew_ids()
os.register_at_fork(after_in_child=_renew_ids)  # a worker must not reuse our prefix


def request_id(sent: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new id."""
    if sent and len(sent) <= 200 and sent.isprintable():
        return sent
    return _id_prefix % _next_id()
