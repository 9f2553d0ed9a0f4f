"""The `wsgiserve` command: flags generated from `Settings`, configuration sources merged,
the app named, and the supervisor started.

The only module that prints to the terminal or chooses an exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from . import accesslog, build_info, config, gunicorn_settings, logs, tls
from .accesslog import escape
from .appload import check_identity, drop_privileges, load_app, prepare_process
from .control import bind_control, control_path, query_status
from .errors import StartupError
from .listeners import parse_bind
from .pidfile import PidFile
from .reload import check_engine
from .serving import open_listeners
from .settings import OCTAL, SECTIONS, Settings, as_config, convert, setting_fields
from .supervisor import Supervisor
from .version import __version__

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wsgiserve",
        usage="%(prog)s [OPTIONS] MODULE:APP",
        description="Serve a WSGI app: uvloop + httptools on the event loop, "
        "the app in a bounded thread pool, pre-forked workers.",
        epilog="Example: wsgiserve myproject.wsgi:application -b 0.0.0.0:8000 -w 4 --threads 16. "
        "See what a running server does: wsgiserve status -p PIDFILE. "
        "Precedence: command line > $WSGISERVE_CMD_ARGS > $GUNICORN_CMD_ARGS > -c FILE "
        "(default ./wsgiserve.conf.py or ./gunicorn.conf.py) > [tool.wsgiserve] in "
        "pyproject.toml > defaults.",
    )
    parser.add_argument(
        "app",
        metavar="MODULE:APP",
        nargs="?",
        help="the WSGI app, like myapp:app or myapp:create_app()",
    )
    parser.add_argument(
        "--version", action="version", version=f"wsgiserve {__version__} ({build_info.describe()})"
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="a gunicorn.conf.py-style Python file of settings and hooks",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        default=argparse.SUPPRESS,
        help="check the configuration and that the app loads, then exit",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the resolved settings as JSON (modes in octal, as a config file takes "
        "them), then exit",
    )
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for field in setting_fields():
        meta = field.metadata
        if not meta["flags"]:
            continue  # a config file's setting only, like gunicorn's logconfig_dict
        help_text = meta["help"]
        default = field.default
        if default is not None and default is not False and default not in ((), ""):
            shown = ", ".join(default) if isinstance(default, tuple) else default
            if "Default:" not in help_text:
                help_text += f" (default: {shown}{' ' + meta['unit'] if meta['unit'] else ''})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "help": help_text.replace("%", "%%"),
            "metavar": meta["metavar"] or None,
            "default": argparse.SUPPRESS,
        }
        if meta.get("const") is not None:
            kwargs["nargs"] = "?"
            kwargs["const"] = meta["const"]
        if field.type in ("tuple[str, ...]",):
            kwargs["action"] = "append"
        elif field.type in ("bool", bool):
            kwargs["action"] = "store_true"
            del kwargs["metavar"]
        elif field.name in (*OCTAL, "max_worker_memory"):  # "007", "512MB"
            kwargs["type"] = functools.partial(_converted, field.name)
        elif field.type in ("int", int):
            kwargs["type"] = int
        elif field.type in ("float", float):
            kwargs["type"] = float
        groups[meta["section"]].add_argument(*meta["flags"], **kwargs)
    _add_gunicorn_flags(parser)
    return parser


def _add_gunicorn_flags(parser: argparse.ArgumentParser) -> None:
    """gunicorn's flags that map onto no setting of ours: each does what its row says."""
    group = parser.add_argument_group(
        "gunicorn compatibility",
        "gunicorn's flags that wsgiserve has no setting for; each is accepted with a warning "
        "saying what wsgiserve does instead, or refused with the reason",
    )
    taken = set(parser._option_string_actions)
    for row in gunicorn_settings.ROWS:
        flags = [flag for flag in row.flags if flag not in taken]
        if not flags:
            continue
        if row.setting is not None:  # tested: an honoured flag is a setting's flag
            raise AssertionError(f"gunicorn's {flags} has no wsgiserve setting")
        what = gunicorn_settings.describe(row, defaults=False).replace("`", "")
        kwargs: dict[str, Any] = {"dest": row.name, "default": argparse.SUPPRESS}
        if row.switch is not None:
            kwargs.update(action="store_const", const=row.switch)
        else:
            kwargs.update(action="append" if row.many else "store", metavar="VALUE")
        group.add_argument(*flags, help=what.replace("%", "%%"), **kwargs)


def _converted(name: str, text: str) -> int:
    try:
        value: int = convert(name, text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


class _Parser(argparse.ArgumentParser):
    """A flag error is one line and a hint, not the usage block before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nSee `{self.prog} --help` for the options.\n")


SETTING_NAMES = {field.name for field in dataclasses.fields(Settings)}


def settings_from_args(namespace: argparse.Namespace) -> Settings:
    values = {name: value for name, value in vars(namespace).items() if name in SETTING_NAMES}
    return Settings.from_mapping(values)


@dataclasses.dataclass
class Resolved:
    settings: Settings
    app: str
    hooks: config.Hooks
    actions: dict[str, Any]


def resolve(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> Resolved:
    """Merge every configuration source into one `Settings` (see the module docstring)."""
    cli = vars(parser.parse_args(argv))
    env = vars(parser.parse_args(config.env_args()))
    gunicorn_env = vars(parser.parse_args(config.env_args("GUNICORN_CMD_ARGS")))
    for layer, source in (
        (cli, "command line"),
        (env, "WSGISERVE_CMD_ARGS"),
        (gunicorn_env, "GUNICORN_CMD_ARGS"),
    ):
        _judge_gunicorn_flags(layer, source)
    values: dict[str, Any] = {}
    directory = cli.get("chdir") or env.get("chdir") or gunicorn_env.get("chdir") or os.getcwd()
    values.update(config.load_pyproject(directory))
    hooks = config.Hooks()
    config_file = cli.get("config") or env.get("config") or gunicorn_env.get("config")
    if not config_file:
        # gunicorn loads ./gunicorn.conf.py without being asked: a renamed command must too.
        config_file = config.default_config_file(os.getcwd())
        if config_file:
            print(f"wsgiserve: using the config file {config_file}", file=sys.stderr)
    if config_file:
        from_file, hooks = config.load_python_file(config_file)
        values.update(from_file)
    for layer in (gunicorn_env, env, cli):
        values.update({k: v for k, v in layer.items() if k in SETTING_NAMES})
    if "bind" not in values and os.environ.get("PORT", "").isdigit():
        # A PaaS (Heroku, Cloud Run, Render) says where to listen in $PORT, as gunicorn reads.
        values["bind"] = (f"0.0.0.0:{os.environ['PORT']}",)
    if "workers" not in values and os.environ.get("WEB_CONCURRENCY", "").isdigit():
        values["workers"] = int(os.environ["WEB_CONCURRENCY"])
    if "forwarded_allow_ips" not in values and os.environ.get("FORWARDED_ALLOW_IPS"):
        values["forwarded_allow_ips"] = os.environ["FORWARDED_ALLOW_IPS"]
    wsgi_app = values.pop("wsgi_app", None)
    from_file = {k: values.pop(k) for k in ("check_config", "print_config") if k in values}
    app = cli.get("app") or env.get("app") or wsgi_app
    if not app:
        parser.error("the app is missing: give MODULE:APP, like myproject.wsgi:application")
    try:
        settings = Settings.from_mapping(values)
    except (TypeError, ValueError) as error:
        raise StartupError(f"invalid configuration: {error}") from None
    actions: dict[str, Any] = {k: v for k, v in from_file.items() if v}
    for layer in (gunicorn_env, env, cli):
        actions.update({k: layer[k] for k in ("check_config", "print_config") if k in layer})
    if config_file:
        actions["config"] = config_file  # a HUP reads it again
    return Resolved(settings, str(app), hooks, actions)


# gunicorn rows with a flag but no setting of ours, apart from those the parser acts on.
_JUDGED = gunicorn_settings.UNMAPPED - {"config", "check_config", "print_config"}


def _judge_gunicorn_flags(values: dict[str, Any], source: str) -> None:
    """Act on the flags of gunicorn rows that map onto no setting (they leave `values`)."""
    for name in [name for name in values if name in _JUDGED]:
        row = gunicorn_settings.BY_NAME[name]
        value = values.pop(name)
        flag = row.flags[-1]
        shown = flag if row.switch is not None or row.many else f"{flag} {value}"
        config.judge(row, value, f"{source}: {shown}")


def status_main(argv: Sequence[str]) -> int:
    """`wsgiserve status -p PIDFILE [--json]`: what a running server is doing."""
    parser = argparse.ArgumentParser(
        prog="wsgiserve status",
        description="Show the workers of a running wsgiserve and its oldest requests in flight.",
    )
    parser.add_argument(
        "-p",
        "--pid",
        dest="pidfile",
        required=True,
        metavar="PIDFILE",
        help="the pidfile the server was started with (-p)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw status as JSON")
    args = parser.parse_args(argv)
    try:
        status = query_status(args.pidfile)
    except (OSError, ValueError) as error:
        print(
            f"wsgiserve status: cannot reach the server of {args.pidfile}: {error}", file=sys.stderr
        )
        return 1
    try:
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print(format_status(status))
        sys.stdout.flush()
    except BrokenPipeError:  # `wsgiserve status | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def format_status(status: dict[str, Any]) -> str:
    now = time.time()
    lines = [
        f"wsgiserve {status['version']}  supervisor pid {status['pid']}  "
        f"up {_duration(now - status['started'])}  workers {len(status['workers'])}"
        f"/{status['target_workers']}",
        "",
        f"{'worker':>8} {'up':>8} {'served':>8} {'conns':>6} {'busy':>9} {'queued':>6} "
        f"{'memory':>9}",
    ]
    oldest: list[tuple[float, int, str, str, str]] = []
    for worker in status["workers"]:
        if "served" not in worker:
            lines.append(f"{worker['pid']:>8} {'booting':>8}")
            continue
        # A worker that did not answer the supervisor in time: its row is its last report.
        stale = (
            ""
            if worker.get("answered", True)
            else f"  (no answer; as of {worker['as_of']:.1f}s ago)"
        )
        lines.append(
            f"{worker['pid']:>8} {_duration(now - worker['started']):>8} {worker['served']:>8} "
            f"{worker['connections']:>6} {worker['busy']:>4}/{worker['threads']:<4} "
            f"{worker['queued']:>6} {_size(worker.get('rss')):>9}{stale}"
        )
        oldest += [
            (age, worker["pid"], method, path, rid) for age, method, path, rid in worker["oldest"]
        ]
    if status["restarts"]:
        restarts = ", ".join(f"{k} {v}" for k, v in sorted(status["restarts"].items()))
        lines += ["", f"worker restarts: {restarts}"]
    reload = status.get("last_reload")
    if reload:
        ago = _duration(now - reload["at"])
        if reload["ok"]:
            lines += ["", f"last reload: {ago} ago"]
        else:
            lines += [
                "",
                f"last reload FAILED {ago} ago (worker {reload['pid']} could not load "
                "the app; the previous workers keep serving; see the error log)",
            ]
    lines += ["", "oldest requests in flight:" if oldest else "no requests in flight"]
    for age, pid, method, path, rid in sorted(oldest, reverse=True)[:10]:
        # Request data: escaped like the logs, so no terminal escape reaches the operator.
        lines.append(
            f"  {age:8.1f}s  worker {pid}  {escape(method)} {escape(path)}  ({escape(rid)})"
        )
    return "\n".join(lines)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return str(size)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["status"]:
        return status_main(arguments[1:])
    parser = build_parser()
    # Warnings while reading the configuration come before the logs are set up.
    early = logging.StreamHandler(sys.stderr)
    early.setFormatter(logging.Formatter("wsgiserve: warning: %(message)s"))
    logging.getLogger(logs.ERROR_LOG).addHandler(early)
    try:
        resolved = resolve(argv, parser)
    except StartupError as error:
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        logging.getLogger(logs.ERROR_LOG).removeHandler(early)
    settings = resolved.settings
    if resolved.actions.get("print_config"):
        # wsgi_app, the name a config file gives the app, so the output loads back as is.
        shown = as_config(settings)
        print(json.dumps({"wsgi_app": resolved.app, **shown}, indent=2, default=str))
        return 0
    try:
        # A bad format fails here, before any worker is forked.
        accesslog.AccessLog(settings.access_logformat, settings.access_log_json)
        logs.configure_from(settings)
    except ValueError as error:
        print(f"wsgiserve: error: --access-logformat: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as error:
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code
    loader = functools.partial(load_app, resolved.app, factory=settings.factory)
    pidfile = PidFile(settings.pidfile) if settings.pidfile else None
    control: socket.socket | None = None
    try:
        prepare_process(settings.chdir, settings.pythonpath, settings.raw_env, settings.umask)
        tls.server_context(settings)  # a bad certificate fails here, not in every worker
        if settings.reload:
            check_engine(settings.reload_engine)
        if resolved.actions.get("check_config"):
            for spec in settings.bind:  # a bind that cannot work fails the check too
                parse_bind(spec)
            if settings.user or settings.group or settings.initgroups:
                check_identity(settings.user, settings.group, settings.initgroups)
            if pidfile is not None:
                pidfile.check()
            loader()
            print(f"wsgiserve: configuration OK; {resolved.app} loads", file=sys.stderr)
            return 0
        listeners = open_listeners(settings)
        # Claimed before privileges are dropped (it often lives in a root-owned /run), and
        # handed to the user the server becomes, so that it can remove it at the end.
        if pidfile is not None:
            pidfile.claim()
            control = bind_control(pidfile.path)
        drop_privileges(
            settings.user,
            settings.group,
            [item.url[5:] for item in listeners if item.url.startswith("unix:")]
            + ([pidfile.path, control_path(pidfile.path)] if pidfile is not None else []),
            initgroups=settings.initgroups,
        )
    except StartupError as error:
        if pidfile is not None:
            pidfile.release()
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code
    reload_settings = None
    if "config" in resolved.actions:

        def reload_settings() -> Settings:
            return resolve(argv, parser).settings

    supervisor = Supervisor(
        settings,
        listeners,
        loader,
        reload=reload_settings,
        hooks=resolved.hooks,
        pidfile=pidfile,
        control_socket=control,
    )
    try:
        return supervisor.run()
    except StartupError as error:  # --preload: the app is loaded here, before any fork
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
