"""Every setting of the server in one frozen dataclass: the single source of truth.

The command line (`cli.py`) and the README's settings table are both generated
from the field metadata here, so a setting is declared exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _setting(default: Any, *flags: str, help: str, unit: str = "", metavar: str = "") -> Any:
    meta = {"flags": flags, "help": help, "unit": unit, "metavar": metavar}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How one server runs. Build with keyword arguments or `Settings.from_mapping`."""

    bind: tuple[str, ...] = _setting(
        ("127.0.0.1:8000",),
        "-b",
        "--bind",
        metavar="ADDRESS",
        help="Where to listen: HOST:PORT, [IPv6]:PORT or unix:PATH. Repeat to listen on several.",
    )
    threads: int = _setting(
        8, "--threads", metavar="N", help="Worker threads that run the WSGI app."
    )
    keep_alive: float = _setting(
        5.0,
        "--keep-alive",
        "--keepalive",
        unit="seconds",
        metavar="SECONDS",
        help="How long an idle keep-alive connection is held open. Keep it above your load "
        "balancer's idle timeout.",
    )
    graceful_timeout: float = _setting(
        30.0,
        "--graceful-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="On SIGTERM/SIGINT, how long in-flight requests may take to finish.",
    )
    backlog: int = _setting(
        2048, "--backlog", metavar="N", help="Pending connections the kernel queues per socket."
    )
    log_level: str = _setting(
        "info",
        "--log-level",
        metavar="LEVEL",
        help="Error log verbosity: " + ", ".join(LOG_LEVELS) + ".",
    )
    access_logfile: str | None = _setting(
        None,
        "--access-logfile",
        metavar="FILE",
        help="Write an access log line per request to FILE ('-' is stdout). Off by default.",
    )
    limit_request_line: int = _setting(
        4094,
        "--limit-request-line",
        unit="bytes",
        metavar="BYTES",
        help="Longest request line accepted (longer: 414). 0 means the maximum, 65535.",
    )
    limit_request_fields: int = _setting(
        100,
        "--limit-request-fields",
        metavar="N",
        help="Most header fields in one request (more: 431). 0 means the maximum, 32768.",
    )
    limit_request_field_size: int = _setting(
        8190,
        "--limit-request-field_size",
        "--limit-request-field-size",
        unit="bytes",
        metavar="BYTES",
        help="Longest header field line, CRLF included (longer: 431). 0 means the maximum, 65535.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.bind, str):
            object.__setattr__(self, "bind", (self.bind,))
        else:
            object.__setattr__(self, "bind", tuple(self.bind))
        if not self.bind:
            raise ValueError("bind: at least one address is needed")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
        for name in ("keep_alive", "graceful_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.backlog < 1:
            raise ValueError(f"backlog must be at least 1, not {self.backlog}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        object.__setattr__(self, "log_level", self.log_level.lower())
        for name, maximum in (
            ("limit_request_line", 65535),
            ("limit_request_fields", 32768),
            ("limit_request_field_size", 65535),
        ):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            # gunicorn's convention: 0 (or anything above the cap) means the cap.
            if value == 0 or value > maximum:
                object.__setattr__(self, name, maximum)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping of field names; unknown names raise `TypeError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The dataclass fields of `Settings`, in declaration order (for the CLI and docs)."""
    return dataclasses.fields(Settings)


def markdown_table() -> str:
    """The README's settings table, generated from the field metadata."""
    rows = ["| setting | flags | default | meaning |", "|---|---|---|---|"]
    for field in setting_fields():
        meta = field.metadata
        default = field.default
        if isinstance(default, tuple):
            default = ", ".join(default)
        shown = "off" if default is None else f"{default}"
        if meta["unit"] and default is not None:
            shown += f" {meta['unit']}"
        flags = ", ".join(f"`{flag}`" for flag in meta["flags"])
        rows.append(f"| `{field.name}` | {flags} | {shown} | {meta['help']} |")
    return "\n".join(rows)
