"""Configuration sources below the command line: a gunicorn-style Python file,
`[tool.wsgiserve]` in pyproject.toml, `WSGISERVE_CMD_ARGS` and gunicorn's `GUNICORN_CMD_ARGS`.

Precedence (highest first): command line > WSGISERVE_CMD_ARGS > GUNICORN_CMD_ARGS > config
file (-c, else ./wsgiserve.conf.py or ./gunicorn.conf.py) > pyproject.toml > defaults.
Every source yields a plain dict of setting names; `cli.py` merges them and builds one
`Settings`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import gunicorn_settings
from .errors import StartupError
from .settings import Settings, convert

log = logging.getLogger("wsgiserve.error")

# Derived from gunicorn_settings.ROWS, the one table of what each gunicorn setting does here.
ALIASES = gunicorn_settings.ALIASES
IGNORED = {row.name: row.note for row in gunicorn_settings.ROWS if row.outcome == "warned"}
# Unmapped names the command acts on itself, passed through to it: the app, and what to do.
COMMAND_NAMES = ("wsgi_app", "check_config", "print_config")

HOOKS = (
    "on_starting",
    "when_ready",
    "post_fork",
    "pre_request",
    "post_request",
    "worker_exit",
    "on_exit",
    "on_reload",
    "pre_fork",
    "worker_int",
    "worker_abort",
    "post_worker_init",
    "child_exit",
    "nworkers_changed",
    "ssl_context",
    "pre_exec",
)


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Server hooks from a config file (gunicorn's names and meanings)."""

    on_starting: Callable[..., Any] | None = None
    when_ready: Callable[..., Any] | None = None
    pre_fork: Callable[..., Any] | None = None
    post_fork: Callable[..., Any] | None = None
    pre_request: Callable[..., Any] | None = None
    post_request: Callable[..., Any] | None = None
    worker_exit: Callable[..., Any] | None = None
    worker_int: Callable[..., Any] | None = None
    worker_abort: Callable[..., Any] | None = None
    post_worker_init: Callable[..., Any] | None = None
    child_exit: Callable[..., Any] | None = None
    nworkers_changed: Callable[..., Any] | None = None
    ssl_context: Callable[..., Any] | None = None
    pre_exec: Callable[..., Any] | None = None  # never called: no re-exec (warned at load)
    on_reload: Callable[..., Any] | None = None
    on_exit: Callable[..., Any] | None = None


SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(Settings))


def normalise(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Map gunicorn spellings to ours, convert text values, and act on each gunicorn row:
    warn about what is ignored, refuse what is refused, refuse unknown names.

    Raises:
        StartupError: a refused or unknown setting, or a value that does not convert.
    """
    result: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = raw_name.replace("-", "_")
        row = gunicorn_settings.BY_NAME.get(name)
        if row is not None:
            judge(row, value, f"{source}: {name}")
            if row.setting is None:
                if name in COMMAND_NAMES:
                    result[name] = value
                continue
            name = row.setting
        if name not in SETTING_NAMES:
            raise StartupError(f"{source}: {_unknown(raw_name)}")
        try:
            result[name] = convert(name, value)
        except ValueError as error:
            raise StartupError(f"{source}: {error}") from None
    return result


def judge(row: gunicorn_settings.Row, value: Any, label: str) -> None:
    """Do what `row` says for `value`: nothing, log a one-line warning, or refuse.

    Raises:
        StartupError: the row (or this value of it) is refused; the message says why.
    """
    verdict = row.outcome_for(value)
    if verdict is None:
        return
    outcome, note = verdict
    if outcome == "refused":
        raise StartupError(f"{label} is not supported: {note}.")
    log.warning("%s is ignored: %s", label, note)


def load_python_file(path: str) -> tuple[dict[str, Any], Hooks]:
    """Run a gunicorn.conf.py-style file; its lower-case names are settings or hooks."""
    file = Path(path)
    if not file.is_file():
        raise StartupError(f"config file {path!r} not found")
    if file.suffix != ".py":
        hint = (
            " [tool.wsgiserve] in pyproject.toml is read by itself: drop -c."
            if file.name == "pyproject.toml"
            else ""
        )
        raise StartupError(
            f"config file {path}: -c takes a Python file like gunicorn.conf.py.{hint}"
        )
    namespace: dict[str, Any] = {"__file__": str(file), "__name__": "__config__"}
    try:
        code = compile(file.read_bytes(), str(file), "exec")
        exec(code, namespace)
    except Exception as error:
        raise StartupError(f"config file {path}: {type(error).__name__}: {error}") from None
    settings: dict[str, Any] = {}
    hooks: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or not name.islower():
            continue
        if name in HOOKS:
            if not callable(value):
                raise StartupError(f"config file {path}: hook {name} is not callable")
            if name == "pre_exec":
                log.warning(
                    "%s: pre_exec is never called: wsgiserve does not re-exec itself "
                    "(gunicorn's USR2 upgrade); HUP replaces the workers with the new code",
                    path,
                )
            hooks[name] = value
        elif callable(value) or type(value).__name__ == "module":
            hook = _close_to(name, HOOKS)
            if hook and getattr(value, "__module__", None) == "__config__":
                # A function of the file named almost like a hook would never be called.
                raise StartupError(f"config file {path}: {name} is no hook; did you mean {hook}?")
            continue  # helpers and imports the file uses for itself
        else:
            if name in SETTING_NAMES or name in gunicorn_settings.BY_NAME:
                settings[name] = value
            else:
                raise StartupError(f"config file {path}: {_unknown(name)}")
    return normalise(settings, f"config file {path}"), Hooks(**hooks)


def load_pyproject(directory: str) -> dict[str, Any]:
    """`[tool.wsgiserve]` from `directory`/pyproject.toml, or {} when there is none."""
    file = Path(directory) / "pyproject.toml"
    if not file.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return {}
    try:
        with file.open("rb") as stream:
            table = tomllib.load(stream).get("tool", {}).get("wsgiserve", {})
    except (OSError, ValueError) as error:
        raise StartupError(f"{file}: {error}") from None
    if not isinstance(table, dict):
        raise StartupError(f"{file}: [tool.wsgiserve] must be a table")
    return normalise(table, f"{file} [tool.wsgiserve]")


def env_args(name: str = "WSGISERVE_CMD_ARGS") -> list[str]:
    """The arguments in the environment variable `name` (WSGISERVE_CMD_ARGS, or gunicorn's
    GUNICORN_CMD_ARGS below it), split like a shell would."""
    import shlex

    return shlex.split(os.environ.get(name, ""))


# Looked for in the current directory when no -c is given: ours, then gunicorn's default.
DEFAULT_CONFIG_FILES = ("wsgiserve.conf.py", "gunicorn.conf.py")


def default_config_file(directory: str) -> str | None:
    """The config file gunicorn would load without -c (./gunicorn.conf.py), or ours."""
    for name in DEFAULT_CONFIG_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _close_to(name: str, known: Iterable[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.8)
    return found[0] if found else None


def _unknown(name: str) -> str:
    """ "unknown setting 'x'", with the nearest real name when there is one."""
    guess = _close_to(name.replace("-", "_"), [*SETTING_NAMES, *gunicorn_settings.BY_NAME, *HOOKS])
    return f"unknown setting {name!r}" + (f"; did you mean {guess}?" if guess else "")
