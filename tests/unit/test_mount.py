"""Sub-path mounts: --root-path, a trusted proxy's X-Forwarded-Prefix or SCRIPT_NAME header.

Each environ is built the way the server builds it (server template, connection, request,
then the forwarding rules), from the bytes a proxy would send.
"""

from __future__ import annotations

from typing import Any

import pytest

from wsgiserve.environ import connection_environ, request_environ, server_environ
from wsgiserve.proxy import TrustedProxies, apply_proxy_headers, mount_prefix
from wsgiserve.settings import Settings

PROXIES = TrustedProxies.parse("127.0.0.1")
PROXY = ("127.0.0.1", 50123)
CLIENT = ("198.51.100.9", 50123)  # not a trusted proxy


def served(
    target: bytes,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    root_path: str = "",
    peer: tuple[str, int] = PROXY,
) -> dict[str, Any]:
    base = server_environ("http", False, None, Settings(root_path=root_path).root_path)
    environ = request_environ(
        connection_environ(base, ("127.0.0.1", 8000), peer),
        b"GET",
        target,
        "1.1",
        ((b"Host", b"example.com"), *headers),
        None,
    )
    apply_proxy_headers(environ, PROXIES.trusts(peer[0]), PROXIES)
    return environ


def mounted(environ: dict[str, Any]) -> tuple[str, str]:
    return environ["SCRIPT_NAME"], environ["PATH_INFO"]


# --- --root-path -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root_path", "target", "expected"),
    [
        ("", b"/app/users/7", ("", "/app/users/7")),  # unset: nothing changes
        ("/app", b"/app/users/7?x=1", ("/app", "/users/7")),
        ("/app/", b"/app/users/7", ("/app", "/users/7")),  # written with its slash
        ("/app", b"/app/", ("/app", "/")),
        ("/app", b"/app", ("/app", "")),  # the mount point itself
        ("/app", b"/apple/pie", ("/app", "/apple/pie")),  # not a segment of the mount
        ("/app", b"/users/7", ("/app", "/users/7")),  # the proxy already stripped it
        ("/a/b", b"/a/b/c", ("/a/b", "/c")),
        ("/caf\xe9", b"/caf%E9/menu", ("/caf\xe9", "/menu")),  # PATH_INFO is decoded
        ("/", b"/users/7", ("", "/users/7")),  # the root is no mount at all
    ],
)
def test_root_path_becomes_script_name_and_leaves_path_info(
    root_path: str, target: bytes, expected: tuple[str, str]
) -> None:
    environ = served(target, root_path=root_path)
    assert mounted(environ) == expected
    assert environ["QUERY_STRING"] == ("x=1" if b"?" in target else "")


def test_root_path_does_not_leak_into_another_server_in_the_same_process() -> None:
    # Decoded targets are cached per process: a mount must not be cached with them.
    assert mounted(served(b"/app/cached", root_path="/app")) == ("/app", "/cached")
    assert mounted(served(b"/app/cached")) == ("", "/app/cached")


@pytest.mark.parametrize("bad", ["app", "/app?x", "/app/../etc", "/a\x00b", "http://x/app"])
def test_root_path_that_is_not_a_path_is_refused_with_the_fix(bad: str) -> None:
    with pytest.raises(ValueError, match=r"root_path: .* such as /app"):
        Settings(root_path=bad)


# --- a trusted proxy says where the app is mounted ----------------------------------


@pytest.mark.parametrize(
    ("target", "headers", "expected"),
    [
        # nginx `location /app/ { proxy_pass http://wsgiserve; }`: the full path arrives.
        (b"/app/users/7", ((b"X-Forwarded-Prefix", b"/app"),), ("/app", "/users/7")),
        # nginx `proxy_pass http://wsgiserve/;` strips /app/ itself.
        (b"/users/7", ((b"X-Forwarded-Prefix", b"/app/"),), ("/app", "/users/7")),
        (b"/app%20x/y", ((b"X-Forwarded-Prefix", b"/app%20x"),), ("/app x", "/y")),
        # repeated: the last value is the one our peer wrote
        (b"/b/c", ((b"X-Forwarded-Prefix", b"/a"), (b"X-Forwarded-Prefix", b"/b")), ("/b", "/c")),
        # gunicorn's SCRIPT_NAME header, with its underscore
        (b"/app/users/7", ((b"SCRIPT_NAME", b"/app"),), ("/app", "/users/7")),
        (b"/app/users/7", ((b"script_name", b"/app"),), ("/app", "/users/7")),
        # both: X-Forwarded-Prefix wins
        (b"/x/y", ((b"SCRIPT_NAME", b"/z"), (b"X-Forwarded-Prefix", b"/x")), ("/x", "/y")),
        (b"/x/y", ((b"X-Forwarded-Prefix", b"/x"), (b"SCRIPT_NAME", b"/z")), ("/x", "/y")),
        # values that are no path are ignored, not believed
        (b"/app/y", ((b"X-Forwarded-Prefix", b"app"),), ("", "/app/y")),
        (b"/app/y", ((b"X-Forwarded-Prefix", b"/../app"),), ("", "/app/y")),
        (b"/app/y", ((b"X-Forwarded-Prefix", b"/app?q"),), ("", "/app/y")),
        (b"/app/y", ((b"X-Forwarded-Prefix", b""),), ("", "/app/y")),
    ],
)
def test_trusted_prefix_mounts_the_app(
    target: bytes, headers: tuple[tuple[bytes, bytes], ...], expected: tuple[str, str]
) -> None:
    environ = served(target, headers)
    assert mounted(environ) == expected
    assert not any(key.startswith("wsgiserve.script") for key in environ)


def test_trusted_prefix_overrides_root_path() -> None:
    environ = served(b"/outer/y", ((b"X-Forwarded-Prefix", b"/outer"),), root_path="/app")
    assert mounted(environ) == ("/outer", "/y")


def test_prefix_from_an_untrusted_client_is_removed_and_changes_nothing() -> None:
    headers = ((b"X-Forwarded-Prefix", b"/admin"), (b"SCRIPT_NAME", b"/admin"))
    environ = served(b"/admin/x", headers, peer=CLIENT)
    assert mounted(environ) == ("", "/admin/x")
    assert "HTTP_X_FORWARDED_PREFIX" not in environ
    assert not any(key.startswith("wsgiserve.script") for key in environ)
    # --root-path is the server's own setting: it applies to every peer.
    environ = served(b"/app/x", headers, root_path="/app", peer=CLIENT)
    assert mounted(environ) == ("/app", "/x")


def test_script_name_header_does_not_collide_with_script_name_spelt_with_a_dash() -> None:
    # "Script-Name" is an ordinary header (HTTP_SCRIPT_NAME) and mounts nothing.
    environ = served(b"/app/x", ((b"Script-Name", b"/app"),))
    assert mounted(environ) == ("", "/app/x")
    assert environ["HTTP_SCRIPT_NAME"] == "/app"


@pytest.mark.parametrize(
    ("text", "prefix"),
    [("/app", "/app"), ("/app///", "/app"), ("/", ""), ("/a%2Fb", "/a/b"), ("a", None)],
)
def test_mount_prefix(text: str, prefix: str | None) -> None:
    assert mount_prefix(text) == prefix
