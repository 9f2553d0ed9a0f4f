"""Bind specs (`-b`): what each spelling means, and the message for one that cannot work."""

from __future__ import annotations

import pytest

from wsgiserve.errors import StartupError
from wsgiserve.listeners import parse_bind


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("127.0.0.1:8020", ("127.0.0.1", 8020)),
        ("8020", ("127.0.0.1", 8020)),  # a bare port, as gunicorn reads it
        ("tcp://0.0.0.0:9000", ("0.0.0.0", 9000)),  # gunicorn's spelling
        (":8000", ("0.0.0.0", 8000)),
        ("[::1]:8000", ("::1", 8000)),
        ("unix:/run/app.sock", ("unix", "/run/app.sock")),
        ("fd://3", ("fd", 3)),
    ],
)
def test_bind_spellings(spec: str, parsed: tuple[str, object]) -> None:
    assert parse_bind(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # It used to say to put an IPv6 address in brackets.
        ("http://127.0.0.1:8020", "a bind is HOST:PORT, not a URL. Use -b 127.0.0.1:8020."),
        ("https://0.0.0.0:443/", "Use -b 0.0.0.0:443 and --certfile/--keyfile for HTTPS."),
        ("::1:8000", "put an IPv6 address in brackets"),
        ("127.0.0.1:http", "'http' is not a port number"),
        ("127.0.0.1:70000", "port 70000 is out of range"),
    ],
)
def test_binds_that_cannot_work_say_why(spec: str, message: str) -> None:
    with pytest.raises(StartupError) as error:
        parse_bind(spec)
    assert message in str(error.value)
