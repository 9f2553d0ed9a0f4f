"""The `wsgiserve` command: flags generated from `Settings`, configuration sources merged,
the app named, and the supervisor started.

The only module that prints to the terminal or chooses an exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from . import accesslog, config, logs, tls
from .accesslog import escape
from .appload import drop_privileges, identity, load_app, prepare_process
from .control import bind_control, control_path, query_status
from .errors import StartupError
from .listeners import parse_bind
from .pidfile import PidFile
from .serving import open_listeners
from .settings import Settings, convert, setting_fields
from .supervisor import Supervisor
from .version import __version__

EXIT_USAGE = 2

# gunicorn flags that are accepted and ignored (with the reason), or refused.
IGNORED_FLAGS = {
    "--worker-tmp-dir": "heartbeats go through a pipe, not a temporary file",
    "--no-sendfile": "responses are written by the event loop",
}
REFUSED_FLAGS = {
    "-D": "run wsgiserve in the foreground under systemd, a container or a process manager",
    "--daemon": "run wsgiserve in the foreground under systemd, a container or a process manager",
    "--paste": "paste deployment is not supported: give MODULE:APP",
    "--proxy-protocol": "the PROXY protocol is not supported",
}
WORKER_CLASSES_OK = {"sync", "gthread", "uvicorn.workers.UvicornWorker"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wsgiserve",
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
    parser.add_argument("--version", action="version", version=f"wsgiserve {__version__}")
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
        help="print the resolved settings as JSON, then exit",
    )
    parser.add_argument(
        "-k",
        "--worker-class",
        metavar="CLASS",
        default=argparse.SUPPRESS,
        help="accepted for gunicorn compatibility: wsgiserve always runs an "
        "event loop plus threads (gevent/eventlet are refused)",
    )
    for flag, reason in IGNORED_FLAGS.items():
        parser.add_argument(
            flag, nargs="?", const=True, default=argparse.SUPPRESS, help=f"ignored ({reason})"
        )
    for flag, reason in REFUSED_FLAGS.items():
        if flag != "-D":
            parser.add_argument(
                *(["-D", flag] if flag == "--daemon" else [flag]),
                nargs="?",
                const=True,
                default=argparse.SUPPRESS,
                help=f"refused: {reason}",
            )
    for field in setting_fields():
        meta = field.metadata
        help_text = meta["help"]
        default = field.default
        if default not in (None, (), False):
            shown = ", ".join(default) if isinstance(default, tuple) else default
            help_text += f" (default: {shown}{' ' + meta['unit'] if meta['unit'] else ''})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "help": help_text.replace("%", "%%"),
            "metavar": meta["metavar"] or None,
            "default": argparse.SUPPRESS,
        }
        if field.type in ("tuple[str, ...]",):
            kwargs["action"] = "append"
        elif field.type in ("bool", bool):
            kwargs["action"] = "store_true"
            del kwargs["metavar"]
        elif field.name in ("umask", "max_worker_memory"):  # "007", "512MB"
            kwargs["type"] = functools.partial(_converted, field.name)
        elif field.type in ("int", int):
            kwargs["type"] = int
        elif field.type in ("float", float):
            kwargs["type"] = float
        parser.add_argument(*meta["flags"], **kwargs)
    return parser


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
    for layer in (cli, env, gunicorn_env):
        _check_compat(layer, parser)
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
            cli["config"] = config_file  # a HUP reads it again
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
    app = cli.get("app") or env.get("app") or values.pop("wsgi_app", None)
    if not app:
        parser.error("the app is missing: give MODULE:APP, like myproject.wsgi:application")
    try:
        settings = Settings.from_mapping(values)
    except (TypeError, ValueError) as error:
        raise StartupError(f"invalid configuration: {error}") from None
    actions: dict[str, Any] = {
        k: cli[k] for k in ("check_config", "print_config", "config") if k in cli
    }
    return Resolved(settings, str(app), hooks, actions)


def _check_compat(values: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    for flag in (*IGNORED_FLAGS, *REFUSED_FLAGS):
        dest = flag.lstrip("-").replace("-", "_")
        if dest in values:
            if flag in REFUSED_FLAGS:
                parser.error(f"{flag} is not supported: {REFUSED_FLAGS[flag]}")
            print(f"wsgiserve: warning: {flag} is ignored: {IGNORED_FLAGS[flag]}", file=sys.stderr)
            del values[dest]
    worker_class = values.pop("worker_class", None)
    if worker_class is not None:
        if worker_class in ("gevent", "eventlet", "tornado") or "gevent" in worker_class:
            parser.error(
                f"-k {worker_class} is not supported: wsgiserve runs your app in a thread pool "
                "behind an asyncio event loop; monkey-patching green threads would break the "
                "loop. Drop -k and size --threads for your I/O wait instead."
            )
        if worker_class not in WORKER_CLASSES_OK:
            parser.error(f"-k {worker_class}: unknown worker class")
        print(
            f"wsgiserve: warning: -k {worker_class} is ignored: wsgiserve always runs an "
            "event loop plus a thread pool (--threads)",
            file=sys.stderr,
        )


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
    try:
        resolved = resolve(argv, parser)
    except StartupError as error:
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code
    settings = resolved.settings
    if resolved.actions.get("print_config"):
        shown = dataclasses.asdict(settings)
        print(json.dumps({"app": resolved.app, **shown}, indent=2, default=str))
        return 0
    try:
        # A bad format fails here, before any worker is forked.
        accesslog.AccessLog(settings.access_logformat, settings.access_log_json)
        logs.configure(
            log_level=settings.log_level,
            error_logfile=settings.error_logfile,
            access_logfile=settings.access_logfile,
            log_config=settings.log_config,
            capture_output=settings.capture_output,
            error_log_json=settings.error_log_json,
        )
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
        if resolved.actions.get("check_config"):
            for spec in settings.bind:  # a bind that cannot work fails the check too
                parse_bind(spec)
            if settings.user or settings.group:
                identity(settings.user, settings.group)
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
