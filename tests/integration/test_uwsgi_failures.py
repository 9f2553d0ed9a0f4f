"""An app that fails mid-stream behind a real nginx (``uwsgi_pass``): the client must see a
broken response, never a short one passed off as complete.

A uwsgi response has no framing of its own: it ends at the close. So a cut response must
end in a TCP reset, which nginx reports as an upstream error and passes on by breaking its
own (chunked) response to the client. Over a unix socket there is no reset to send, so this
runs over TCP. Apache's mod_proxy_uwsgi is left out: it passed the cut response on as
complete in 3 runs of 10 even with the reset (see the README), so no test can say yes or no.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .nginx_support import run_directory
from .test_uwsgi_frontends import CLIENT_TIMEOUT, UwsgiStack, start_stack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UwsgiStack]:
    directory = tmp_path_factory.mktemp("uwsgi-fail")
    with run_directory() as run_dir, start_stack(directory, run_dir, "nginx", "tcp") as started:
        yield started


def fetch(url: str) -> bytes:
    with httpx.stream("GET", url, timeout=CLIENT_TIMEOUT) as response:
        assert response.status_code == 200
        return response.read()


def test_app_failing_mid_stream_breaks_the_clients_response(tcp_stack: UwsgiStack) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        fetch(f"{tcp_stack.url}/fail")


def test_the_next_request_is_served(tcp_stack: UwsgiStack) -> None:
    response = httpx.get(f"{tcp_stack.url}/env", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200
