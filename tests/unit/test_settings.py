from __future__ import annotations

import re
from pathlib import Path

import pytest

from wsgiserve.cli import build_parser, settings_from_args
from wsgiserve.settings import Settings, markdown_table

README = Path(__file__).parents[2] / "README.md"


def test_readme_settings_table_is_generated_from_settings() -> None:
    text = README.read_text(encoding="utf-8")
    pattern = r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->"
    match = re.search(pattern, text, re.S)
    assert match, "README.md lost its settings-table markers"
    assert match.group(1).strip() == markdown_table().strip(), (
        "README settings table is stale: regenerate it from wsgiserve.settings.markdown_table()"
    )


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_mapping({"thread": 4})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"threads": 0}, "threads"),
        ({"keep_alive": -1}, "keep_alive"),
        ({"log_level": "loud"}, "log_level"),
        ({"bind": ()}, "bind"),
    ],
)
def test_invalid_values_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping(values)


def test_zero_limits_mean_the_maximum_like_gunicorn() -> None:
    settings = Settings(limit_request_line=0, limit_request_fields=0, limit_request_field_size=0)
    assert settings.limit_request_line == 65535
    assert settings.limit_request_fields == 32768
    assert settings.limit_request_field_size == 65535


def test_command_line_flags_map_to_settings() -> None:
    args = build_parser().parse_args(
        [
            "app:app",
            "-b",
            "127.0.0.1:9000",
            "--bind",
            "unix:/tmp/x.sock",
            "--threads",
            "3",
            "--keep-alive",
            "7.5",
            "--limit-request-field_size",
            "100",
        ]
    )
    settings = settings_from_args(args)
    assert settings.bind == ("127.0.0.1:9000", "unix:/tmp/x.sock")
    assert settings.threads == 3
    assert settings.keep_alive == 7.5
    assert settings.limit_request_field_size == 100
    assert settings.graceful_timeout == Settings().graceful_timeout


def test_command_line_defaults_are_the_settings_defaults() -> None:
    settings = settings_from_args(build_parser().parse_args(["app:app"]))
    assert settings == Settings()
