"""--reload: notice when a Python file under the app's directory changes, or one of the
--reload-extra-file files (a path or a glob pattern, any kind of file).

With the `reload` extra (watchfiles) the kernel tells us; without it we poll
modification times once a second, skipping virtualenvs and hidden folders.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import StartupError

log = logging.getLogger("wsgiserve.error")

SKIP_DIRS = {".venv", "venv", "__pycache__", "node_modules", "site-packages", ".git", ".tox"}
MAX_FILES = 20_000  # a bound on what polling walks each second


def _python_files(root: Path) -> Iterator[Path]:
    count = 0
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                count += 1
                if count > MAX_FILES:
                    return
                yield Path(directory, name)


def _extra_files(patterns: Sequence[str]) -> Iterator[Path]:
    """The files the --reload-extra-file patterns name now (a plain path even before it exists)."""
    for pattern in patterns:
        if glob.has_magic(pattern):
            yield from (Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            yield Path(pattern)


def _pattern_roots(patterns: Sequence[str]) -> list[Path]:
    """The existing directories holding what `patterns` can match, to watch."""
    roots = []
    for pattern in patterns:
        fixed = Path(os.path.abspath(pattern))
        while glob.has_magic(str(fixed)) or not fixed.is_dir():
            if fixed.parent == fixed:
                break
            fixed = fixed.parent
        roots.append(fixed)
    return roots


class PollingWatcher:
    """Compares modification times of *.py files under `roots`, and of the files `extra`
    names, on each `changed()` call."""

    def __init__(self, roots: list[Path], extra: Sequence[str] = ()) -> None:
        self.roots = roots
        self.extra = tuple(extra)
        self._mtimes = self._scan()

    def _scan(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for root in self.roots:
            for path in _python_files(root):
                try:
                    mtimes[path] = path.stat().st_mtime
                except OSError:
                    continue
        for path in _extra_files(self.extra):
            try:
                mtimes[path.resolve()] = path.stat().st_mtime
            except OSError:
                continue  # not there (yet): its appearing is a change
        return mtimes

    def changed(self) -> list[Path]:
        current = self._scan()
        changed = [p for p, t in current.items() if self._mtimes.get(p) != t]
        changed += [p for p in self._mtimes if p not in current]
        self._mtimes = current
        return changed


def check_engine(engine: str) -> None:
    """Refuse `--reload-engine inotify` up front when watchfiles is not installed.

    Raises:
        StartupError: it is not, with the fix.
    """
    if engine == "inotify":
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise StartupError(
                "--reload-engine inotify needs watchfiles: pip install watchfiles "
                "(or the wsgiserve[reload] extra), or use --reload-engine poll"
            ) from None


def start_watching(
    roots: list[Path],
    notify: Callable[[list[str]], None],
    extra: Sequence[str] = (),
    engine: str = "auto",
) -> str:
    """Call `notify(paths)` from a daemon thread whenever a .py file under `roots` or a file
    the `extra` paths or glob patterns name changes; returns the engine used.

    `engine`: "auto" (watchfiles when installed, else polling), "poll" or "inotify"
    (watchfiles; `check_engine` first)."""
    try:
        if engine == "poll":
            raise ImportError("polling asked for")
        import watchfiles
    except ImportError:
        watcher = PollingWatcher(roots, extra)
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(1.0):
                paths = watcher.changed()
                if paths:
                    notify([str(p) for p in paths])

        threading.Thread(target=poll, name="wsgiserve-reload", daemon=True).start()
        return "polling"

    only_python = watchfiles.PythonFilter()
    patterns = [os.path.abspath(pattern) for pattern in extra]

    def wanted(change: watchfiles.Change, path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) for p in patterns) or only_python(change, path)

    def watch() -> None:
        paths = {*roots, *_pattern_roots(extra)}
        for changes in watchfiles.watch(*paths, watch_filter=wanted):
            notify(sorted({path for _, path in changes}))

    threading.Thread(target=watch, name="wsgiserve-reload", daemon=True).start()
    return "watchfiles"
