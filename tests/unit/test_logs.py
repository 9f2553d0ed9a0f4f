"""Access-log atoms and JSON lines, escaping, and logging set-up: files, reopening, configs."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsgiserve import accesslog, logs
from wsgiserve.errors import StartupError

# 2026-11-24 12:00:00.5 UTC is when the request starts; it took DURATION seconds.
DURATION = 1.2345678
STARTED = datetime.datetime(2026, 11, 24, 12, 0, 0, 500_000, datetime.timezone.utc).timestamp()
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("X-Trace", "t1"), ("x-trace", "t2")]
# A combined-log line: host ident user [time] "request" status bytes "referer" "agent".
QUOTED = r'"((?:[^"\\]|\\.)*)"'
CLF = re.compile(rf"^(\S+) (\S+) (\S+) \[([^\]]+)\] {QUOTED} (\d+) (\S+) {QUOTED} {QUOTED}$")


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def make_environ(**extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/items/42",
        "QUERY_STRING": "page=2",
        "RAW_URI": "/items/42?page=2",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.7",
        "CONTENT_TYPE": "application/json",
        "HTTP_REFERER": "https://example.com/list",
        "HTTP_USER_AGENT": "curl/8.5.0",
        "HTTP_X_REQUEST_ID": "abc-123",
        "HTTP_AUTHORIZATION": basic(b"alice:s3cret"),
    }
    environ.update(extra)
    return environ


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the loggers back as they were and close every handler a test left behind."""
    names = ["", "wsgiserve", logs.ERROR_LOG, accesslog.ACCESS_LOG]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    yield
    logs.configure()  # closes the files it opened
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


@pytest.fixture
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC and the request ends DURATION seconds after STARTED."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(time, "time", lambda: STARTED + DURATION)
    yield
    monkeypatch.undo()
    time.tzset()


def access_lines(
    tmp_path: Path,
    fmt: str | None = None,
    environ: dict[str, Any] | None = None,
    *,
    json_lines: bool = False,
    status: int = 200,
    sent: int = 1234,
) -> list[str]:
    """Log one request to an access-log file and return what the file holds."""
    path = tmp_path / "access.log"
    logs.configure(access_logfile=str(path), error_logfile=str(tmp_path / "error.log"))
    access_log = accesslog.AccessLog(fmt, json_lines=json_lines)
    access_log(environ or make_environ(), status, HEADERS, sent, DURATION)
    data = path.read_bytes()
    assert data.isascii()
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", data), "a control byte reached the log"
    return data.decode("ascii").splitlines()


@pytest.mark.usefixtures("utc_clock")
def test_default_format_is_gunicorns_combined_log(tmp_path: Path) -> None:
    [line] = access_lines(tmp_path)
    assert line == (
        '203.0.113.7 - alice [24/Nov/2026:12:00:00 +0000] "GET /items/42?page=2 HTTP/1.1" 200 1234'
        ' "https://example.com/list" "curl/8.5.0"'
    )


@pytest.mark.usefixtures("utc_clock")
def test_every_atom(tmp_path: Path) -> None:
    atoms = list("hlutrmUqHsBbfaTMDLp")
    variables = [
        "{x-request-id}i",
        "{Content-Type}i",
        "{content-type}o",
        "{X-TRACE}o",
        "{REMOTE_ADDR}e",
        "{x-missing}i",
        "{x-missing}o",
        "{missing}e",
    ]
    fmt = "|".join(f"%({atom})s" for atom in atoms + variables)
    [line] = access_lines(tmp_path, fmt)
    assert line.split("|") == [
        "203.0.113.7",
        "-",
        "alice",
        "[24/Nov/2026:12:00:00 +0000]",
        "GET /items/42?page=2 HTTP/1.1",
        "GET",
        "/items/42",
        "page=2",
        "HTTP/1.1",
        "200",
        "1234",
        "1234",
        "https://example.com/list",
        "curl/8.5.0",
        "1",
        "1234",
        "1234567",
        "1.234568",
        str(os.getpid()),
        "abc-123",
        "application/json",
        "text/html; charset=utf-8",
        "t1, t2",
        "203.0.113.7",
        "-",
        "-",
        "-",
    ]


def test_empty_body_and_no_optional_headers(tmp_path: Path) -> None:
    environ = make_environ(QUERY_STRING="", RAW_URI="/items/42")
    for key in ("HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION", "REMOTE_ADDR"):
        del environ[key]
    [line] = access_lines(tmp_path, "%(h)s %(u)s [%(q)s] %(b)s %(B)s %(f)s %(a)s", environ, sent=0)
    assert line == "- - [] - 0 - -"


def test_time_atom_carries_the_local_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    monkeypatch.setattr(time, "time", lambda: STARTED + DURATION)
    try:
        [line] = access_lines(tmp_path, "%(t)s")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert line == "[24/Nov/2026:07:00:00 -0500]"


def test_request_line_falls_back_to_path_and_query_without_raw_uri(tmp_path: Path) -> None:
    environ = make_environ(SCRIPT_NAME="/app")
    del environ["RAW_URI"]
    [line] = access_lines(tmp_path, "%(r)s|%(U)s", environ)
    assert line == "GET /app/items/42?page=2 HTTP/1.1|/app/items/42"


# No spaces, so every field of a combined-log line stays one field however it is escaped.
HOSTILE = '\x1b[31mred\x1b[0m"quoted"back\\slash\r\nFAKE\x00\x07\x9b2J'
HOSTILE_ESCAPED = '\\x1b[31mred\\x1b[0m\\"quoted\\"back\\\\slash\\x0d\\x0aFAKE\\x00\\x07\\x9b2J'


def hostile_environ() -> dict[str, Any]:
    return make_environ(
        PATH_INFO="/" + HOSTILE,
        RAW_URI="/" + HOSTILE,
        REMOTE_ADDR=HOSTILE,
        HTTP_REFERER=HOSTILE,
        HTTP_USER_AGENT=HOSTILE,
        HTTP_X_REQUEST_ID=HOSTILE,
        HTTP_AUTHORIZATION=basic(HOSTILE.encode("latin-1") + b":pw"),
    )


def test_text_lines_escape_control_characters_quotes_and_backslashes(tmp_path: Path) -> None:
    [line] = access_lines(tmp_path, environ=hostile_environ())
    match = CLF.match(line)
    assert match is not None, line
    host, _, user, _, request, _, _, referer, agent = match.groups()
    assert host == user == referer == agent == HOSTILE_ESCAPED
    assert request == f"GET /{HOSTILE_ESCAPED} HTTP/1.1"


def test_text_atoms_for_headers_and_environ_are_escaped(tmp_path: Path) -> None:
    headers = [("X-Echo", HOSTILE)]
    path = tmp_path / "access.log"
    logs.configure(access_logfile=str(path))
    fmt = "%({x-request-id}i)s|%({x-echo}o)s|%({HTTP_USER_AGENT}e)s|%(U)s|%(m)s"
    accesslog.AccessLog(fmt)(hostile_environ() | {"REQUEST_METHOD": "G\x1bT"}, 200, headers, 1, 0.1)
    assert path.read_text("ascii").split("|") == [
        HOSTILE_ESCAPED,
        HOSTILE_ESCAPED,
        HOSTILE_ESCAPED,
        "/" + HOSTILE_ESCAPED,
        "G\\x1bT\n",
    ]


def test_text_lines_show_non_ascii_request_bytes_as_escapes(tmp_path: Path) -> None:
    utf8_path = "/café".encode().decode("latin-1")  # how PEP 3333 hands over the bytes
    [line] = access_lines(tmp_path, "%(U)s", make_environ(PATH_INFO=utf8_path))
    assert line == "/caf\\xc3\\xa9"


def test_escape() -> None:
    assert accesslog.escape("/plain/path?q=1") == "/plain/path?q=1"
    assert accesslog.escape('a"b\\c\td\x7f') == 'a\\"b\\\\c\\x09d\\x7f'
    assert accesslog.escape("snow\u2603\u202e") == "snow\\u2603\\u202e"


@pytest.mark.usefixtures("utc_clock")
def test_json_lines(tmp_path: Path) -> None:
    environ = make_environ(**{"wsgiserve.request_id": "req-7"})
    [line] = access_lines(tmp_path, json_lines=True, environ=environ, status=404)
    assert json.loads(line) == {
        "remote_addr": "203.0.113.7",
        "time": "2026-11-24T12:00:00.500+00:00",
        "method": "GET",
        "path": "/items/42",
        "query": "page=2",
        "protocol": "HTTP/1.1",
        "status": 404,
        "bytes": 1234,
        "referer": "https://example.com/list",
        "user_agent": "curl/8.5.0",
        "duration_ms": 1234.568,
        "pid": os.getpid(),
        "request_id": "req-7",
    }


def test_json_lines_escape_control_characters_and_round_trip(tmp_path: Path) -> None:
    environ = hostile_environ()
    del environ["HTTP_REFERER"]
    [line] = access_lines(tmp_path, json_lines=True, environ=environ)
    assert "\\u001b[31m" in line
    record = json.loads(line)
    assert record["path"] == "/" + HOSTILE
    assert record["user_agent"] == HOSTILE
    assert record["referer"] is None
    assert "request_id" not in record


@pytest.mark.parametrize(
    ("authorization", "user"),
    [
        (basic(b"alice:s3cret"), "alice"),
        ("basic " + base64.b64encode(b"bob:pw:with:colons").decode(), "bob"),
        (basic("josé:pw".encode()), "jos\\xc3\\xa9"),
        (basic(b"\x1b[31mroot:pw"), "\\x1b[31mroot"),
        (basic(b"no-colon"), "-"),
        (basic(b":only-password"), "-"),
        ("Basic !!not base64!!", "-"),
        ("Basic YWxpY2U6cHc", "-"),  # missing padding
        ("Basic ÿÿÿÿ", "-"),
        ("Basic", "-"),
        ("Bearer abc.def.ghi", "-"),
        ("", "-"),
    ],
)
def test_user_from_basic_authorization(tmp_path: Path, authorization: str, user: str) -> None:
    [line] = access_lines(tmp_path, "%(u)s", make_environ(HTTP_AUTHORIZATION=authorization))
    assert line == user


@pytest.mark.parametrize("fmt", ["%(zz)s", "%(h)d", "%(h)s 100%", "%s", "%({x}q)s"])
def test_bad_formats_fail_at_construction(fmt: str) -> None:
    with pytest.raises(ValueError, match="access-log"):
        accesslog.AccessLog(fmt)
    accesslog.AccessLog(fmt, json_lines=True)  # JSON lines ignore the format


def test_numeric_conversions_and_literal_percent_are_allowed(tmp_path: Path) -> None:
    [line] = access_lines(tmp_path, "%(s)d %(B)05d 100%% %(m)s", status=201, sent=12)
    assert line == "201 00012 100% GET"


def test_configure_writes_each_log_to_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    logs.configure(
        log_level="warning", error_logfile=str(error_path), access_logfile=str(access_path)
    )
    error_log = logging.getLogger(logs.ERROR_LOG)
    error_log.info("below the level")
    error_log.warning("error handling GET %s", "/\x1b[2J\r\n[fake] line")
    try:
        raise RuntimeError("boom\x1b[31m")
    except RuntimeError:
        error_log.exception("failed")
    accesslog.AccessLog()(make_environ(), 200, [], 5, 0.01)
    errors = error_path.read_text("utf-8").splitlines()
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] "
    assert re.match(stamp, errors[0])
    assert errors[0].endswith("error handling GET /\\x1b[2J\\x0d\\x0a[fake] line")
    assert errors[1].endswith("[ERROR] failed")
    assert errors[2] == "Traceback (most recent call last):"
    assert errors[-1] == "RuntimeError: boom\\x1b[31m"
    assert "below the level" not in error_path.read_text("utf-8")
    assert access_path.read_text("ascii").startswith("203.0.113.7 - alice [")
    assert capsys.readouterr() == ("", "")


def test_dash_means_stdout_for_access_and_stderr_for_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(error_logfile="-", access_logfile="-")
    logging.getLogger(logs.ERROR_LOG).error("to stderr")
    accesslog.AccessLog("%(m)s %(U)s")(make_environ(), 200, [], 5, 0.01)
    out, err = capsys.readouterr()
    assert out == "GET /items/42\n"
    assert err.endswith("[ERROR] to stderr\n")


def test_access_log_is_off_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(error_logfile=str(tmp_path / "error.log"))
    assert not logs.access_log_enabled()
    accesslog.AccessLog()(make_environ(), 200, [], 5, 0.01)
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "error.log").read_text("utf-8") == ""
    logs.configure(access_logfile=str(tmp_path / "access.log"))
    assert logs.access_log_enabled()


def test_reconfiguring_closes_the_files_it_opened(tmp_path: Path) -> None:
    logs.configure(access_logfile=str(tmp_path / "one.log"))
    logs.configure(access_logfile=str(tmp_path / "two.log"))
    accesslog.AccessLog("%(m)s")(make_environ(), 200, [], 5, 0.01)
    assert (tmp_path / "one.log").read_text("ascii") == ""
    assert (tmp_path / "two.log").read_text("ascii") == "GET\n"
    assert len(logging.getLogger(accesslog.ACCESS_LOG).handlers) == 1


def test_unopenable_log_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot open log file"):
        logs.configure(access_logfile=str(tmp_path / "missing-dir" / "access.log"))


def test_reopen_files_after_rotation_writes_a_new_file_at_the_old_path(tmp_path: Path) -> None:
    error_path, access_path = tmp_path / "error.log", tmp_path / "access.log"
    logs.configure(error_logfile=str(error_path), access_logfile=str(access_path))
    access_log = accesslog.AccessLog("%(U)s")
    access_log(make_environ(PATH_INFO="/before"), 200, [], 5, 0.01)
    logging.getLogger(logs.ERROR_LOG).warning("before")
    access_path.rename(tmp_path / "access.log.1")
    error_path.rename(tmp_path / "error.log.1")
    access_log(make_environ(PATH_INFO="/moved"), 200, [], 5, 0.01)  # still the old file
    logs.reopen_files()
    access_log(make_environ(PATH_INFO="/after"), 200, [], 5, 0.01)
    logging.getLogger(logs.ERROR_LOG).warning("after")
    assert (tmp_path / "access.log.1").read_text("ascii") == "/before\n/moved\n"
    assert access_path.read_text("ascii") == "/after\n"
    assert "before" in (tmp_path / "error.log.1").read_text("utf-8")
    assert error_path.read_text("utf-8").endswith("[WARNING] after\n")


def test_reopen_files_while_worker_threads_log_loses_no_line(tmp_path: Path) -> None:
    access_path = tmp_path / "access.log"
    logs.configure(access_logfile=str(access_path))
    access_log = accesslog.AccessLog("%(U)s")
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for index in range(300):
                access_log(make_environ(PATH_INFO=f"/{number}/{index}"), 200, [], 1, 0.0)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for rotation in range(20):
        access_path.rename(tmp_path / f"access.log.{rotation}")
        logs.reopen_files()
    for thread in threads:
        thread.join()
    lines = [line for path in tmp_path.glob("access.log*") for line in path.read_text().split()]
    assert not failures
    assert sorted(lines) == sorted(f"/{n}/{i}" for n in range(4) for i in range(300))


def test_log_config_json_takes_over_the_loggers_it_names(tmp_path: Path) -> None:
    config_log, error_path = tmp_path / "from-config.log", tmp_path / "error.log"
    config = {
        "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(config_log),
                "formatter": "plain",
            }
        },
        "loggers": {
            accesslog.ACCESS_LOG: {"handlers": ["file"], "level": "INFO", "propagate": False}
        },
    }
    config_path = tmp_path / "logging.json"
    config_path.write_text(json.dumps(config))
    logs.configure(log_config=str(config_path), error_logfile=str(error_path))
    assert logs.access_log_enabled()
    accesslog.AccessLog("%(m)s %(U)s")(make_environ(), 200, [], 5, 0.01)
    logging.getLogger(logs.ERROR_LOG).warning("still in the error file")
    assert config_log.read_text("utf-8") == "wsgiserve.access INFO GET /items/42\n"
    assert error_path.read_text("utf-8").endswith("[WARNING] still in the error file\n")


def test_log_config_toml_naming_an_ancestor_receives_our_loggers(tmp_path: Path) -> None:
    config_log = tmp_path / "from-config.log"
    config_path = tmp_path / "logging.toml"
    config_path.write_text(
        textwrap.dedent(f"""
        version = 1
        [formatters.plain]
        format = "%(name)s %(levelname)s %(message)s"
        [handlers.file]
        class = "logging.FileHandler"
        filename = {json.dumps(str(config_log))}
        formatter = "plain"
        [loggers.wsgiserve]
        handlers = ["file"]
        level = "DEBUG"
        propagate = false
    """)
    )
    logs.configure(log_config=str(config_path), access_logfile=str(tmp_path / "ignored.log"))
    logging.getLogger(logs.ERROR_LOG).debug("debug via the config")
    accesslog.AccessLog("%(m)s")(make_environ(), 200, [], 5, 0.01)
    assert config_log.read_text("utf-8") == (
        "wsgiserve.error DEBUG debug via the config\nwsgiserve.access INFO GET\n"
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("logging.yaml", "version: 1", "is not valid json"),
        ("logging.json", "{not json", "is not valid json"),
        ("logging.toml", "= nope", "is not valid toml"),
        ("logging.json", "[1, 2]", "expected a table"),
        ("logging.json", '{"handlers": {"h": {"class": "no.such.Handler"}}}', "logging.json"),
    ],
)
def test_bad_log_configs_are_startup_errors(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(StartupError, match=re.escape(message)):
        logs.configure(log_config=str(tmp_path / name))


def test_missing_log_config_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot read log config"):
        logs.configure(log_config=str(tmp_path / "absent.json"))


def test_toml_config_without_tomllib_or_tomli_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    monkeypatch.setitem(sys.modules, "tomli", None)
    (tmp_path / "logging.toml").write_text("version = 1\n")
    with pytest.raises(StartupError, match="tomli"):
        logs.configure(log_config=str(tmp_path / "logging.toml"))


CAPTURE_SCRIPT = """
import logging, os, sys
from wsgiserve import logs
path = sys.argv[1]
logs.configure(error_logfile=path, capture_output=True)
print("from print")
sys.stderr.write("from sys.stderr\\n")
os.write(1, b"from fd 1\\n")
os.write(2, b"from fd 2\\n")
logging.getLogger(logs.ERROR_LOG).warning("from the error log")
os.rename(path, path + ".1")
logs.reopen_files()
print("after reopen")
logging.getLogger(logs.ERROR_LOG).warning("logged after reopen")
"""


def test_capture_output_sends_stdout_and_stderr_to_the_error_log(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    done = subprocess.run(
        [sys.executable, "-c", CAPTURE_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    rotated = (tmp_path / "error.log.1").read_text("utf-8").splitlines()
    assert rotated[:4] == ["from print", "from sys.stderr", "from fd 1", "from fd 2"]
    assert rotated[4].endswith("[WARNING] from the error log")
    current = path.read_text("utf-8").splitlines()
    assert current[0] == "after reopen"
    assert current[1].endswith("[WARNING] logged after reopen")
