"""gunicorn's logging settings: syslog (to a real UDP socket), logconfig_dict, .ini log configs."""

from __future__ import annotations

import logging
import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsgiserve import accesslog, logs
from wsgiserve.errors import StartupError
from wsgiserve.settings import Settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the loggers back as they were and close every handler a test left behind."""
    names = ["", "wsgiserve", "myproject", logs.ERROR_LOG, accesslog.ACCESS_LOG]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
    yield
    for name, (handlers, _, _, _) in saved.items():
        for handler in logging.getLogger(name).handlers:
            if handler not in handlers:
                handler.close()  # a log config's handlers, which logs.configure only drops
    logs.configure()
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


@pytest.fixture
def syslog_server() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for the syslog daemon."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        yield server


def received(server: socket.socket) -> str:
    data, _ = server.recvfrom(65536)
    return data.decode("utf-8")


def test_syslog_gets_the_error_and_access_logs(syslog_server: socket.socket) -> None:
    port = syslog_server.getsockname()[1]
    logs.configure_from(
        Settings(
            syslog=True,
            syslog_addr=f"udp://127.0.0.1:{port}",
            syslog_prefix="shop",
            syslog_facility="local0",
        )
    )
    logging.getLogger(logs.ERROR_LOG).warning("disk almost full")
    logging.getLogger(accesslog.ACCESS_LOG).info('127.0.0.1 "GET / HTTP/1.1" 200')

    # <PRI> is facility * 8 + severity: local0 is 16, warning 4 and info 6.
    assert received(syslog_server) == f"<132>shop[{os.getpid()}]: [WARNING] disk almost full\x00"
    assert (
        received(syslog_server) == f'<134>shop[{os.getpid()}]: 127.0.0.1 "GET / HTTP/1.1" 200\x00'
    )


def test_access_lines_stay_out_of_syslog_when_asked(syslog_server: socket.socket) -> None:
    port = syslog_server.getsockname()[1]
    settings = Settings(
        syslog=True, syslog_addr=f"udp://127.0.0.1:{port}", disable_redirect_access_to_syslog=True
    )
    logs.configure_from(settings)
    logging.getLogger(accesslog.ACCESS_LOG).info("an access line")
    logging.getLogger(logs.ERROR_LOG).error("an error line")

    # The first datagram is the error: the access line before it was never sent.
    assert received(syslog_server).endswith("[ERROR] an error line\x00")
    assert not logs.access_log_enabled()
    assert not logs.wants_access_log(settings)


def test_the_program_name_defaults_to_proc_name(syslog_server: socket.socket) -> None:
    port = syslog_server.getsockname()[1]
    logs.configure_from(Settings(syslog=True, syslog_addr=f"127.0.0.1:{port}", proc_name="api"))
    logging.getLogger(logs.ERROR_LOG).error("boom")

    assert received(syslog_server) == f"<11>api[{os.getpid()}]: [ERROR] boom\x00"


@pytest.mark.parametrize(
    ("text", "address", "kind"),
    [
        ("udp://10.0.0.1:5514", ("10.0.0.1", 5514), socket.SOCK_DGRAM),
        ("udp://localhost", ("localhost", 514), socket.SOCK_DGRAM),
        ("tcp://[::1]:601", ("::1", 601), socket.SOCK_STREAM),
        ("syslog.internal:514", ("syslog.internal", 514), socket.SOCK_DGRAM),
        ("unix:///dev/log", "/dev/log", None),
        ("unix:///run/log#stream", "/run/log", socket.SOCK_STREAM),
    ],
)
def test_syslog_addresses_parse_like_gunicorns(
    text: str, address: object, kind: socket.SocketKind | None
) -> None:
    assert logs.parse_syslog_address(text) == (address, kind)


@pytest.mark.parametrize("text", ["http://syslog:514", "unix://", "udp://host:port"])
def test_bad_syslog_addresses_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(StartupError, match="--log-syslog-to"):
        logs.parse_syslog_address(text)


def test_an_unreachable_unix_syslog_is_a_startup_error(tmp_path: Path) -> None:
    settings = Settings(syslog=True, syslog_addr=f"unix://{tmp_path}/no-such-socket")
    with pytest.raises(StartupError, match="cannot reach syslog"):
        logs.configure_from(settings)


def test_logconfig_dict_is_applied_and_its_loggers_left_to_it(tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    logs.configure_from(
        Settings(
            logconfig_dict={
                "version": 1,
                "formatters": {"plain": {"format": "ACCESS %(message)s"}},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(target),
                        "formatter": "plain",
                    }
                },
                "loggers": {accesslog.ACCESS_LOG: {"handlers": ["file"], "level": "INFO"}},
            }
        )
    )
    logging.getLogger(accesslog.ACCESS_LOG).info("GET /")

    assert logs.access_log_enabled()
    assert target.read_text() == "ACCESS GET /\n"


def test_gunicorns_ini_log_config_is_read_with_file_config(tmp_path: Path) -> None:
    target = tmp_path / "app.log"
    ini = tmp_path / "logging.conf"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [loggers]
            keys=root,app

            [handlers]
            keys=file

            [formatters]
            keys=plain

            [logger_root]
            level=WARNING
            handlers=

            [logger_app]
            level=INFO
            handlers=file
            qualname=myproject
            propagate=0

            [handler_file]
            class=FileHandler
            args=({str(target)!r},)
            formatter=plain

            [formatter_plain]
            format=APP %(levelname)s %(message)s
            """
        )
    )
    logs.configure_from(Settings(log_config=str(ini)))
    logging.getLogger("myproject").info("ready")
    logging.getLogger("myproject").handlers[0].flush()

    assert target.read_text() == "APP INFO ready\n"


def test_a_broken_ini_log_config_is_a_startup_error(tmp_path: Path) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text("[loggers]\nkeys=root\n")
    with pytest.raises(StartupError, match="log config"):
        logs.configure_from(Settings(log_config=str(ini)))
