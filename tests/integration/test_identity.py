"""--user/--group: the workers run as the given identity once the sockets are bound."""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

import httpx
import pytest

from .support import run_cli, start_listening, start_server

APP = "tests.integration.apps.whoami_app:app"


def test_workers_run_as_the_given_user() -> None:
    nobody = pwd.getpwnam("nobody")
    if os.getuid() != 0:
        result = run_cli(APP, "-b", "127.0.0.1:0", "--user", "nobody")
        assert result.returncode != 0
        assert "needs root" in result.stderr
        return
    server = start_server(APP, "--user", "nobody")
    try:
        response = httpx.get(server.url + "/", timeout=5)
        assert response.text == f"{nobody.pw_uid} {nobody.pw_gid}"
    finally:
        assert server.stop() == 0


def test_an_unknown_user_is_a_clear_error() -> None:
    result = run_cli(APP, "-b", "127.0.0.1:0", "--user", "no-such-user-here")
    assert result.returncode != 0
    assert "no such user" in result.stderr
    assert "Traceback" not in result.stderr


def _supplementary_groups(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Groups:"))
    return {int(gid) for gid in line.split()[1:]}


@pytest.mark.parametrize(
    ("flags", "initgroups"),
    [((), False), (("--initgroups",), True), (("--group", "www-data", "--initgroups"), True)],
    ids=["user", "user-initgroups", "user-group-initgroups"],
)
def test_initgroups_gives_the_workers_every_group_of_the_user(
    tmp_path: Path, flags: tuple[str, ...], initgroups: bool
) -> None:
    if os.getuid() != 0:
        result = run_cli(APP, "-b", "127.0.0.1:0", "--user", "nobody", *flags)
        assert result.returncode != 0
        assert "needs root" in result.stderr
        return
    # nobody is made a member of one more group in a copy of /etc/group that only the
    # server sees (a private mount namespace): the machine's group database is untouched.
    taken = {group.gr_gid for group in grp.getgrall()}
    extra = next(gid for gid in range(4200, 60000) if gid not in taken)
    group_file = tmp_path / "group"
    group_file.write_text(Path("/etc/group").read_text() + f"wsgiserve-test:x:{extra}:nobody\n")
    group_file.chmod(0o644)
    argv = [
        *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
        'mount --bind "$0" /etc/group && exec "$@"',
        str(group_file),
        *(sys.executable, "-m", "wsgiserve", APP, "-b", "127.0.0.1:0", "--threads", "2"),
        *("--user", "nobody", *flags),
    ]
    server = start_listening(argv)
    try:
        uid, gid = map(int, httpx.get(server.url + "/", timeout=5).text.split())
        workers = server.worker_pids()
        groups = [_supplementary_groups(pid) for pid in workers]
    finally:
        assert server.stop() == 0
    nobody = pwd.getpwnam("nobody")
    expected_gid = grp.getgrnam("www-data").gr_gid if "--group" in flags else nobody.pw_gid
    assert (uid, gid) == (nobody.pw_uid, expected_gid)
    # Without --initgroups none of root's supplementary groups; with it, nobody's.
    expected = {expected_gid, extra} if initgroups else set()
    assert workers
    assert groups == [expected] * len(workers)


@pytest.mark.parametrize("check", [(), ("--check-config",)], ids=["start", "check-config"])
def test_initgroups_without_a_user_is_a_clear_error(check: tuple[str, ...]) -> None:
    result = run_cli(APP, "-b", "127.0.0.1:0", "--group", "nogroup", "--initgroups", *check)
    assert result.returncode == 1, result.stderr
    assert "--initgroups takes the groups of the --user user" in result.stderr
    assert "Traceback" not in result.stderr
