"""Pure: which peers may speak for the client, and what their forwarding headers change.

A trusted peer's `X-Forwarded-*` or RFC 7239 `Forwarded` fields rewrite the client's
address, scheme and host in the environ; anyone else's are deleted so that the app
cannot be fooled. When both families are present X-Forwarded-* wins and `Forwarded`
is ignored: nginx, Envoy and the cloud load balancers set X-Forwarded-For and pass a
client's own `Forwarded` through untouched, so believing it would let clients pick
their address. Loop thread only, once per request.

A trusted peer may also say where the app is mounted (`X-Forwarded-Prefix`, or a
`SCRIPT_NAME` header as gunicorn allows); `mount` applies that, and `--root-path`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

_FOR = "HTTP_X_FORWARDED_FOR"
_PROTO = "HTTP_X_FORWARDED_PROTO"
_HOST = "HTTP_X_FORWARDED_HOST"
_PORT = "HTTP_X_FORWARDED_PORT"
_FORWARDED = "HTTP_FORWARDED"
_PREFIX = "HTTP_X_FORWARDED_PREFIX"
# A `SCRIPT_NAME` request header: names with "_" never become HTTP_* keys (environ.py),
# so it gets a key no other header can produce.
SCRIPT_NAME_HEADER_KEY = "wsgiserve.script_name_header"
PROXY_HEADER_KEYS = (_FOR, _PROTO, _HOST, _PORT, _FORWARDED, _PREFIX, SCRIPT_NAME_HEADER_KEY)

_CACHE_LIMIT = 256  # entries per cache, which is cleared when full
_CACHEABLE = 512  # characters: longer values are resolved every time, never kept

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Node = tuple[str | None, str | None, bool]  # (address, port, trusted)
_Values = tuple[str | None, ...]  # the first five PROXY_HEADER_KEYS' values, in order
# New REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme, HTTP_HOST, SERVER_NAME, SERVER_PORT;
# None leaves a key alone, SERVER_PORT "" means the default port of the scheme.
_Result = tuple[str | None, str | None, str | None, str | None, str | None, str | None]

# RFC 7239 §4: element = [pair] *(";" [pair]), pair = token "=" (token / quoted-string),
# elements joined by "," with optional whitespace (RFC 9110 §5.6.1).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*"))?[ \t]*([;,]|\Z)')
_QUOTED_PAIR = re.compile(r"\\(.)")  # RFC 9110 §5.6.4
# A subset of RFC 9110 §7.2 Host that also passes validate.py; no "," (a list) and
# no userinfo, so a forwarded host cannot smuggle a second value in.
_VALID_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::[0-9]{1,5})?")
_SCHEMES = {"http": "http", "https": "https"}


class TrustedProxies:
    """The peers whose forwarding headers are believed (`--forwarded-allow-ips`).

    Loop thread only: it keeps small caches of the hops and header values it has seen.
    """

    __slots__ = ("_networks", "_nodes", "_ranges", "_results", "_trust_all")

    def __init__(self, networks: Iterable[Network] = (), *, trust_all: bool = False) -> None:
        """Trust `networks`, or every address when `trust_all` (the `*` of the setting)."""
        self._networks = tuple(networks)
        # (version, base, mask) as ints: a third of the cost of `address in network`.
        self._ranges = tuple(
            (net.version, int(net.network_address), int(net.netmask)) for net in self._networks
        )
        self._trust_all = trust_all
        self._nodes: dict[str, _Node] = {}
        self._results: dict[_Values, _Result] = {}

    @classmethod
    def parse(cls, spec: str | Iterable[str]) -> TrustedProxies:
        """Build from `"127.0.0.1,10.0.0.0/8,::1"`, or from an iterable of such strings.

        Args:
            spec: IP addresses and CIDR networks, comma-separated; `*` trusts every
                peer; whitespace and empty entries are ignored, so `""` trusts only
                unix-socket peers.

        Returns:
            The parsed set of trusted proxies.

        Raises:
            ValueError: an entry is neither `*`, an IP address nor a CIDR network
                (host bits set, as in `10.0.0.1/8`, count as a typo).
        """
        items = [spec] if isinstance(spec, str) else list(spec)
        networks: list[Network] = []
        trust_all = False
        for item in items:
            for raw in item.split(","):
                entry = raw.strip()
                if entry == "*":
                    trust_all = True
                elif entry:
                    try:
                        networks.append(ipaddress.ip_network(entry))
                    except ValueError as exc:
                        message = f"forwarded-allow-ips: bad entry {entry!r}: {exc}"
                        raise ValueError(message) from None
        return cls(networks, trust_all=trust_all)

    def __repr__(self) -> str:
        entries = ["*"] if self._trust_all else [str(net) for net in self._networks]
        return f"TrustedProxies({','.join(entries)!r})"

    def trusts(self, address: str) -> bool:
        """Whether a peer at `address` may set the forwarding headers.

        Args:
            address: the peer's IP address as in `REMOTE_ADDR`; `""` is a unix-socket
                peer, which is always trusted (only local processes can connect).

        Returns:
            True for a trusted peer; False for any other address, including text that
            is not an IP address (unless the setting is `*`).
        """
        return not address or self._trust_all or self._node(address)[2]

    def _node(self, text: str) -> _Node:
        """(address, port, trusted) for one hop as a proxy wrote it; address None if invalid."""
        node = self._nodes.get(text)
        if node is None:
            address, host, port = _parse_node(text)
            trusted = self._trust_all
            if address is not None and not trusted:
                # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; match them as IPv4.
                mapped = getattr(address, "ipv4_mapped", None) or address
                version, value = mapped.version, int(mapped)
                for net_version, base, mask in self._ranges:
                    if version == net_version and value & mask == base:
                        trusted = True
                        break
            # ipaddress accepts IPv4 only in canonical form, so only IPv6 needs str().
            canonical = host if address is None or address.version == 4 else str(address)
            node = (None if address is None else canonical, port, trusted)
            _remember(self._nodes, text, node, len(text))
        return node

    def _client(self, hops: Sequence[str | None]) -> tuple[int, str | None, str | None]:
        """Walk the hops from the right: (index used, client address, client port).

        Each hop was written by the proxy on its right, the last one by our trusted
        peer. Skipping trusted addresses finds the right-most untrusted one, the
        client; all trusted means the left-most. A hop that is absent, `unknown`
        or obfuscated (RFC 7239 §6.2, §6.3) ends the walk with the client unknown:
        looking further left would believe text the client wrote itself.
        """
        for index in range(len(hops) - 1, -1, -1):
            text = hops[index]
            if text is None:
                return index, None, None
            address, port, trusted = self._node(text)
            if address is None or not trusted or index == 0:
                return index, address, port
        return -1, None, None


def _parse_node(text: str) -> tuple[Address | None, str, str | None]:
    """(address, its text, port) of a node: RFC 7239 §6, and X-Forwarded-For's bare IPv6."""
    port: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and rest[0] != ":"):
            return None, host, None
        port = rest[1:]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has two or more colons
        host, _, port = text.partition(":")
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None, host, None
    return address, host, _port(port)  # RFC 7239 §6.3: an obfuscated port ("_abc") tells us nothing


def _port(text: str | None) -> str | None:
    """`text` if it is a TCP port number (1-65535), else None."""
    if text and text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return text
    return None


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """The elements of a `Forwarded` field, left to right, parameter names lowercased.

    A malformed element (or one repeating a parameter, RFC 7239 §4) becomes `{}`,
    and parsing resumes after the first comma following its start: a client's
    unbalanced quote must not swallow the elements its proxies appended after it.
    Empty list elements are skipped (RFC 9110 §5.6.1).
    """
    elements: list[dict[str, str]] = []
    pos = 0
    while True:
        start = pos
        params: dict[str, str] = {}
        while True:
            match = _PAIR.match(value, pos)
            name = match[1].lower() if match and match[1] else None
            if match is None or name in params:
                elements.append({})
                comma = value.find(",", start)
                if comma < 0:
                    return elements
                pos = comma + 1
                break
            if name is not None:
                raw = match[2]
                if raw[0] == '"':
                    raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
                params[name] = raw
            pos = match.end()
            if match[3] != ";":
                if params:
                    elements.append(params)
                if not match[3]:
                    return elements
                break


def _items(value: str | None) -> list[str]:
    """The non-empty members of a comma-separated field (repeated fields arrive joined)."""
    if not value:
        return []
    items = [part.strip() for part in value.split(",")]
    return [item for item in items if item] if "" in items else items


def mount_prefix(text: str) -> str | None:
    """The SCRIPT_NAME of a mount point as written: `/app/` is `/app`, `/` is `""`.

    Args:
        text: a URL path, percent-encoded or not (a proxy may send either).

    Returns:
        The decoded path without its trailing slashes; None when `text` is not an
        absolute path (no leading `/`, a query, a fragment, control characters or
        `.`/`..` segments), which is then ignored rather than believed.
    """
    if "%" in text:
        text = unquote_to_bytes(text).decode("latin-1")
    if (
        text[:1] != "/"
        or len(text) > _CACHEABLE
        or not text.isprintable()
        or "?" in text
        or "#" in text
        or any(part in (".", "..") for part in text.split("/"))
    ):
        return None
    return text.rstrip("/")


def mount(environ: dict[str, Any], prefix: str) -> None:
    """Mount the app at `prefix` (from `mount_prefix`): it becomes SCRIPT_NAME, in place.

    PATH_INFO loses the prefix when it starts with it, segment by segment (`/app` is
    not a prefix of `/apple`). A path outside it is left alone: a proxy that strips the
    prefix itself (nginx `proxy_pass http://backend/;`) sends paths already relative
    to the mount, so either way of configuring the proxy reaches the app the same.
    """
    environ["SCRIPT_NAME"] = prefix
    path: str = environ["PATH_INFO"]
    if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/"):
        environ["PATH_INFO"] = path[len(prefix) :]


def _remember(cache: dict[Any, Any], key: Any, value: Any, size: int) -> None:
    """Keep `value` under `key` unless it is large; a full cache starts over."""
    if size <= _CACHEABLE:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value


def _resolve(values: _Values, proxies: TrustedProxies) -> _Result:
    """What a trusted peer's forwarding header values change in the environ."""
    forwarded_for, x_proto, x_host, x_port, forwarded = values
    port: str | None = None
    if forwarded is None or any(values[:4]):
        hops = _items(forwarded_for)
        index, address, remote_port = proxies._client(hops)
        picked: list[str | None] = []
        for value in (x_proto, x_host, x_port):
            # The value the same proxy wrote as the chosen hop when every proxy
            # appended to both lists; otherwise the right-most, our peer's.
            items = _items(value)
            aligned = len(items) == len(hops) and index >= 0
            picked.append((items[index] if aligned else items[-1]) if items else None)
        proto, host, port = picked
    else:
        elements = _forwarded_elements(forwarded)
        index, address, remote_port = proxies._client([e.get("for") for e in elements])
        chosen = elements[index] if index >= 0 else {}
        proto, host = chosen.get("proto"), chosen.get("host")  # RFC 7239 §5.3, §5.4

    scheme = _SCHEMES.get(proto.lower()) if proto else None
    name: str | None = None
    if host is not None and _VALID_HOST.fullmatch(host):
        before, colon, after = host.rpartition(":") if host[-1] != "]" else ("", "", "")
        # RFC 3875 §4.1.14: SERVER_NAME keeps the brackets of an IPv6 literal.
        name = before if colon else host
        port = _port(port) or (_port(after) if colon else None)
    else:
        host = None
        port = _port(port)
    if port is None and (scheme is not None or host is not None):
        port = "443" if scheme == "https" else "80" if scheme else ""
    # The peer's port beside the client's address would name no real socket.
    remote_port = None if address is None else remote_port or "0"
    return address, remote_port, scheme, host, name, port


def apply_proxy_headers(
    environ: dict[str, Any], peer_trusted: bool, proxies: TrustedProxies
) -> None:
    """Apply or strip the forwarding headers of one request, in place.

    Args:
        environ: the request's environ, with the connection's `REMOTE_ADDR`.
        peer_trusted: `proxies.trusts(peer address)`, computed once per connection.
        proxies: the trusted proxies, used to walk multi-hop chains.

    From an untrusted peer the header keys are removed and nothing else changes.
    From a trusted one, values that do not parse are ignored one by one; nothing
    raises, and `REMOTE_ADDR` only ever becomes a valid IP address.
    """
    # Fast path: most requests carry none of the keys (measured cheapest).
    if (
        _FOR not in environ
        and _PROTO not in environ
        and _HOST not in environ
        and _FORWARDED not in environ
        and _PORT not in environ
        and _PREFIX not in environ
        and SCRIPT_NAME_HEADER_KEY not in environ
    ):
        return
    if not peer_trusted:
        for key in PROXY_HEADER_KEYS:
            environ.pop(key, None)
        return
    if _PREFIX in environ or SCRIPT_NAME_HEADER_KEY in environ:
        _apply_prefix(environ)
    values: _Values = (
        environ.get(_FOR),
        environ.get(_PROTO),
        environ.get(_HOST),
        environ.get(_PORT),
        environ.get(_FORWARDED),
    )
    result = proxies._results.get(values)
    if result is None:
        result = _resolve(values, proxies)
        _remember(proxies._results, values, result, sum(len(v) for v in values if v))
    address, remote_port, scheme, host, name, port = result
    if address is not None:
        environ["REMOTE_ADDR"] = address
        environ["REMOTE_PORT"] = remote_port
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    if host is not None:
        environ["HTTP_HOST"] = host
        environ["SERVER_NAME"] = name
    if port is not None:
        default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
        environ["SERVER_PORT"] = port or default


def _apply_prefix(environ: dict[str, Any]) -> None:
    """A trusted peer's mount point: `X-Forwarded-Prefix`, else its `SCRIPT_NAME` header.

    X-Forwarded-Prefix stays in the environ for the app to see, like the other
    X-Forwarded-* keys; the `SCRIPT_NAME` header's private key does not.
    """
    # Repeated fields arrive joined: our peer's value is the last.
    sent = _items(environ.get(_PREFIX)) or _items(environ.pop(SCRIPT_NAME_HEADER_KEY, None))
    environ.pop(SCRIPT_NAME_HEADER_KEY, None)
    prefix = mount_prefix(sent[-1]) if sent else None
    if prefix is not None:
        mount(environ, prefix)
