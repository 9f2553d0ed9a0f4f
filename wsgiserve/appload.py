"""Find the WSGI app named by `module:attribute`, with errors that say what was missing."""

from __future__ import annotations

import ast
import importlib
import logging
import os
import sys
import traceback
from typing import Any

from .errors import AppLoadError, StartupError

log = logging.getLogger("wsgiserve.error")


def load_app(spec: str, chdir: str | None = None, factory: bool = False) -> Any:
    """Import `module:attr` (default attr `application`, then `app`) and return the app.

    `module:factory()` and `module:factory(arg, key="v")` call a factory with
    literal arguments (parsed with `ast.literal_eval`, never eval'd).

    Raises:
        AppLoadError: with a one-paragraph message naming the problem.
    """
    if chdir:
        os.chdir(chdir)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, expression = spec.partition(":")
    if not module_name:
        raise AppLoadError(f"{spec!r} is not an app: expected MODULE:APP, like myproject.wsgi:app")
    if module_name.endswith(".py") or "/" in module_name:
        # `wsgiserve ./hello.py` names a file; the app is named by its module.
        dotted = module_name.removesuffix(".py").strip("./").replace("/", ".")
        raise AppLoadError(
            f"{spec!r} is a file path; name the module and the app instead, like "
            f"{dotted}:{expression or 'app'} (run from the directory that holds it, or add "
            "--chdir)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {error.name!r}. Check the "
                f"spelling, the current directory ({os.getcwd()}) and PYTHONPATH."
            ) from None
        raise AppLoadError(_while_importing(module_name, error)) from None
    except Exception as error:
        raise AppLoadError(_while_importing(module_name, error)) from None
    if expression:
        app = _resolve(module, module_name, expression)
    else:
        app = getattr(module, "application", None) or getattr(module, "app", None)
    if app is None:
        raise AppLoadError(
            f"module {module_name!r} has no 'application' or 'app'; name the app, "
            f"like {module_name}:myapp"
        )
    if factory:
        try:
            app = app()
        except Exception as error:
            raise AppLoadError(
                f"the factory {spec!r} raised {type(error).__name__}: {error}"
            ) from None
    if not callable(app):
        raise AppLoadError(f"{spec!r} is a {type(app).__name__}, not a callable WSGI app")
    return app


def prepare_process(
    chdir: str | None, pythonpath: str | None, raw_env: tuple[str, ...], umask: int
) -> None:
    """What --chdir, --pythonpath, --env and --umask do, before the app is imported."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as error:
            raise StartupError(f"--chdir {chdir}: {error.strerror}") from None
    for path in reversed([p.strip() for p in (pythonpath or "").split(",") if p.strip()]):
        sys.path.insert(0, os.path.abspath(path))
    for item in raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    if umask:
        os.umask(umask)


def _resolve(module: Any, module_name: str, expression: str) -> Any:
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"{expression!r} is not a name or a factory call") from None
    call = tree if isinstance(tree, ast.Call) else None
    target = call.func if call is not None else tree
    parts: list[str] = []
    while isinstance(target, ast.Attribute):
        parts.insert(0, target.attr)
        target = target.value
    if not isinstance(target, ast.Name):
        raise AppLoadError(f"{expression!r} is not a name or a factory call")
    parts.insert(0, target.id)
    value: Any = module
    for part in parts:
        if not hasattr(value, part):
            raise AppLoadError(f"module {module_name!r} has no attribute {'.'.join(parts)!r}")
        value = getattr(value, part)
    if call is None:
        return value
    try:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except ValueError:
        raise AppLoadError(
            f"the arguments of {expression!r} must be literals (strings, numbers, ...)"
        ) from None
    try:
        return value(*args, **kwargs)
    except Exception as error:
        raise AppLoadError(
            f"the factory {expression!r} raised {type(error).__name__}: {error}"
        ) from None


def _while_importing(module_name: str, error: BaseException) -> str:
    # Point at the user's code: the file and line of a SyntaxError, else the deepest frame
    # that is not the import machinery or the standard library (`<frozen os>` helps nobody).
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" at {error.filename}:{error.lineno}"
    else:
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith("<") and not _in_stdlib(frame.filename)
        ]
        if frames:
            where = f" at {frames[-1].filename}:{frames[-1].lineno}"
    log.debug("importing %r failed", module_name, exc_info=error)
    return (
        f"importing {module_name!r} failed{where}: {type(error).__name__}: {error}. "
        "Fix it in your code (the traceback is in the log at --log-level debug)."
    )


def _in_stdlib(filename: str) -> bool:
    import sysconfig

    return filename.startswith(sysconfig.get_paths()["stdlib"])


def drop_privileges(
    user: str | None, group: str | None, unix_paths: list[str], initgroups: bool = False
) -> None:
    """--user/--group: switch identity after binding (unix socket files change owner too).

    No supplementary group of root's stays behind: the list is emptied, as gunicorn does, or
    with `initgroups` becomes the user's groups from the group database plus the one run as.
    """
    if not user and not group and not initgroups:
        return
    uid, gid, name = check_identity(user, group, initgroups)
    try:
        for path in unix_paths:
            os.chown(path, uid, gid)

        if gid >= 0:
            if initgroups:
                os.initgroups(name, gid)
            else:
                os.setgroups([])
            os.setgid(gid)
        if uid >= 0:
            os.setuid(uid)
    except PermissionError:
        raise StartupError(
            "--user/--group: changing identity needs root; start as root, or leave them out"
        ) from None


def check_identity(user: str | None, group: str | None, initgroups: bool) -> tuple[int, int, str]:
    """The uid and gid (-1: unchanged) --user/--group name and, with --initgroups, the user's
    name (else ""); raises `StartupError`. --check-config runs this too."""
    if initgroups and not user:
        raise StartupError(
            "--initgroups takes the groups of the --user user, and no --user was given; "
            "add --user, or leave --initgroups out"
        )
    uid, gid = identity(user, group)
    return uid, gid, _user_name(uid) if initgroups else ""


def _user_name(uid: int) -> str:
    """The name the group database lists `uid` under, for initgroups; raises `StartupError`."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise StartupError(
            f"--initgroups: uid {uid} has no entry in the user database, so it is a member of "
            "no group; give --user a user that exists, or leave --initgroups out"
        ) from None


def identity(user: str | None, group: str | None) -> tuple[int, int]:
    """The uid and gid that --user/--group name (-1: unchanged); raises `StartupError`."""
    import grp
    import pwd

    try:
        uid = int(user) if user and user.isdigit() else (pwd.getpwnam(user).pw_uid if user else -1)
        gid = (
            int(group)
            if group and group.isdigit()
            else grp.getgrnam(group).gr_gid
            if group
            else pwd.getpwuid(uid).pw_gid
            if uid >= 0
            else -1
        )
    except KeyError as error:
        raise StartupError(f"--user/--group: no such user or group {error}") from None
    return uid, gid
