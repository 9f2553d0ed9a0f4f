"""Trusted proxies: parsing the setting, and the environ an app sees behind (or without) a proxy."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from wsgiserve.proxy import TrustedProxies, apply_proxy_headers
from wsgiserve.validate import check_request

PEER = "10.0.0.2"  # the proxy the server is connected to
PROXIES = TrustedProxies.parse("10.0.0.0/24, 2001:db8:ffff::/48, 127.0.0.1")
STAR = TrustedProxies.parse("*")

FORWARDING_KEYS = {
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_FORWARDED",
}


def request(remote_addr: str = PEER, **headers: str) -> dict[str, Any]:
    """An environ as the server builds it for a request over http://app.internal:8000."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "10.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": remote_addr,
        "HTTP_HOST": "app.internal:8000",
        "wsgi.url_scheme": "http",
    }
    if remote_addr:
        environ["REMOTE_PORT"] = "50123"
    environ.update(headers)
    return environ


def served(
    environ: dict[str, Any], proxies: TrustedProxies = PROXIES, trusted: bool | None = None
) -> dict[str, Any]:
    """`environ` after the server applied the forwarding rules, computing trust as it does."""
    if trusted is None:
        trusted = proxies.trusts(environ["REMOTE_ADDR"])
    apply_proxy_headers(environ, trusted, proxies)
    return environ


# --- the setting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.0", True),
        ("10.0.0.255", True),
        ("10.0.1.1", False),
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("2001:db8:ffff:1::5", True),
        ("2001:db8:fffe::5", False),
        ("::ffff:10.0.0.7", True),  # a dual-stack listener's view of an IPv4 peer
        ("", True),  # a unix-socket peer
        ("not-an-ip", False),
        ("10.0.0.999", False),
    ],
)
def test_trusts_addresses_and_networks(address: str, expected: bool) -> None:
    assert PROXIES.trusts(address) is expected


def test_default_spec_trusts_loopback_only() -> None:
    proxies = TrustedProxies.parse("127.0.0.1,::1")
    assert proxies.trusts("127.0.0.1")
    assert proxies.trusts("::1")
    assert proxies.trusts("0:0:0:0:0:0:0:1")
    assert not proxies.trusts("127.0.0.2")
    assert not proxies.trusts("192.0.2.1")


def test_star_trusts_everyone() -> None:
    proxies = TrustedProxies.parse(" * ")
    assert proxies.trusts("192.0.2.1")
    assert proxies.trusts("2001:db8::1")
    assert proxies.trusts("garbage")
    assert repr(proxies) == "TrustedProxies('*')"


def test_parse_accepts_whitespace_iterables_and_empty_entries() -> None:
    proxies = TrustedProxies.parse(["  192.0.2.0/28 ,", "", "2001:db8::1 , ,198.51.100.7"])
    assert repr(proxies) == "TrustedProxies('192.0.2.0/28,2001:db8::1/128,198.51.100.7/32')"
    assert proxies.trusts("192.0.2.15")
    assert not proxies.trusts("192.0.2.16")


def test_empty_spec_trusts_only_unix_peers() -> None:
    proxies = TrustedProxies.parse("")
    assert proxies.trusts("")
    assert not proxies.trusts("127.0.0.1")


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("localhost", "'localhost'"),
        ("127.0.0.1,10.0.0.300", "'10.0.0.300'"),
        ("10.0.0.1/8", "has host bits set"),
        ("192.0.2.0/33", "'192.0.2.0/33'"),
        ("2001:db8::/129", "'2001:db8::/129'"),
        ("[::1]", "'[::1]'"),
        ("**", "'**'"),
    ],
)
def test_parse_rejects_bad_entries_by_name(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="forwarded-allow-ips") as info:
        TrustedProxies.parse(spec)
    assert named in str(info.value)


# --- untrusted peers ---------------------------------------------------------------


def test_spoofing_from_an_untrusted_peer_is_removed_and_changes_nothing() -> None:
    environ = request(
        "198.51.100.9",
        HTTP_X_FORWARDED_FOR="127.0.0.1",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="bank.example",
        HTTP_X_FORWARDED_PORT="443",
        HTTP_FORWARDED="for=127.0.0.1;proto=https;host=bank.example",
        HTTP_USER_AGENT="curl/8",
    )
    before = {k: v for k, v in environ.items() if k not in FORWARDING_KEYS}
    assert served(environ) == before


def test_one_spoofed_header_is_removed_too() -> None:
    environ = served(request("198.51.100.9", HTTP_X_FORWARDED_HOST="evil.example"))
    assert "HTTP_X_FORWARDED_HOST" not in environ
    assert environ["HTTP_HOST"] == "app.internal:8000"


def test_requests_without_forwarding_headers_are_untouched() -> None:
    for peer in (PEER, "198.51.100.9", ""):
        environ = request(peer)
        assert served(dict(environ)) == environ


# --- X-Forwarded-* -----------------------------------------------------------------


def test_single_proxy_sets_client_scheme_host_and_port() -> None:
    environ = served(
        request(
            HTTP_X_FORWARDED_FOR="203.0.113.5",
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_X_FORWARDED_HOST="shop.example",
        )
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["REMOTE_PORT"] == "0"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "shop.example"
    assert environ["SERVER_NAME"] == "shop.example"
    assert environ["SERVER_PORT"] == "443"
    # The headers themselves stay for the app to read.
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.5"


def test_rightmost_untrusted_hop_wins_over_a_spoofed_prefix() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; two trusted proxies appended.
    environ = served(request(HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5, 10.0.0.9"))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"


def test_all_hops_trusted_means_the_leftmost() -> None:
    environ = served(request(HTTP_X_FORWARDED_FOR="10.0.0.7, 127.0.0.1,10.0.0.9"))
    assert environ["REMOTE_ADDR"] == "10.0.0.7"


def test_star_takes_the_leftmost_hop() -> None:
    environ = request("198.51.100.9", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5")
    assert served(environ, TrustedProxies.parse("*"))["REMOTE_ADDR"] == "1.1.1.1"


def test_unix_socket_peer_is_trusted() -> None:
    environ = served(
        request("", HTTP_X_FORWARDED_FOR="203.0.113.5", HTTP_X_FORWARDED_PROTO="https")
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"


def test_repeated_fields_joined_by_the_server() -> None:
    environ = served(
        request(
            HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5",  # two X-Forwarded-For lines
            HTTP_X_FORWARDED_PROTO="http, https",
        )
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"


def test_proto_and_host_follow_the_chosen_hop_when_every_proxy_appends() -> None:
    # The outer proxy (TLS, public name) saw the client; the inner one saw the outer.
    environ = served(
        request(
            HTTP_X_FORWARDED_FOR="203.0.113.5, 10.0.0.9",
            HTTP_X_FORWARDED_PROTO="https, http",
            HTTP_X_FORWARDED_HOST="shop.example, inner.internal",
        )
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "shop.example"


def test_proto_set_by_the_peer_beats_one_sent_by_the_client() -> None:
    # The client sent "X-Forwarded-Proto: https"; the proxy appended its own "http".
    environ = served(
        request(HTTP_X_FORWARDED_FOR="203.0.113.5", HTTP_X_FORWARDED_PROTO="https, http")
    )
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["SERVER_PORT"] == "80"


@pytest.mark.parametrize(
    ("headers", "port"),
    [
        ({"HTTP_X_FORWARDED_PORT": "8443", "HTTP_X_FORWARDED_HOST": "a.example:9000"}, "8443"),
        ({"HTTP_X_FORWARDED_HOST": "a.example:9000", "HTTP_X_FORWARDED_PROTO": "https"}, "9000"),
        ({"HTTP_X_FORWARDED_PROTO": "HTTPS"}, "443"),
        ({"HTTP_X_FORWARDED_PROTO": "http"}, "80"),
        ({"HTTP_X_FORWARDED_PORT": "8080"}, "8080"),
        ({"HTTP_X_FORWARDED_PORT": "99999", "HTTP_X_FORWARDED_PROTO": "https"}, "443"),
        ({"HTTP_X_FORWARDED_PORT": "abc"}, "8000"),  # nothing usable: left alone
    ],
)
def test_server_port(headers: dict[str, str], port: str) -> None:
    assert served(request(**headers))["SERVER_PORT"] == port


def test_ipv6_forwarded_host() -> None:
    environ = served(request(HTTP_X_FORWARDED_HOST="[2001:db8::10]:8443"))
    assert environ["HTTP_HOST"] == "[2001:db8::10]:8443"
    assert environ["SERVER_NAME"] == "[2001:db8::10]"
    assert environ["SERVER_PORT"] == "8443"


@pytest.mark.parametrize(
    "hop", ["203.0.113.5:4711", "[2001:db8::5]:4711", "2001:db8::5", "[2001:db8::5]"]
)
def test_hops_with_ports_and_ipv6(hop: str) -> None:
    environ = served(request(HTTP_X_FORWARDED_FOR=hop))
    assert environ["REMOTE_ADDR"] == hop.partition("]")[0].lstrip("[").removesuffix(":4711")
    assert environ["REMOTE_PORT"] == ("4711" if hop.endswith(":4711") else "0")


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        "_hidden",
        "garbage",
        "",
        " , ",
        "999.1.1.1",
        "1.2.3.4.5",
        "[2001:db8::1",
        "[1.2.3.4]x",
        "203.0.113.5, unknown",  # the proxy hid the client: do not believe the text before
        "203.0.113.5, bad",
        "\x00\xff",
        "203.0.113.5 10.0.0.1",
    ],
)
def test_malformed_for_keeps_the_peer_address(value: str) -> None:
    environ = served(request(HTTP_X_FORWARDED_FOR=value, HTTP_X_FORWARDED_PROTO="https"))
    assert environ["REMOTE_ADDR"] == PEER
    assert environ["REMOTE_PORT"] == "50123"
    assert environ["wsgi.url_scheme"] == "https"  # the rest is still applied


@pytest.mark.parametrize("proto", ["ftp", "javascript", "https, ", "", "http s", "wss"])
def test_unknown_schemes_are_ignored(proto: str) -> None:
    environ = served(request(HTTP_X_FORWARDED_PROTO=proto))
    expected = "https" if proto == "https, " else "http"
    assert environ["wsgi.url_scheme"] == expected


@pytest.mark.parametrize(
    "host", ["evil.example/path", "user@evil.example", "a b", "", "evil.example:99999999", "[zz]"]
)
def test_malformed_hosts_are_ignored(host: str) -> None:
    environ = served(request(HTTP_X_FORWARDED_HOST=host))
    assert environ["HTTP_HOST"] == "app.internal:8000"
    assert environ["SERVER_NAME"] == "10.0.0.1"
    assert environ["SERVER_PORT"] == "8000"


# --- RFC 7239 Forwarded ------------------------------------------------------------


def test_forwarded_sets_client_scheme_and_host() -> None:
    environ = served(request(HTTP_FORWARDED='for=203.0.113.5;proto=https;host="shop.example"'))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "shop.example"
    assert environ["SERVER_NAME"] == "shop.example"
    assert environ["SERVER_PORT"] == "443"


def test_forwarded_ipv6_with_port() -> None:
    environ = served(request(HTTP_FORWARDED='For="[2001:db8::1]:4711"'))
    assert environ["REMOTE_ADDR"] == "2001:db8::1"
    assert environ["REMOTE_PORT"] == "4711"


def test_forwarded_chain_uses_the_element_of_the_rightmost_untrusted_hop() -> None:
    value = (
        "for=1.1.1.1;proto=http;host=spoof.example, "  # sent by the client
        'for=203.0.113.5;proto=https;host="shop.example:8443", '  # the outer proxy
        'for="[2001:db8:ffff::2]";proto=http;host=inner.internal'  # the inner proxy
    )
    environ = served(request(HTTP_FORWARDED=value))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "shop.example:8443"
    assert environ["SERVER_PORT"] == "8443"


def test_forwarded_quoting_and_whitespace() -> None:
    value = r'for="203.0.113.5";ext="a \"quoted\", list; value" ,  for = x, for="10.0.0.9"'
    # The middle element is malformed (whitespace around "="), so the walk stops there.
    environ = served(request(HTTP_FORWARDED=value))
    assert environ["REMOTE_ADDR"] == PEER
    environ = served(request(HTTP_FORWARDED=value.replace("for = x", "for=x.y")))
    assert environ["REMOTE_ADDR"] == PEER  # "x.y" is not an address either
    environ = served(request(HTTP_FORWARDED=value.replace("for = x", "for=10.0.0.7")))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        "for=_hidden;proto=https",
        'for="_gazonk"',
        "for=",
        "for",
        "proto=https",  # no for at all
        "for=203.0.113.5;for=198.51.100.1",  # RFC 7239 §4: a parameter at most once
        'for="203.0.113.5',
        "for=[2001:db8::1]",  # the brackets must be quoted (RFC 7239 §6)
        'for="2001:db8::1]"',
        "for=203.0.113.5, for=unknown",
        ";;,,",
        "\x7f=\x00",
    ],
)
def test_malformed_forwarded_keeps_the_peer_address(value: str) -> None:
    environ = served(request(HTTP_FORWARDED=value))
    assert environ["REMOTE_ADDR"] == PEER
    assert environ["REMOTE_PORT"] == "50123"


def test_obfuscated_for_still_applies_the_proxys_proto() -> None:
    environ = served(request(HTTP_FORWARDED="for=_hidden;proto=https;by=_me"))
    assert environ["REMOTE_ADDR"] == PEER
    assert environ["wsgi.url_scheme"] == "https"


def test_client_garbage_cannot_swallow_the_proxys_element() -> None:
    # An unbalanced quote from the client, then the element our proxy appended.
    environ = served(request(HTTP_FORWARDED='for="1.1.1.1, for="[2001:db8::7]";proto=https'))
    assert environ["REMOTE_ADDR"] == "2001:db8::7"
    assert environ["wsgi.url_scheme"] == "https"
    environ = served(request(HTTP_FORWARDED='for="1.1.1.1, for=203.0.113.5'))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"


def test_empty_list_elements_are_ignored() -> None:
    environ = served(request(HTTP_FORWARDED=" , for=203.0.113.5;;proto=https ,, "))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "https"


def test_x_forwarded_wins_over_forwarded() -> None:
    # nginx sets X-Forwarded-For and passes the client's own Forwarded through.
    environ = served(
        request(
            HTTP_X_FORWARDED_FOR="203.0.113.5",
            HTTP_FORWARDED="for=127.0.0.1;proto=https;host=admin.internal",
        )
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.5"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == "app.internal:8000"


# --- cost and robustness -------------------------------------------------------------


def test_the_cache_stays_bounded() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8")
    for i in range(5000):
        environ = request(HTTP_X_FORWARDED_FOR=f"203.0.{i // 256}.{i % 256}")
        assert served(environ, proxies)["REMOTE_ADDR"] == f"203.0.{i // 256}.{i % 256}"
    assert len(proxies._nodes) <= 256
    assert len(proxies._results) <= 256


def test_long_chains_are_linear() -> None:
    chain = ", ".join(["10.0.0.9"] * 2000 + ["203.0.113.5"] + ["10.0.0.9"] * 2000)
    assert served(request(HTTP_X_FORWARDED_FOR=chain))["REMOTE_ADDR"] == "203.0.113.5"
    forwarded = ", ".join(["for=10.0.0.9;proto=https"] * 4000)
    assert served(request(HTTP_FORWARDED=forwarded))["REMOTE_ADDR"] == "10.0.0.9"


def test_a_numeric_host_is_a_name_not_a_port() -> None:
    environ = served(request(HTTP_X_FORWARDED_HOST="1234"))
    assert environ["SERVER_NAME"] == "1234"
    assert environ["SERVER_PORT"] == "80"


def test_cached_results_do_not_leak_between_requests() -> None:
    headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.5", "HTTP_X_FORWARDED_HOST": "shop.example"}
    first = served(request(**headers))
    # The same header values, now on an https listener: the default port follows it.
    second = served({**request(**headers), "wsgi.url_scheme": "https"})
    assert (first["SERVER_PORT"], second["SERVER_PORT"]) == ("80", "443")
    assert first["REMOTE_ADDR"] == second["REMOTE_ADDR"] == "203.0.113.5"


def test_an_empty_x_forwarded_for_does_not_hide_forwarded() -> None:
    environ = served(request(HTTP_X_FORWARDED_FOR="", HTTP_FORWARDED="for=203.0.113.5"))
    assert environ["REMOTE_ADDR"] == "203.0.113.5"


def test_random_garbage_never_raises_nor_yields_a_bad_address() -> None:
    rng = random.Random(7239)
    pieces = ["for=", "proto=", "host=", "203.0.113.5", "10.0.0.9", '"[2001:db8::1]:80"',
              "[::1]", "unknown", "_x", "https", "HTTP", "a.example:8443", "99999", ";", ",",
              '"', "\\", " ", ":", "[", "]", "\x00", "\xff"]  # fmt: skip
    for _ in range(3000):
        headers = {
            key: "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
            for key in sorted(FORWARDING_KEYS)
            if rng.random() < 0.5
        }
        environ = served(request(**headers), rng.choice([PROXIES, STAR]))
        ipaddress.ip_address(environ["REMOTE_ADDR"])
        check_request(environ, "1.1")  # a forwarded Host still passes the server's checks
        assert environ["wsgi.url_scheme"] in ("http", "https")
        assert environ["SERVER_PORT"].isdigit()
