"""Every setting of the server in one frozen dataclass: the single source of truth.

The command line (`cli.py`) and the README's settings table are both generated
from the field metadata here, so a setting is declared exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
THREAD_POLICIES = ("batch", "normal")


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
    thread_policy: str = _setting(
        "batch",
        "--thread-policy",
        metavar="POLICY",
        help="Linux scheduling policy of the app threads: batch (SCHED_BATCH: a thread "
        "handed a request does not preempt the event loop, which saves context switches; "
        "same CPU share as normal) or normal.",
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
    header_timeout: float = _setting(
        10.0,
        "--header-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Time a client has, from connecting or from the end of the previous response, "
        "to send a whole request head (slowloris defence; 408 then close).",
    )
    body_timeout: float = _setting(
        30.0,
        "--body-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Longest pause while a request body is arriving (a stalled upload is cut off).",
    )
    write_timeout: float = _setting(
        30.0,
        "--write-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Longest a response may make no progress because the client stopped reading; "
        "then the connection is dropped and its thread freed.",
    )
    min_upload_rate: float = _setting(
        240.0,
        "--min-upload-rate",
        unit="bytes/s",
        metavar="BYTES_PER_S",
        help="Slowest a request body may arrive, on average, once --min-rate-grace has passed "
        "(counted only while the server wants to read). A trickling upload is cut off with 408 "
        "instead of holding a thread. 0: off.",
    )
    min_download_rate: float = _setting(
        240.0,
        "--min-download-rate",
        unit="bytes/s",
        metavar="BYTES_PER_S",
        help="Slowest a client may take a response whose bytes wait for it, measured over "
        "each --min-rate-grace window while writing is stalled; a slower one is dropped and "
        "its thread freed long before --write-timeout. 0: off.",
    )
    min_rate_grace: float = _setting(
        5.0,
        "--min-rate-grace",
        unit="seconds",
        metavar="SECONDS",
        help="How long an upload or a stalled download may run before the minimum rates apply.",
    )
    response_budget: int = _setting(
        64 * 1024 * 1024,
        "--response-budget",
        unit="bytes",
        metavar="BYTES",
        help="Response bytes one worker may hold for clients that stopped reading; past it, "
        "app threads wait before writing more instead of the server buffering it. 0: no limit.",
    )
    body_preread: int = _setting(
        64 * 1024,
        "--body-preread",
        unit="bytes",
        metavar="BYTES",
        help="A request body up to this size (by Content-Length) is read whole before the app "
        "is called, so an app thread never waits on the network for it. Not with "
        "Expect: 100-continue (the app decides). 0: hand every request over at once.",
    )
    limit_request_body: int = _setting(
        0,
        "--limit-request-body",
        unit="bytes",
        metavar="BYTES",
        help="Largest request body accepted (larger: 413, before any 100 Continue). 0: no limit.",
    )
    limit_concurrency: int = _setting(
        0,
        "--limit-concurrency",
        metavar="N",
        help="Requests running plus waiting for a thread, per worker; past it new requests get "
        "503 with Retry-After. 0: no limit.",
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
    access_logformat: str | None = _setting(
        None,
        "--access-logformat",
        metavar="FORMAT",
        help="Access log format with gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(M)sms'. "
        "Default: gunicorn's.",
    )
    access_log_json: bool = _setting(
        False, "--access-log-json", help="Write the access log as one JSON object per line."
    )
    error_logfile: str | None = _setting(
        None,
        "--error-logfile",
        "--log-file",
        metavar="FILE",
        help="Where the error log goes ('-' or unset: stderr).",
    )
    error_log_json: bool = _setting(
        False,
        "--error-log-json",
        help="Write the error log as one JSON object per line (time, level, pid, message; a "
        "traceback or a slow request's stack as one field).",
    )
    log_config: str | None = _setting(
        None,
        "--log-config",
        metavar="FILE",
        help="A logging dictConfig in a .json or .toml file; replaces the logging set-up.",
    )
    capture_output: bool = _setting(
        False, "--capture-output", help="Send the app's stdout and stderr to the error log file."
    )
    forwarded_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "--forwarded-allow-ips",
        metavar="IPS",
        help="Peers (IPs, CIDRs, or *) whose X-Forwarded-* and Forwarded headers are believed. "
        "Default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1.",
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

    max_connections: int = _setting(
        0,
        "--max-connections",
        "--worker-connections",
        metavar="N",
        help="Open connections per worker; past it the worker stops accepting until some "
        "close. 0: as many as the open-file limit allows, keeping 10% spare.",
    )

    # -- observability --------------------------------------------------------------------
    metrics_bind: str | None = _setting(
        None,
        "--metrics-bind",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics (per worker and summed) at http://HOST:PORT/metrics, "
        "from the supervisor. Off by default.",
    )
    statsd_host: str | None = _setting(
        None,
        "--statsd-host",
        metavar="HOST:PORT",
        help="Send gunicorn-style statsd metrics (UDP) to HOST:PORT.",
    )
    statsd_prefix: str = _setting(
        "", "--statsd-prefix", metavar="PREFIX", help="Prefix for statsd metric names."
    )

    # -- processes ------------------------------------------------------------------------
    workers: int = _setting(
        1,
        "-w",
        "--workers",
        metavar="N",
        help="Worker processes, each with its own event loop and threads. Default: "
        "$WEB_CONCURRENCY, else 1.",
    )
    timeout: float = _setting(
        30.0,
        "-t",
        "--timeout",
        unit="seconds",
        metavar="SECONDS",
        help="A request running longer is logged with its thread's stack; a worker whose event "
        "loop misses its heartbeat this long is killed and replaced. 0 turns both off.",
    )
    slow_request_threshold: float = _setting(
        0.0,
        "--slow-request-threshold",
        unit="seconds",
        metavar="SECONDS",
        help="Log a request running longer than this, once, with its method, path, age and "
        "its thread's current stack. 0: use --timeout.",
    )
    max_requests: int = _setting(
        0,
        "--max-requests",
        metavar="N",
        help="Restart a worker gracefully after it served N requests (0: never).",
    )
    max_requests_jitter: int = _setting(
        0,
        "--max-requests-jitter",
        metavar="N",
        help="Add a random 0..N to --max-requests per worker, so workers do not restart together.",
    )
    max_worker_memory: int = _setting(
        0,
        "--max-worker-memory",
        metavar="SIZE",
        help="Restart a worker gracefully once its resident memory (RSS) grows past SIZE: bytes, "
        "or with a unit (512MB, 1.5GiB; KB/MB/GB count in 1000s, K/M/G and KiB/MiB/GiB in "
        "1024s), as uWSGI's reload-on-rss. Checked on each heartbeat; Linux only. 0: never.",
    )
    preload_app: bool = _setting(
        False, "--preload", help="Load the app in the supervisor, before the workers fork."
    )
    reuse_port: bool = _setting(
        False, "--reuse-port", help="Set SO_REUSEPORT on listening sockets."
    )
    pidfile: str | None = _setting(
        None, "-p", "--pid", metavar="FILE", help="Write the supervisor's pid to FILE."
    )
    chdir: str | None = _setting(
        None, "--chdir", metavar="DIR", help="Change to DIR before loading the app."
    )
    pythonpath: str | None = _setting(
        None,
        "--pythonpath",
        metavar="DIRS",
        help="Comma-separated directories to put first on sys.path before loading the app.",
    )
    raw_env: tuple[str, ...] = _setting(
        (),
        "-e",
        "--env",
        metavar="KEY=VALUE",
        help="Set an environment variable for the app. Repeatable.",
    )
    proc_name: str | None = _setting(
        None,
        "-n",
        "--name",
        metavar="NAME",
        help="Process title (shown by ps and top when setproctitle is installed).",
    )
    umask: int = _setting(
        0,
        "--umask",
        metavar="MASK",
        help="umask for the processes, which sets the permissions of unix sockets "
        "(e.g. 0o007). 0 leaves the umask as it is.",
    )
    user: str | None = _setting(
        None,
        "-u",
        "--user",
        metavar="USER",
        help="Run as this user (name or uid) once the sockets are bound; needs root.",
    )
    group: str | None = _setting(
        None,
        "-g",
        "--group",
        metavar="GROUP",
        help="Run as this group (name or gid) once the sockets are bound; needs root.",
    )
    factory: bool = _setting(
        False, "--factory", help="Treat MODULE:NAME as a factory: call it to get the app."
    )
    reload: bool = _setting(
        False,
        "--reload",
        help="Development: restart the workers when a .py file under the app's directory "
        "changes (watchfiles if installed, else polling).",
    )

    # -- TLS ---------------------------------------------------------------------------------
    certfile: str | None = _setting(
        None, "--certfile", metavar="FILE", help="Serve HTTPS with this certificate (PEM)."
    )
    keyfile: str | None = _setting(
        None, "--keyfile", metavar="FILE", help="The certificate's private key (PEM)."
    )
    ca_certs: str | None = _setting(
        None, "--ca-certs", metavar="FILE", help="CA certificates to verify client certificates."
    )
    cert_reqs: int = _setting(
        0,
        "--cert-reqs",
        metavar="N",
        help="Client certificates: 0 not asked, 1 optional, 2 required (gunicorn's numbers).",
    )
    ciphers: str | None = _setting(
        None, "--ciphers", metavar="LIST", help="OpenSSL cipher list (default: Python's)."
    )

    def __post_init__(self) -> None:
        if isinstance(self.bind, str):
            object.__setattr__(self, "bind", (self.bind,))
        else:
            object.__setattr__(self, "bind", tuple(self.bind))
        if not self.bind:
            raise ValueError("bind: at least one address is needed")
        for name in ("threads", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        from .proxy import TrustedProxies  # validates the list; raises ValueError

        TrustedProxies.parse(self.forwarded_allow_ips)
        if self.cert_reqs not in (0, 1, 2):
            raise ValueError("cert_reqs must be 0, 1 or 2")
        if isinstance(self.max_worker_memory, str):  # Settings(max_worker_memory="512MB")
            object.__setattr__(self, "max_worker_memory", parse_size(self.max_worker_memory))
        for name in (
            "max_requests",
            "max_requests_jitter",
            "umask",
            "max_connections",
            "max_worker_memory",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        object.__setattr__(self, "raw_env", tuple(self.raw_env))
        for item in self.raw_env:
            if "=" not in item:
                raise ValueError(f"env: {item!r} is not KEY=VALUE")
        for name in (
            "keep_alive",
            "graceful_timeout",
            "timeout",
            "slow_request_threshold",
            "header_timeout",
            "body_timeout",
            "write_timeout",
            "limit_request_body",
            "limit_concurrency",
            "min_upload_rate",
            "min_download_rate",
            "min_rate_grace",
            "body_preread",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.backlog < 1:
            raise ValueError(f"backlog must be at least 1, not {self.backlog}")
        if self.thread_policy not in THREAD_POLICIES:
            raise ValueError(f"thread_policy must be one of {', '.join(THREAD_POLICIES)}")
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


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
}


def parse_size(text: str) -> int:
    """A size in bytes from text such as "1048576", "512MB" or "1.5 GiB" (KB/MB/GB are
    decimal, K/M/G and KiB/MiB/GiB binary); raises `ValueError` saying what is accepted."""
    stripped = text.strip()
    number = stripped.rstrip("kKmMgGiIbB ").strip()
    unit = stripped[len(number) :].strip().lower()
    try:
        value = float(number) if "." in number else int(number)
    except ValueError:
        value = -1
    if unit not in _SIZE_UNITS or value < 0:
        raise ValueError(
            f"{text!r} is not a size: give bytes, or a number with KB, MB, GB (1000s) or "
            "K, M, G, KiB, MiB, GiB (1024s), like 512MB"
        )
    return int(value * _SIZE_UNITS[unit])


_TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "off", "n", "f", ""})


def convert(name: str, value: Any) -> Any:
    """A setting given as text (a config file, an environment variable, a flag), converted
    as gunicorn converts it: `workers = os.getenv("WEB_CONCURRENCY", "4")` is 4. Values
    that are not text pass through; raises `ValueError` naming the setting and the value.
    """
    if not isinstance(value, str):
        return value
    kind = next((f.type for f in dataclasses.fields(Settings) if f.name == name), None)
    text = value.strip()
    if name == "max_worker_memory":
        try:
            return parse_size(text)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    try:
        if name == "umask":
            # A umask is octal by custom: "007" and "0o007" are 7, "18" is 18.
            return int(text, 8) if text[:1] == "0" and text.isdigit() else int(text, 0)
        if kind in ("int", int):
            return int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text)
        if kind in ("float", float):
            return float(text)
        if kind in ("bool", bool):
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}
        what = "an octal umask such as 022" if name == "umask" else expected.get(str(kind), kind)
        raise ValueError(f"{name}: {value!r} is not {what}") from None
    return value


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
        shown = "off" if default in (None, False, "") else f"{default}"
        if meta["unit"] and default is not None:
            shown += f" {meta['unit']}"
        flags = ", ".join(f"`{flag}`" for flag in meta["flags"])
        rows.append(f"| `{field.name}` | {flags} | {shown} | {meta['help']} |")
    return "\n".join(rows)
