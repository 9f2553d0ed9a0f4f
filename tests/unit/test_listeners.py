"""Unix socket listeners: the permissions and group a web server needs to connect, and the
messages when the socket cannot be made. Real sockets in a temporary directory."""

from __future__ import annotations

import grp
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsgiserve.errors import StartupError
from wsgiserve.listeners import Listener, close_listener, open_listener


@pytest.fixture
def opened() -> Iterator[list[Listener]]:
    listeners: list[Listener] = []
    yield listeners
    for listener in listeners:
        close_listener(listener)


def _open(opened: list[Listener], path: Path, **options: object) -> os.stat_result:
    opened.append(open_listener(f"unix:{path}", 16, **options))  # type: ignore[arg-type]
    return os.stat(path)


def _other_group() -> int:
    """A group other than our own, that we may give a file to (root: any; else one of ours)."""
    mine = os.getegid()
    candidates = [g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0 else os.getgroups()
    others = [gid for gid in candidates if gid != mine]
    assert others, "this test needs root or membership of a second group"
    return others[0]


def test_without_settings_the_umask_decides(tmp_path: Path, opened: list[Listener]) -> None:
    old = os.umask(0o022)
    try:
        info = _open(opened, tmp_path / "app.sock")
    finally:
        os.umask(old)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o755
    assert info.st_gid == os.getegid()


@pytest.mark.parametrize("mode", [0o660, 0o600, 0o666])
def test_socket_mode_is_set(tmp_path: Path, opened: list[Listener], mode: int) -> None:
    info = _open(opened, tmp_path / "app.sock", socket_mode=mode)
    assert stat.S_IMODE(info.st_mode) == mode


def test_socket_group_by_name_gives_the_group_read_and_write(
    tmp_path: Path, opened: list[Listener]
) -> None:
    gid = _other_group()
    info = _open(opened, tmp_path / "app.sock", socket_group=grp.getgrgid(gid).gr_name)
    assert info.st_gid == gid
    assert stat.S_IMODE(info.st_mode) == 0o660  # a group without a mode: the group may connect


def test_socket_group_by_number_with_a_mode(tmp_path: Path, opened: list[Listener]) -> None:
    gid = _other_group()
    info = _open(opened, tmp_path / "app.sock", socket_group=str(gid), socket_mode=0o670)
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o670)


def test_unknown_group_says_which_group_to_give(tmp_path: Path, opened: list[Listener]) -> None:
    with pytest.raises(StartupError, match=r"no such group\. Give the group your web server"):
        _open(opened, tmp_path / "app.sock", socket_group="no-such-group-here")
    assert not (tmp_path / "app.sock").exists()


def test_missing_directory_is_named_with_the_fix(tmp_path: Path, opened: list[Listener]) -> None:
    directory = tmp_path / "run" / "wsgiserve"
    with pytest.raises(StartupError) as error:
        _open(opened, directory / "app.sock")
    assert str(error.value) == (
        f"cannot bind unix:{directory}/app.sock: the directory {directory} does not exist. "
        f"Create it first (mkdir -p {directory}), or let systemd create it at each start "
        "with RuntimeDirectory=wsgiserve in the service unit."
    )
    assert not directory.exists()  # not created behind the user's back


def test_tcp_binds_ignore_the_unix_socket_settings(opened: list[Listener]) -> None:
    opened.append(open_listener("127.0.0.1:0", 16, socket_mode=0o600, socket_group="0"))
    assert opened[0].port


def test_group_we_may_not_give_says_how_to_get_the_right(opened: list[Listener]) -> None:
    # As a user outside the group (root is outside no group: drop to nobody for the call),
    # in a directory anyone may enter and write (pytest's tmp_path is private).
    tmp_path = Path(tempfile.mkdtemp())
    tmp_path.chmod(0o777)
    target = grp.getgrnam("www-data").gr_gid if os.geteuid() == 0 else 0
    assert target not in os.getgroups() or os.geteuid() == 0
    dropped = os.geteuid() == 0
    if dropped:
        os.setegid(65534)
        os.seteuid(65534)
    try:
        with pytest.raises(StartupError) as error:
            _open(opened, tmp_path / "app.sock", socket_group=str(target))
    finally:
        if dropped:
            os.seteuid(0)
            os.setegid(0)
    assert str(error.value) == (
        f"cannot give unix:{tmp_path}/app.sock to group {target}: only root or a member of the "
        "group may. Start wsgiserve as root (with --user to drop privileges), or add its user "
        "to the group."
    )
    assert not (tmp_path / "app.sock").exists()  # not left behind half made
    tmp_path.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to the user nobody needs root")
def test_directory_out_of_reach_is_not_called_missing(tmp_path: Path) -> None:
    # nobody may not enter pytest's private tmp_path: that is "Permission denied", and
    # saying the directory does not exist would send the user looking for the wrong fix.
    os.setegid(65534)
    os.seteuid(65534)
    try:
        with pytest.raises(StartupError) as error:
            open_listener(f"unix:{tmp_path}/app.sock", 16)
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert str(error.value) == f"cannot bind unix:{tmp_path}/app.sock: Permission denied"
