"""The `wsgiserve` command: flags generated from `Settings`, app loading, exit codes.

The only module that prints to the terminal or chooses an exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, logs
from .appload import load_app
from .errors import StartupError
from .server import open_listeners, run
from .settings import Settings, setting_fields

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsgiserve",
        description="Serve a WSGI app: uvloop + httptools on the event loop, "
        "the app in a bounded thread pool.",
        epilog="Example: wsgiserve myproject.wsgi:application -b 0.0.0.0:8000 --threads 16",
    )
    parser.add_argument("app", metavar="MODULE:APP", help="the WSGI app, like myapp:app")
    parser.add_argument("--version", action="version", version=f"wsgiserve {__version__}")
    parser.add_argument("--chdir", metavar="DIR", help="change to DIR before loading the app")
    for field in setting_fields():
        meta = field.metadata
        help_text = meta["help"]
        default = field.default
        if default is not None and default != ():
            shown = ", ".join(default) if isinstance(default, tuple) else default
            help_text += f" (default: {shown}{' ' + meta['unit'] if meta['unit'] else ''})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "help": help_text,
            "metavar": meta["metavar"] or None,
            "default": argparse.SUPPRESS,
        }
        if field.name == "bind":
            kwargs["action"] = "append"
        elif field.type in ("int", int):
            kwargs["type"] = int
        elif field.type in ("float", float):
            kwargs["type"] = float
        parser.add_argument(*meta["flags"], **kwargs)
    return parser


def settings_from_args(namespace: argparse.Namespace) -> Settings:
    known = {field.name for field in dataclasses.fields(Settings)}
    values = {name: value for name, value in vars(namespace).items() if name in known}
    return Settings.from_mapping(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    try:
        settings = settings_from_args(namespace)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    logs.configure(settings.log_level, settings.access_logfile)
    try:
        app = load_app(namespace.app, chdir=namespace.chdir)
        listeners = open_listeners(settings)
    except StartupError as error:
        print(f"wsgiserve: error: {error}", file=sys.stderr)
        return error.exit_code
    run(app, settings, listeners)
    return 0


if __name__ == "__main__":
    sys.exit(main())
