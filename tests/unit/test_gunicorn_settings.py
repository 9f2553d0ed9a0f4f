"""Every row of the gunicorn table, walked the way a gunicorn user meets it: set in a
gunicorn.conf.py-style file, and given as each of its flags in GUNICORN_CMD_ARGS.

Honoured: the resolved value is there; warned: one warning line names it and loading goes on;
refused: loading stops (exit code 1) with the row's reason. The loading path runs in-process
(`cli.resolve`); tests/integration/test_config.py starts the real command for a few of them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsgiserve import cli
from wsgiserve.errors import StartupError
from wsgiserve.gunicorn_settings import BY_NAME, ROWS, Row
from wsgiserve.reload import PollingWatcher, check_engine
from wsgiserve.settings import Settings

# gunicorn 27.0.1's settings (gunicorn/config.py), less its hooks and its ASGI, HTTP/2 and
# dirty-worker settings: the list this table must cover, no more and no less.
_GUNICORN_27_TEXT = """
config wsgi_app bind backlog workers worker_class threads worker_connections max_requests
max_requests_jitter timeout graceful_timeout keepalive limit_request_line limit_request_fields
limit_request_field_size reload reload_engine reload_extra_files spew check_config print_config
preload_app sendfile reuse_port chdir daemon raw_env pidfile worker_tmp_dir user group umask
initgroups tmp_upload_dir secure_scheme_headers forwarded_allow_ips accesslog
disable_redirect_access_to_syslog access_log_format errorlog loglevel capture_output
logger_class logconfig logconfig_dict logconfig_json syslog_addr syslog syslog_prefix
syslog_facility enable_stdio_inheritance statsd_host dogstatsd_tags statsd_prefix
enable_backlog_metric proc_name default_proc_name pythonpath paste proxy_protocol
proxy_allow_ips protocol uwsgi_allow_ips keyfile certfile ssl_version cert_reqs ca_certs
suppress_ragged_eofs do_handshake_on_connect ciphers raw_paste_global_conf
permit_obsolete_folding strip_header_spaces permit_unconventional_http_method
permit_unconventional_http_version casefold_http_method forwarder_headers header_map
http_parser root_path control_socket control_socket_mode control_socket_disable
"""
GUNICORN_27 = _GUNICORN_27_TEXT.split()

# A typical value for each, as a gunicorn.conf.py writes it; numbers sometimes as text, the way
# `os.getenv(...)` hands them over.
TYPICAL: dict[str, Any] = {
    "config": "other.conf.py",
    "wsgi_app": "myproject.wsgi:application",
    "check_config": True,
    "print_config": True,
    "bind": ["0.0.0.0:8080"],
    "backlog": 1024,
    "workers": "4",
    "worker_class": "gthread",
    "threads": 4,
    "worker_connections": 500,
    "max_requests": 1000,
    "max_requests_jitter": "50",
    "timeout": 60,
    "graceful_timeout": 20,
    "keepalive": 2,
    "limit_request_line": 8190,
    "limit_request_fields": 200,
    "limit_request_field_size": 16380,
    "reload": True,
    "reload_engine": "poll",
    "reload_extra_files": ["templates/base.html"],
    "spew": True,
    "check_config_": None,
    "preload_app": True,
    "sendfile": False,
    "reuse_port": True,
    "chdir": "/srv/app",
    "daemon": True,
    "raw_env": ["DJANGO_SETTINGS_MODULE=site.settings"],
    "pidfile": "/run/app.pid",
    "worker_tmp_dir": "/dev/shm",
    "user": "www-data",
    "group": "www-data",
    "umask": 0o007,
    "initgroups": True,
    "tmp_upload_dir": "/var/tmp/uploads",
    "secure_scheme_headers": {"X-FORWARDED-PROTO": "https"},
    "forwarded_allow_ips": "10.0.0.1,10.0.0.2",
    "accesslog": "-",
    "disable_redirect_access_to_syslog": True,
    "access_log_format": '%(h)s "%(r)s" %(s)s %(M)s',
    "errorlog": "/var/log/app/error.log",
    "loglevel": "debug",
    "capture_output": True,
    "logger_class": "myproject.logging.Logger",
    "logconfig": "logging.ini",
    "logconfig_dict": {"version": 1, "loggers": {"myproject": {"level": "INFO"}}},
    "logconfig_json": "logging.json",
    "syslog_addr": "udp://127.0.0.1:5514",
    "syslog": True,
    "syslog_prefix": "myproject",
    "syslog_facility": "local0",
    "enable_stdio_inheritance": True,
    "statsd_host": "localhost:8125",
    "dogstatsd_tags": "env:prod",
    "statsd_prefix": "myproject",
    "enable_backlog_metric": True,
    "proc_name": "myproject",
    "default_proc_name": "myproject",
    "pythonpath": "/srv/lib,/srv/vendor",
    "paste": "production.ini",
    "proxy_protocol": "v1",
    "proxy_allow_ips": "10.0.0.0/8",
    "protocol": "uwsgi",
    "uwsgi_allow_ips": "10.0.0.1",
    "keyfile": "/etc/ssl/private/site.key",
    "certfile": "/etc/ssl/certs/site.pem",
    "ssl_version": "TLSv1_2",
    "cert_reqs": 2,
    "ca_certs": "/etc/ssl/certs/ca.pem",
    "suppress_ragged_eofs": False,
    "do_handshake_on_connect": True,
    "ciphers": "ECDHE+AESGCM",
    "raw_paste_global_conf": ["FOO=1"],
    "permit_obsolete_folding": True,
    "strip_header_spaces": True,
    "permit_unconventional_http_method": True,
    "permit_unconventional_http_version": True,
    "casefold_http_method": True,
    "forwarder_headers": "SCRIPT_NAME,PATH_INFO,REMOTE_USER",
    "header_map": "refuse",
    "http_parser": "python",
    "root_path": "/api",
    "control_socket": "/run/app.ctl",
    "control_socket_mode": 0o660,
    "control_socket_disable": True,
}
del TYPICAL["check_config_"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """The error log's lines while loading, in a clean directory and environment."""
    for name in ("GUNICORN_CMD_ARGS", "WSGISERVE_CMD_ARGS", "PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.chdir(tmp_path)
    handler = Lines()
    logger = logging.getLogger("wsgiserve.error")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def resolve(*argv: str) -> cli.Resolved:
    return cli.resolve(list(argv), cli.build_parser())


def from_file(tmp_path: Path, name: str, value: Any) -> cli.Resolved:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"{name} = {value!r}\n")
    args = ["-c", str(conf)]
    return resolve(*args) if name == "wsgi_app" else resolve(*args, "myapp:app")


def flag_args(row: Row, flag: str, value: Any) -> list[str]:
    if row.switch is not None:
        return [flag]
    if row.many:
        return [part for item in value for part in (flag, str(item))]
    return [flag, str(value)]


def check_honoured(resolved: cli.Resolved, row: Row, value: Any, lines: list[str]) -> None:
    assert not [line for line in lines if line.startswith("WARNING")], lines
    if row.name == "wsgi_app":
        assert resolved.app == value
    elif row.name in ("check_config", "print_config"):
        assert resolved.actions[row.name] is True
    elif row.name == "config":
        return
    elif row.setting is None:  # nothing to change: -R, or a no-op gunicorn default
        assert resolved.settings == Settings()
    else:
        got = getattr(resolved.settings, row.setting)
        expected = tuple(value) if isinstance(value, list) else value
        if isinstance(expected, str) and not isinstance(got, str):
            expected = type(got)(expected)
        assert got == expected, (row.name, got, expected)


def test_the_table_has_every_wsgi_setting_of_gunicorn_27_once() -> None:
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names)) == 85
    assert set(names) == set(GUNICORN_27)
    assert set(TYPICAL) == set(names)


def test_root_path_is_honoured_by_the_setting_of_its_name() -> None:
    assert BY_NAME["root_path"].outcome == "honoured"
    assert BY_NAME["root_path"].setting == "root_path"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_every_flag_of_an_honoured_row_sets_its_setting(row: Row) -> None:
    actions = cli.build_parser()._option_string_actions
    for flag in row.flags:
        assert flag in actions, f"gunicorn's {flag} is unknown to wsgiserve"
        if row.setting is not None:
            assert actions[flag].dest == row.setting, flag


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_each_row_in_a_config_file_does_what_the_table_says(
    row: Row, tmp_path: Path, warnings: list[str]
) -> None:
    value = TYPICAL[row.name]
    if row.name == "config":
        (tmp_path / "other.conf.py").write_text("workers = 3\n")
    outcome = row.outcome_for(value)
    if outcome is None:
        resolved = from_file(tmp_path, row.name, value)
        check_honoured(resolved, row, value, warnings)
        if row.name == "config":  # gunicorn ignores it inside a config file, and so do we
            assert resolved.settings.workers == 1
    elif outcome[0] == "warned":
        resolved = from_file(tmp_path, row.name, value)
        assert resolved.settings == Settings()
        assert warnings == [
            f"WARNING config file {tmp_path}/gunicorn.conf.py: {row.name} is ignored: {outcome[1]}"
        ]
    else:
        with pytest.raises(StartupError) as refused:
            from_file(tmp_path, row.name, value)
        assert refused.value.exit_code == 1
        assert f"{row.name} is not supported: {outcome[1]}" in str(refused.value)


FLAGGED = [(row, flag) for row in ROWS for flag in row.flags]


@pytest.mark.parametrize(("row", "flag"), FLAGGED, ids=[flag for _, flag in FLAGGED])
def test_each_flag_in_gunicorn_cmd_args_does_what_the_table_says(
    row: Row, flag: str, tmp_path: Path, warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = TYPICAL[row.name]
    if row.name == "config":
        (tmp_path / value).write_text("workers = 3\n")
    monkeypatch.setenv("GUNICORN_CMD_ARGS", shlex.join(flag_args(row, flag, value)))
    # A switch stores one value; for suppress_ragged_eofs that is gunicorn's default, a no-op.
    given = row.switch if row.switch is not None else value
    outcome = row.outcome_for(given)
    if outcome is None:
        resolved = resolve("myapp:app")
        check_honoured(resolved, row, given, warnings)
        if row.name == "config":
            assert resolved.settings.workers == 3
    elif outcome[0] == "warned":
        resolved = resolve("myapp:app")
        assert resolved.settings == Settings()
        [line] = warnings
        assert line.startswith(f"WARNING GUNICORN_CMD_ARGS: {row.flags[-1]}")
        assert line.endswith(f" is ignored: {outcome[1]}")
    else:
        with pytest.raises(StartupError) as refused:
            resolve("myapp:app")
        assert refused.value.exit_code == 1
        assert f"is not supported: {outcome[1]}" in str(refused.value)


@pytest.mark.parametrize("value", ["sync", False, None], ids=["worker_class", "daemon", "paste"])
def test_gunicorns_own_defaults_are_accepted_silently(
    value: Any, tmp_path: Path, warnings: list[str]
) -> None:
    name = {"sync": "worker_class", False: "daemon", None: "paste"}[value]
    resolved = from_file(tmp_path, name, value)
    assert resolved.settings == Settings()
    assert warnings == []


@pytest.mark.parametrize("worker_class", ["gevent", "eventlet", "tornado", "myproject.Worker"])
def test_worker_classes_that_cannot_work_are_refused(
    worker_class: str, tmp_path: Path, warnings: list[str]
) -> None:
    with pytest.raises(StartupError, match="is not supported") as refused:
        from_file(tmp_path, "worker_class", worker_class)
    assert refused.value.exit_code == 1


def test_short_flags_of_gunicorn_work_together_on_one_command_line(
    tmp_path: Path, warnings: list[str]
) -> None:
    resolved = resolve(
        "myapp:app", "-m", "007", "-n", "site", "-R", "-t", "45", "-e", "A=1", "-w", "2"
    )
    assert (resolved.settings.umask, resolved.settings.proc_name) == (0o007, "site")
    assert (resolved.settings.timeout, resolved.settings.workers) == (45.0, 2)
    assert resolved.settings.raw_env == ("A=1",)
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("daemon", "false"), ("spew", "False"), ("control_socket_mode", "0600"), ("sendfile", None)],
)
def test_gunicorns_default_written_as_text_is_still_its_default(
    name: str, value: Any, tmp_path: Path, warnings: list[str]
) -> None:
    assert from_file(tmp_path, name, value).settings == Settings()
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "value", "setting", "expected"),
    [
        ("user", 1000, "user", "1000"),
        ("group", 0, "group", "0"),
        (
            "forwarded_allow_ips",
            ["10.0.0.1", "10.0.0.2"],
            "forwarded_allow_ips",
            "10.0.0.1,10.0.0.2",
        ),
        ("bind", "0.0.0.0:80", "bind", ("0.0.0.0:80",)),
        ("limit_request_fields", "50", "limit_request_fields", 50),
    ],
)
def test_values_gunicorn_accepts_in_other_shapes_are_taken_too(
    name: str, value: Any, setting: str, expected: Any, tmp_path: Path, warnings: list[str]
) -> None:
    assert getattr(from_file(tmp_path, name, value).settings, setting) == expected


def test_a_misspelled_gunicorn_name_gets_a_did_you_mean(
    tmp_path: Path, warnings: list[str]
) -> None:
    with pytest.raises(StartupError, match="did you mean tmp_upload_dir"):
        from_file(tmp_path, "tmp_uplod_dir", "/tmp")


def test_reload_engine_inotify_without_watchfiles_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # not installed
    with pytest.raises(StartupError, match="pip install watchfiles") as refused:
        check_engine("inotify")
    assert refused.value.exit_code == 1
    check_engine("poll")
    check_engine("auto")


def test_reload_engine_poll_polls_the_extra_files(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("one")
    watcher = PollingWatcher([], [str(tmp_path / "*.html"), str(tmp_path / "later.txt")])
    assert watcher.changed() == []
    os.utime(page, (1, 1))
    (tmp_path / "later.txt").write_text("here now")
    (tmp_path / "ignored.css").write_text("not watched")
    assert sorted(p.name for p in watcher.changed()) == ["later.txt", "page.html"]


@pytest.mark.parametrize(
    "worker_class",
    [
        "gthread",
        "gunicorn.workers.gthread.ThreadWorker",
        "egg:gunicorn#sync",
        "uvicorn_worker.UvicornWorker",
    ],
)
def test_worker_classes_wsgiserve_stands_in_for_are_warned_not_refused(
    worker_class: str, tmp_path: Path, warnings: list[str]
) -> None:
    from_file(tmp_path, "worker_class", worker_class)
    [line] = warnings
    assert "worker_class is ignored: wsgiserve always runs an event loop" in line


@pytest.mark.parametrize("row", [row for row in ROWS if row.setting is None], ids=lambda r: r.name)
def test_a_row_without_a_setting_names_no_setting_wsgiserve_has(row: Row) -> None:
    # Adding a setting under a gunicorn name (proxy_protocol, root_path ...) must come with its
    # row turned to honoured, or the table would go on refusing or ignoring it.
    assert row.name not in {field.name for field in dataclasses.fields(Settings)}, (
        f"wsgiserve now has a {row.name} setting: make its row in "
        "wsgiserve/gunicorn_settings.py honoured"
    )
