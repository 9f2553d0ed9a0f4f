"""The pidfile: claimed before privileges are dropped, refused while another server holds it.

`claim` writes our pid, unless the file names a process that is still running: then the
start is refused ("already running as PID N"), so a second instance can never overwrite a
running one's pidfile and control socket, nor delete them when it exits. A file naming a
dead process is stale and replaced with a note. `release` removes the file only while it
still names us.
"""

from __future__ import annotations

import logging
import os

from .errors import StartupError

log = logging.getLogger("wsgiserve.error")


def running(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: str) -> int | None:
    """The pid a pidfile names, or None for a missing, empty or garbled file."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read(64).strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StartupError(
            f"cannot read the pidfile {path}: {error.strerror}. Check its permissions, or "
            "give -p a path this user can read and write."
        ) from None
    return int(text) if text.isdigit() else None


class PidFile:
    """One server's pidfile (`-p`)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def check(self) -> None:
        """For --check-config: raise `StartupError` if `claim` could not write here."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StartupError(
                f"cannot write the pidfile {self.path}: its directory does not exist. Create "
                "it first, owned by the user the server runs as (systemd: RuntimeDirectory=)."
            )

    def claim(self) -> None:
        """Write our pid; raise `StartupError` if a running server holds the file."""
        pid = read_pid(self.path)
        me = os.getpid()
        if pid is not None and pid != me:
            if running(pid):
                raise StartupError(
                    f"already running as PID {pid} (pidfile {self.path}). Stop it first "
                    f"(kill -TERM {pid}), or give this instance another -p."
                )
            log.warning("Replacing the stale pidfile %s: PID %d is not running", self.path, pid)
        temporary = f"{self.path}.{me}.tmp"
        try:
            with open(temporary, "w", encoding="ascii") as file:
                file.write(f"{me}\n")
            os.replace(temporary, self.path)  # never a half-written pidfile
        except OSError as error:
            raise StartupError(
                f"cannot write the pidfile {self.path}: {error.strerror}. Create its directory "
                "first, owned by the user the server runs as (systemd: RuntimeDirectory=)."
            ) from None

    def release(self) -> None:
        """Remove the file if it still names us. Where the directory does not let us (after
        dropping privileges in a root-owned /run), empty it: the next start finds it stale."""
        try:
            if read_pid(self.path) != os.getpid():
                return
        except StartupError:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            try:
                with open(self.path, "w", encoding="ascii"):
                    pass
            except OSError as error:
                log.warning("Could not remove the pidfile %s: %s", self.path, error.strerror)
