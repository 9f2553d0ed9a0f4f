"""Real Flask and Django apps behind the wsgiserve CLI, driven with httpx and raw sockets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from .apps.flask_app import stream_line
from .support import OpenWire, ServerProcess, request_bytes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(framework_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=framework_server.url, timeout=15.0) as client:
        yield client


def test_get_with_query_args(client: httpx.Client) -> None:
    response = client.get(
        "/echo", params=[("q", "hello world"), ("tag", "x"), ("tag", "y"), ("uni", "é&=?")]
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "path": "/echo",
        "args": {"q": ["hello world"], "tag": ["x", "y"], "uni": ["é&=?"]},
    }


def test_post_urlencoded_form(client: httpx.Client) -> None:
    response = client.post("/form", data={"name": "Zoë & co", "tags": ["a", "b"], "empty": ""})

    assert response.status_code == 200
    assert response.json() == {"form": {"name": ["Zoë & co"], "tags": ["a", "b"], "empty": [""]}}


def test_multipart_upload_round_trips_bytes(client: httpx.Client) -> None:
    blob = os.urandom(300 * 1024)

    response = client.post(
        "/upload",
        data={"note": "three hundred KiB"},
        files={"file": ("blob.bin", blob, "application/octet-stream")},
    )

    assert response.status_code == 200
    assert response.json() == {
        "filename": "blob.bin",
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "note": "three hundred KiB",
    }


def test_streaming_response_arrives_whole_and_in_order(client: httpx.Client) -> None:
    expected = "".join(stream_line(i) for i in range(300))

    with client.stream("GET", "/stream", params={"n": "300"}) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        body = b"".join(response.iter_bytes())

    assert body.decode() == expected


def test_streaming_response_chunked_framing_on_the_wire(
    framework_server: ServerProcess, open_wire: OpenWire
) -> None:
    wire = open_wire(*framework_server.host_port)
    expected = "".join(stream_line(i) for i in range(200)).encode()

    wire.send(request_bytes("GET", "/stream?n=200"))
    response = wire.read_response()

    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-length") is None
    assert response.chunks is not None
    assert all(response.chunks), "a zero-length chunk before the last one ends the body early"
    assert response.body == expected
    # The connection is still usable afterwards: the terminating chunk was framed correctly.
    wire.send(request_bytes("GET", "/echo?after=stream"))
    follow_up = wire.read_response()
    assert follow_up.status == 200
    assert b'"after"' in follow_up.body


def test_unknown_path_is_404(client: httpx.Client) -> None:
    response = client.get("/definitely/not/here")

    assert response.status_code == 404


def test_app_exception_is_500_without_traceback(client: httpx.Client) -> None:
    response = client.get("/boom")

    assert response.status_code == 500
    for leak in ("Traceback", "kaboom-SECRET-detail", "RuntimeError", 'File "'):
        assert leak not in response.text
    # The server keeps serving after the failure.
    assert client.get("/echo").status_code == 200


def test_head_has_headers_and_no_body(client: httpx.Client) -> None:
    get = client.get("/echo", params={"a": "1"})
    head = client.head("/echo", params={"a": "1"})

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if "content-length" in head.headers:
        assert head.headers["content-length"] == str(len(get.content))


def test_head_sends_no_body_bytes_on_a_kept_alive_connection(
    framework_server: ServerProcess, open_wire: OpenWire
) -> None:
    wire = open_wire(*framework_server.host_port)

    wire.send(request_bytes("HEAD", "/echo?a=1"))
    head = wire.read_response(head_request=True)
    wire.send(request_bytes("GET", "/echo?a=2"))
    get = wire.read_response()

    assert head.status == 200
    # Had the HEAD response carried a body, those bytes would now be parsed as the next head.
    assert get.status == 200
    assert b'"a"' in get.body
