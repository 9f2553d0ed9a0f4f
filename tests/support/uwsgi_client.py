"""The client side of the uwsgi protocol, as nginx's uwsgi_pass writes it: for tests."""

from __future__ import annotations

import struct
from collections.abc import Mapping


def encode_vars(variables: Mapping[str, str] | list[tuple[str, str]]) -> bytes:
    """A vars block: each key and value prefixed by its little-endian 16-bit length."""
    pairs = variables.items() if isinstance(variables, Mapping) else variables
    block = b""
    for key, value in pairs:
        raw_key, raw_value = key.encode("latin-1"), value.encode("latin-1")
        block += struct.pack("<H", len(raw_key)) + raw_key
        block += struct.pack("<H", len(raw_value)) + raw_value
    return block


def packet(
    variables: Mapping[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    modifier1: int = 0,
    modifier2: int = 0,
) -> bytes:
    """One uwsgi request: header, vars block, body."""
    block = encode_vars(variables)
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block + body


def request_vars(
    method: str = "GET", uri: str = "/", body_size: int | None = None, **extra: str
) -> dict[str, str]:
    """The vars nginx's uwsgi_params sends for a request from 192.0.2.7 to example.com."""
    path, _, query = uri.partition("?")
    variables = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "" if body_size is None else str(body_size),
        "REQUEST_URI": uri,
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/usr/share/nginx/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "50123",
        "SERVER_PORT": "80",
        "SERVER_NAME": "example.com",
        "HTTP_HOST": "example.com",
        "HTTP_USER_AGENT": "test",
    }
    variables.update(extra)
    return variables
