"""--reload: notice when a Python file under the app's directory changes.

With the `reload` extra (watchfiles) the kernel tells us; without it we poll
modification times once a second, skipping virtualenvs and hidden folders.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

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


class PollingWatcher:
    """Compares modification times of *.py files under `roots` on each `changed()` call."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._mtimes = self._scan()

    def _scan(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for root in self.roots:
            for path in _python_files(root):
                try:
                    mtimes[path] = path.stat().st_mtime
                except OSError:
                    continue
        return mtimes

    def changed(self) -> list[Path]:
        current = self._scan()
        changed = [p for p, t in current.items() if self._mtimes.get(p) != t]
        changed += [p for p in self._mtimes if p not in current]
        self._mtimes = current
        return changed


def start_watching(roots: list[Path], notify: Callable[[list[str]], None]) -> str:
    """Call `notify(paths)` from a daemon thread whenever a .py file changes; returns the engine."""
    try:
        import watchfiles
    except ImportError:
        watcher = PollingWatcher(roots)
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(1.0):
                paths = watcher.changed()
                if paths:
                    notify([str(p) for p in paths])

        threading.Thread(target=poll, name="wsgiserve-reload", daemon=True).start()
        return "polling"

    def watch() -> None:
        only_python = watchfiles.PythonFilter()
        for changes in watchfiles.watch(*roots, watch_filter=only_python):
            notify(sorted({path for _, path in changes}))

    threading.Thread(target=watch, name="wsgiserve-reload", daemon=True).start()
    return "watchfiles"
