from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wsgiserve.cli import build_parser, settings_from_args
from wsgiserve.reference import README_TABLES, readme_table, settings_reference
from wsgiserve.settings import SECTIONS, Settings, convert

README = Path(__file__).parents[2] / "README.md"
DOCS = Path(__file__).parents[2] / "docs" / "settings.md"


@pytest.mark.parametrize("marker", list(README_TABLES))
def test_readme_tables_are_generated_from_the_code(marker: str) -> None:
    table = readme_table(README.read_text(encoding="utf-8"), marker)
    assert table is not None, f"README.md lost its {marker} markers"
    assert table == README_TABLES[marker]().strip(), (
        f"README's {marker} is stale: regenerate it with "
        "`python -m wsgiserve.reference --readme README.md`"
    )


def test_docs_settings_reference_is_generated_from_the_code() -> None:
    assert DOCS.read_text(encoding="utf-8") == settings_reference(), (
        "docs/settings.md is stale: regenerate it with "
        "`python -m wsgiserve.reference > docs/settings.md`"
    )


def test_the_reference_names_every_setting_with_its_flags_and_gunicorn_names() -> None:
    text = settings_reference()
    for field in dataclasses.fields(Settings):
        assert f"### `{field.name}`" in text
    assert "- flags: `-m`, `--umask`" in text
    assert "- gunicorn: `accesslog`" in text


def test_help_groups_the_options_by_section_with_defaults() -> None:
    text = build_parser().format_help()
    headings = [line[:-1] for line in text.splitlines() if line.endswith(":") and " " not in line]
    sections = [heading for heading in headings if heading in SECTIONS]
    assert sections == list(SECTIONS)
    binding = text[text.index("\nbinding:") : text.index("\nworkers:")]
    assert "--bind" in binding
    assert "(default: 127.0.0.1:8000)" in binding
    assert "--max-requests N" in text[text.index("\nworkers:") : text.index("\ntimeouts:")]
    assert "(default: 0)" in text
    assert "gunicorn compatibility:" in text
    assert text.startswith("usage: wsgiserve [OPTIONS] MODULE:APP\n")


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


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("workers", "4", 4),
        ("umask", "007", 0o007),
        ("umask", "0o027", 0o027),
        ("timeout", "60", 60.0),
        ("reload", "true", True),
        ("bind", "0.0.0.0:80", ("0.0.0.0:80",)),
        ("reload_extra_files", "a.html", ("a.html",)),
    ],
)
def test_text_values_convert_as_gunicorn_converts_them(
    name: str, text: str, expected: object
) -> None:
    assert convert(name, text) == expected


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("socket_mode", "660", 0o660),
        ("socket_mode", "0o660", 0o660),
        ("socket_mode", 0o660, 0o660),
        ("umask", "007", 0o007),
        ("umask", "0o027", 0o027),
        ("umask", 18, 18),
    ],
)
def test_modes_given_to_the_python_api_as_text_read_as_a_config_file_reads_them(
    name: str, text: object, expected: int
) -> None:
    # serve(socket_mode="660") as a config file spells it: not a TypeError, not decimal.
    assert getattr(Settings.from_mapping({name: text}), name) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"syslog_facility": "locl0"}, "not a syslog facility"),
        ({"logconfig_dict": "logging.json"}, "logconfig_dict must be a dictionary"),
    ],
)
def test_new_settings_are_validated(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping(values)
