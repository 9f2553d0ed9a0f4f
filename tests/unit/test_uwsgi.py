"""The uwsgi parser without sockets: packets in, the sink's reports out."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tests.support.sink import Sink
from tests.support.uwsgi_client import encode_vars, packet, request_vars
from wsgiserve.environ import connection_environ, server_environ
from wsgiserve.errors import BadRequest
from wsgiserve.settings import Settings
from wsgiserve.uwsgi import UwsgiParser, parse_vars, vars_environ

SETTINGS = Settings()
BASE = connection_environ(
    server_environ("http", False, None), ("127.0.0.1", 3031), ("127.0.0.1", 40000)
)


def parse(
    data: bytes, step: int = 0, allowed: bool = True, **settings: Any
) -> tuple[Sink, UwsgiParser]:
    sink = Sink()
    parser = UwsgiParser(sink, Settings(**settings), BASE, allowed, 65536)
    if step:
        for at in range(0, len(data), step):
            assert parser.feed(data[at : at + step]) == b""
    else:
        assert parser.feed(data) == b""
    return sink, parser


def test_vars_block_round_trip() -> None:
    pairs = [("REQUEST_METHOD", "GET"), ("EMPTY", ""), ("HTTP_X", "é" * 300)]
    assert parse_vars(encode_vars(pairs)) == pairs


@pytest.mark.parametrize(
    "block",
    [
        b"\x05",  # half a key size
        b"\x05\x00abc",  # key shorter than its size
        struct.pack("<H", 1) + b"K" + b"\x01",  # half a value size
        struct.pack("<H", 1) + b"K" + struct.pack("<H", 9) + b"short",
    ],
)
def test_truncated_vars_block_is_refused(block: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_vars(block)


def test_get_reaches_the_sink_as_one_request_split_anywhere() -> None:
    data = packet(request_vars("GET", "/a%20b/c?x=1&y=2"))
    for step in (0, 1, 3, 7):
        sink, parser = parse(data, step)
        assert not sink.refused
        [(environ, version, keep_alive, length)] = sink.heads
        assert (version, keep_alive, length) == ("1.0", False, 0)  # close-delimited, one request
        assert sink.ended == 1
        assert parser.stopped
        assert environ["REQUEST_METHOD"] == "GET"
        assert environ["PATH_INFO"] == "/a%20b/c"  # as the web server decoded it (or not)
        assert environ["QUERY_STRING"] == "x=1&y=2"
        assert environ["REQUEST_URI"] == environ["RAW_URI"] == "/a%20b/c?x=1&y=2"
        assert environ["REMOTE_ADDR"] == "192.0.2.7"
        assert environ["REMOTE_PORT"] == "50123"
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "80")
        assert environ["HTTP_HOST"] == "example.com"
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert environ["wsgi.url_scheme"] == "http"
        assert "CONTENT_LENGTH" not in environ
        assert "CONTENT_TYPE" not in environ
        assert environ["wsgiserve.request_id"]


def test_body_per_content_length_streams_to_the_sink() -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes
    data = packet(request_vars("POST", "/up", len(body), CONTENT_TYPE="x/y"), body)
    sink, _ = parse(data + b"junk after the body", 1000)
    [(environ, _, _, length)] = sink.heads
    assert length == 10_240
    assert environ["CONTENT_LENGTH"] == "10240"
    assert environ["CONTENT_TYPE"] == "x/y"
    assert sink.body == body
    assert sink.ended == 1


def test_head_completes_before_the_body_arrives() -> None:
    sink, parser = parse(packet(request_vars("PUT", "/", 5)))
    assert len(sink.heads) == 1
    assert sink.ended == 0
    assert not parser.stopped
    parser.feed(b"hel")
    parser.feed(b"lo")
    assert sink.body == b"hello"
    assert sink.ended == 1


def test_code_loading_and_unknown_vars_are_dropped() -> None:
    variables = request_vars(
        UWSGI_FILE="/tmp/evil.py",
        UWSGI_SCRIPT="evil:app",
        UWSGI_APPID="x",
        PATH_TRANSLATED="/x",
        GATEWAY_INTERFACE="CGI/9",
        SERVER_SOFTWARE="nginx",
        HTTP_CONTENT_LENGTH="99",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    sink, _ = parse(packet(variables))
    environ = sink.heads[0][0]
    assert not [key for key in environ if key.startswith("UWSGI")]
    assert "PATH_TRANSLATED" not in environ
    assert environ["SERVER_SOFTWARE"].startswith("wsgiserve/")
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert "HTTP_TRANSFER_ENCODING" not in environ
    assert "GATEWAY_INTERFACE" not in environ


@pytest.mark.parametrize(
    ("extra", "scheme", "port"),
    [
        ({"HTTPS": "on", "SERVER_PORT": "443"}, "https", "443"),
        ({"REQUEST_SCHEME": "https"}, "https", "80"),
        ({"HTTPS": "off"}, "http", "80"),
    ],
)
def test_scheme_from_the_web_server(extra: dict[str, str], scheme: str, port: str) -> None:
    sink, _ = parse(packet(request_vars() | extra))
    environ = sink.heads[0][0]
    assert environ["wsgi.url_scheme"] == scheme
    assert environ["SERVER_PORT"] == port


@pytest.mark.parametrize(
    ("script", "path", "script_name", "path_info"),
    [
        ("/app", "/app/users/1", "/app", "/users/1"),
        ("/app/", "/app/users/1", "/app", "/users/1"),
        ("/app", "/app", "/app", ""),
        ("/app", "/application", "/app", "/application"),  # not under the mount point
        ("", "/x", "", "/x"),
    ],
)
def test_mount_point_is_taken_off_path_info(
    script: str, path: str, script_name: str, path_info: str
) -> None:
    sink, _ = parse(packet(request_vars(uri=path, SCRIPT_NAME=script), modifier1=30))
    environ = sink.heads[0][0]
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)


def test_path_from_request_uri_when_path_info_is_missing() -> None:
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/a%2Fb?q=1"}
    environ = vars_environ(BASE, list(variables.items()), SETTINGS)
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/a/b", "q=1")
    assert environ["REMOTE_ADDR"] == "127.0.0.1"  # the connection's, when the vars have none


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (packet(request_vars(), modifier1=5), 400),  # not a WSGI request
        (packet(request_vars(method="GE T")), 400),
        (packet({"PATH_INFO": "/"}), 400),  # no method
        (packet({"REQUEST_METHOD": "GET"}), 400),  # no path at all
        (packet(request_vars(CONTENT_LENGTH="-1")), 400),
        (packet(request_vars(CONTENT_LENGTH="1e3")), 400),
        (packet(request_vars(uri="/" + "a" * 5000)), 414),
        (packet(request_vars(HTTP_X_BIG="b" * 9000)), 431),
        (b"\x00\x05\x00\x00\x05\x00abc", 400),  # a vars block that ends inside a key
    ],
)
def test_bad_packets_are_refused(data: bytes, status: int) -> None:
    sink, parser = parse(data)
    assert not sink.heads
    [(error, in_body)] = sink.refused
    assert error.status == status
    assert not in_body
    assert parser.stopped


def test_too_many_fields_is_431() -> None:
    many = {f"HTTP_X_{n}": "v" for n in range(101)}
    sink, _ = parse(packet(request_vars() | many))
    assert [error.status for error, _ in sink.refused] == [431]


def test_vars_block_over_the_head_limit_is_refused_before_it_arrives() -> None:
    sink = Sink()
    parser = UwsgiParser(sink, SETTINGS, BASE, True, 1000)
    parser.feed(struct.pack("<BHB", 0, 1001, 0))  # only the header: nothing buffered
    assert [error.status for error, _ in sink.refused] == [431]


def test_body_over_the_limit_is_413_before_any_byte_of_it() -> None:
    sink, _ = parse(packet(request_vars("POST", "/", 2000)), limit_request_body=1000)
    assert [error.status for error, _ in sink.refused] == [413]
    assert not sink.heads


def test_peer_not_allowed_is_403_and_nothing_is_parsed() -> None:
    sink, _ = parse(packet(request_vars()), allowed=False)
    assert [error.status for error, _ in sink.refused] == [403]
    assert not sink.heads


def test_head_request_is_marked_for_a_bodiless_refusal() -> None:
    sink, parser = parse(packet(request_vars("HEAD")))
    assert parser.head_method
    assert sink.ended == 1


def test_header_in_progress_is_reported_for_the_header_timeout() -> None:
    sink, parser = parse(packet(request_vars())[:10])
    assert parser.in_head
    assert not sink.heads
    assert parser.partial_environ()["REMOTE_ADDR"] == "127.0.0.1"


def test_repeated_http_vars_are_joined() -> None:
    variables = [*request_vars().items(), ("HTTP_X_A", "1"), ("HTTP_X_A", "2")]
    environ = vars_environ(BASE, variables, SETTINGS)
    assert environ["HTTP_X_A"] == "1, 2"
