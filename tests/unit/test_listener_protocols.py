"""What each listener speaks, and the PROXY protocol switch, from flags and config values."""

from __future__ import annotations

import pytest

from wsgiserve.cli import build_parser, settings_from_args
from wsgiserve.listeners import split_protocol
from wsgiserve.settings import Settings


def flags(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["app:app", *argv]))


@pytest.mark.parametrize(
    ("spec", "default", "expected"),
    [
        ("uwsgi://127.0.0.1:3031", "http", ("uwsgi", "127.0.0.1:3031")),
        ("uwsgi:unix:/run/app.sock", "http", ("uwsgi", "unix:/run/app.sock")),
        ("uwsgi://unix:/run/app.sock", "http", ("uwsgi", "unix:/run/app.sock")),
        ("127.0.0.1:8000", "http", ("http", "127.0.0.1:8000")),
        ("127.0.0.1:8000", "uwsgi", ("uwsgi", "127.0.0.1:8000")),  # protocol = "uwsgi"
        ("unix:/run/app.sock", "uwsgi", ("uwsgi", "unix:/run/app.sock")),
    ],
)
def test_bind_names_its_protocol(spec: str, default: str, expected: tuple[str, str]) -> None:
    assert split_protocol(spec, default) == expected


def test_proxy_protocol_flag_alone_means_auto() -> None:
    assert flags("--proxy-protocol").proxy_protocol == "auto"
    assert flags("--proxy-protocol", "v2").proxy_protocol == "v2"
    assert flags().proxy_protocol == "off"


def test_gunicorn_flag_spellings() -> None:
    settings = flags("--proxy-allow-from", "10.0.0.0/8", "--uwsgi-allow-from", "*")
    assert settings.proxy_allow_ips == "10.0.0.0/8"
    assert settings.uwsgi_allow_ips == "*"
    assert flags("--protocol", "uwsgi").protocol == "uwsgi"


@pytest.mark.parametrize(("value", "mode"), [(True, "auto"), (False, "off"), ("v1", "v1")])
def test_proxy_protocol_as_older_gunicorn_config_files_write_it(value: object, mode: str) -> None:
    assert Settings.from_mapping({"proxy_protocol": value}).proxy_protocol == mode


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"proxy_protocol": "v3"}, "proxy_protocol must be one of off, v1, v2, auto"),
        ({"protocol": "fastcgi"}, "protocol must be one of http, uwsgi"),
        ({"uwsgi_allow_ips": "10.0.0.1/8"}, "uwsgi-allow-ips: bad entry"),
        ({"proxy_allow_ips": "nonsense"}, "proxy-allow-from: bad entry"),
    ],
)
def test_bad_values_name_the_setting(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping(values)
