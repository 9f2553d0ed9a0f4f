"""Every setting of the server in one frozen dataclass: the single source of truth.

The command line (`cli.py`) and the README's settings table are both generated
from the field metadata here, so a setting is declared exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from . import affinity

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
THREAD_POLICIES = ("batch", "normal")
PROTOCOLS = ("http", "uwsgi")
PROXY_MODES = ("off", "v1", "v2", "auto")
RELOAD_ENGINES = ("auto", "poll", "inotify")  # gunicorn's names; inotify means watchfiles
# The facility names syslog knows (logging.handlers.SysLogHandler.facility_names has them too).
SYSLOG_FACILITIES = frozenset(
    (
        *("auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news"),
        *("security", "syslog", "user", "uucp", *(f"local{n}" for n in range(8))),
    )
)
# How --help and docs/settings.md group the settings, in this order.
SECTIONS = (
    "binding",
    "workers",
    "timeouts",
    "limits",
    "proxies",
    "logging",
    "metrics",
    "TLS",
    "process",
)


def _setting(
    default: Any,
    *flags: str,
    section: str,
    help: str,
    unit: str = "",
    metavar: str = "",
    const: Any = None,
) -> Any:
    # `const`: the value of the flag given without one (argparse's nargs="?").
    if section not in SECTIONS:
        raise ValueError(f"section {section!r} is not one of {SECTIONS}")
    meta = {
        "flags": flags,
        "help": help,
        "unit": unit,
        "metavar": metavar,
        "const": const,
        "section": section,
    }
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
        section="binding",
    )
    threads: int = _setting(
        8, "--threads", metavar="N", help="Worker threads that run the WSGI app.", section="workers"
    )
    thread_policy: str = _setting(
        "batch",
        "--thread-policy",
        metavar="POLICY",
        help="Linux scheduling policy of the app threads: batch (SCHED_BATCH: a thread "
        "handed a request does not preempt the event loop, which saves context switches; "
        "same CPU share as normal) or normal.",
        section="workers",
    )
    keep_alive: float = _setting(
        5.0,
        "--keep-alive",
        "--keepalive",
        unit="seconds",
        metavar="SECONDS",
        help="How long an idle keep-alive connection is held open. Keep it above your load "
        "balancer's idle timeout.",
        section="timeouts",
    )
    header_timeout: float = _setting(
        10.0,
        "--header-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Time a client has, from connecting or from the end of the previous response, "
        "to send a whole request head (slowloris defence; 408 then close).",
        section="timeouts",
    )
    body_timeout: float = _setting(
        30.0,
        "--body-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Longest pause while a request body is arriving (a stalled upload is cut off).",
        section="timeouts",
    )
    write_timeout: float = _setting(
        30.0,
        "--write-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="Longest a response may make no progress because the client stopped reading; "
        "then the connection is dropped and its thread freed.",
        section="timeouts",
    )
    min_upload_rate: float = _setting(
        240.0,
        "--min-upload-rate",
        unit="bytes/s",
        metavar="BYTES_PER_S",
        help="Slowest a request body may arrive, on average, once --min-rate-grace has passed "
        "(counted only while the server wants to read). A trickling upload is cut off with 408 "
        "instead of holding a thread. 0: off.",
        section="timeouts",
    )
    min_download_rate: float = _setting(
        240.0,
        "--min-download-rate",
        unit="bytes/s",
        metavar="BYTES_PER_S",
        help="Slowest a client may take a response whose bytes wait for it, measured over "
        "each --min-rate-grace window while writing is stalled; a slower one is dropped and "
        "its thread freed long before --write-timeout. 0: off.",
        section="timeouts",
    )
    min_rate_grace: float = _setting(
        5.0,
        "--min-rate-grace",
        unit="seconds",
        metavar="SECONDS",
        help="How long an upload or a stalled download may run before the minimum rates apply.",
        section="timeouts",
    )
    response_budget: int = _setting(
        64 * 1024 * 1024,
        "--response-budget",
        unit="bytes",
        metavar="BYTES",
        help="Response bytes one worker may hold for clients that stopped reading; past it, "
        "app threads wait before writing more instead of the server buffering it. 0: no limit.",
        section="limits",
    )
    body_preread: int = _setting(
        64 * 1024,
        "--body-preread",
        unit="bytes",
        metavar="BYTES",
        help="A request body up to this size (by Content-Length) is read whole before the app "
        "is called, so an app thread never waits on the network for it. Not with "
        "Expect: 100-continue (the app decides). 0: hand every request over at once.",
        section="limits",
    )
    limit_request_body: int = _setting(
        0,
        "--limit-request-body",
        unit="bytes",
        metavar="BYTES",
        help="Largest request body accepted (larger: 413, before any 100 Continue). 0: no limit.",
        section="limits",
    )
    limit_concurrency: int = _setting(
        0,
        "--limit-concurrency",
        metavar="N",
        help="Requests running plus waiting for a thread, per worker; past it new requests get "
        "503 with Retry-After. 0: no limit.",
        section="limits",
    )
    graceful_timeout: float = _setting(
        30.0,
        "--graceful-timeout",
        unit="seconds",
        metavar="SECONDS",
        help="On SIGTERM/SIGINT, how long in-flight requests may take to finish.",
        section="timeouts",
    )
    backlog: int = _setting(
        2048,
        "--backlog",
        metavar="N",
        help="Pending connections the kernel queues per socket.",
        section="binding",
    )
    log_level: str = _setting(
        "info",
        "--log-level",
        metavar="LEVEL",
        help="Error log verbosity: " + ", ".join(LOG_LEVELS) + ".",
        section="logging",
    )
    access_logfile: str | None = _setting(
        None,
        "--access-logfile",
        metavar="FILE",
        help="Write an access log line per request to FILE ('-' is stdout). Off by default.",
        section="logging",
    )
    access_logformat: str | None = _setting(
        None,
        "--access-logformat",
        metavar="FORMAT",
        help="Access log format with gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(M)sms'. "
        "Default: gunicorn's.",
        section="logging",
    )
    access_log_json: bool = _setting(
        False,
        "--access-log-json",
        help="Write the access log as one JSON object per line.",
        section="logging",
    )
    error_logfile: str | None = _setting(
        None,
        "--error-logfile",
        "--log-file",
        metavar="FILE",
        help="Where the error log goes ('-' or unset: stderr).",
        section="logging",
    )
    error_log_json: bool = _setting(
        False,
        "--error-log-json",
        help="Write the error log as one JSON object per line (time, level, pid, message; a "
        "traceback or a slow request's stack as one field).",
        section="logging",
    )
    log_config: str | None = _setting(
        None,
        "--log-config",
        "--log-config-json",
        metavar="FILE",
        help="A logging configuration file: .ini, .conf or .cfg for logging.config.fileConfig "
        "(as gunicorn reads it), .toml or anything else as JSON for dictConfig. A logger it "
        "names is left to it.",
        section="logging",
    )
    logconfig_dict: dict[str, Any] | None = _setting(  # noqa: RUF009 (None by default)
        None,
        help="A logging.config.dictConfig dictionary (a config file's logconfig_dict, as in "
        "gunicorn); applied after --log-config. A logger it names is left to it.",
        section="logging",
    )
    syslog: bool = _setting(
        False,
        "--log-syslog",
        help="Send the error log to syslog as well, and the access log too unless "
        "--disable-redirect-access-to-syslog.",
        section="logging",
    )
    syslog_addr: str = _setting(
        "udp://localhost:514",
        "--log-syslog-to",
        metavar="ADDRESS",
        help="Where --log-syslog sends lines: udp://HOST:PORT, tcp://HOST:PORT or unix://PATH "
        "(the local syslog daemon: unix:///dev/log).",
        section="logging",
    )
    syslog_prefix: str | None = _setting(
        None,
        "--log-syslog-prefix",
        metavar="NAME",
        help="The program name syslog lines carry. Default: --name, else wsgiserve.",
        section="logging",
    )
    syslog_facility: str = _setting(
        "user",
        "--log-syslog-facility",
        metavar="FACILITY",
        help="The syslog facility, e.g. user, daemon, local0 ... local7.",
        section="logging",
    )
    disable_redirect_access_to_syslog: bool = _setting(
        False,
        "--disable-redirect-access-to-syslog",
        help="With --log-syslog, keep access-log lines out of syslog.",
        section="logging",
    )
    capture_output: bool = _setting(
        False,
        "--capture-output",
        help="Send the app's stdout and stderr to the error log file.",
        section="logging",
    )
    forwarded_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "--forwarded-allow-ips",
        metavar="IPS",
        help="Peers (IPs, CIDRs, or *) whose X-Forwarded-* and Forwarded headers are believed, "
        "and their X-Forwarded-Prefix or SCRIPT_NAME header (the app's mount point). Unix "
        "socket peers are always believed. Default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1.",
        section="proxies",
    )
    root_path: str = _setting(
        "",
        "--root-path",
        metavar="PATH",
        help="The URL path the app is mounted under behind a proxy (e.g. /app): it becomes "
        "SCRIPT_NAME and is removed from the start of PATH_INFO. Default: $SCRIPT_NAME, as "
        "gunicorn; a trusted proxy's X-Forwarded-Prefix overrides it per request.",
        section="proxies",
    )
    proxy_protocol: str = _setting(
        "off",
        "--proxy-protocol",
        metavar="MODE",
        const="auto",
        help="Read a PROXY protocol header (HAProxy, AWS NLB, stunnel) at the start of each "
        "connection from --proxy-allow-from peers, and take the client's address from it: "
        "off, v1, v2 or auto (the flag alone). A connection without one is served as is.",
        section="proxies",
    )
    proxy_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "--proxy-allow-from",
        "--proxy-allow-ips",
        metavar="IPS",
        help="Peers (IPs, CIDRs, or *) that may send a PROXY protocol header. Unix-socket "
        "peers are always allowed.",
        section="proxies",
    )
    protocol: str = _setting(
        "http",
        "--protocol",
        metavar="PROTOCOL",
        help="What the listeners speak when a bind does not say: http, or uwsgi (the binary "
        "protocol of nginx's uwsgi_pass and Apache's mod_proxy_uwsgi). A bind can say it "
        "itself: -b uwsgi://127.0.0.1:3031 or -b uwsgi:unix:/run/app/uwsgi.sock.",
        section="binding",
    )
    uwsgi_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "--uwsgi-allow-ips",
        "--uwsgi-allow-from",
        metavar="IPS",
        help="Peers (IPs, CIDRs, or *) that may send uwsgi requests (they set the client's "
        "address and scheme). Unix-socket peers are always allowed.",
        section="proxies",
    )
    limit_request_line: int = _setting(
        4094,
        "--limit-request-line",
        unit="bytes",
        metavar="BYTES",
        help="Longest request line accepted (longer: 414). 0 means the maximum, 65535.",
        section="limits",
    )
    limit_request_fields: int = _setting(
        100,
        "--limit-request-fields",
        metavar="N",
        help="Most header fields in one request (more: 431). 0 means the maximum, 32768.",
        section="limits",
    )
    limit_request_field_size: int = _setting(
        8190,
        "--limit-request-field_size",
        "--limit-request-field-size",
        unit="bytes",
        metavar="BYTES",
        help="Longest header field line, CRLF included (longer: 431). 0 means the maximum, 65535.",
        section="limits",
    )

    max_connections: int = _setting(
        0,
        "--max-connections",
        "--worker-connections",
        metavar="N",
        help="Open connections per worker; past it the worker stops accepting until some "
        "close. 0: as many as the open-file limit allows, keeping 10% spare.",
        section="limits",
    )

    # -- observability --------------------------------------------------------------------
    metrics_bind: str | None = _setting(
        None,
        "--metrics-bind",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics (per worker and summed) at http://HOST:PORT/metrics, "
        "from the supervisor. Off by default.",
        section="metrics",
    )
    statsd_host: str | None = _setting(
        None,
        "--statsd-host",
        metavar="HOST:PORT",
        help="Send gunicorn-style statsd metrics (UDP) to HOST:PORT.",
        section="metrics",
    )
    statsd_prefix: str = _setting(
        "",
        "--statsd-prefix",
        metavar="PREFIX",
        help="Prefix for statsd metric names.",
        section="metrics",
    )

    # -- processes ------------------------------------------------------------------------
    workers: int = _setting(
        1,
        "-w",
        "--workers",
        metavar="N",
        help="Worker processes, each with its own event loop and threads. Default: "
        "$WEB_CONCURRENCY, else 1.",
        section="workers",
    )
    timeout: float = _setting(
        30.0,
        "-t",
        "--timeout",
        unit="seconds",
        metavar="SECONDS",
        help="A request running longer is logged with its thread's stack; a worker whose event "
        "loop misses its heartbeat this long is killed and replaced. 0 turns both off.",
        section="timeouts",
    )
    slow_request_threshold: float = _setting(
        0.0,
        "--slow-request-threshold",
        unit="seconds",
        metavar="SECONDS",
        help="Log a request running longer than this, once, with its method, path, age and "
        "its thread's current stack. 0: use --timeout.",
        section="timeouts",
    )
    max_requests: int = _setting(
        0,
        "--max-requests",
        metavar="N",
        help="Restart a worker gracefully after it served N requests (0: never).",
        section="workers",
    )
    max_requests_jitter: int = _setting(
        0,
        "--max-requests-jitter",
        metavar="N",
        help="Add a random 0..N to --max-requests per worker, so workers do not restart together.",
        section="workers",
    )
    max_worker_memory: int = _setting(
        0,
        "--max-worker-memory",
        metavar="SIZE",
        help="Restart a worker gracefully once its resident memory (RSS) grows past SIZE: bytes, "
        "or with a unit (512MB, 1.5GiB; KB/MB/GB count in 1000s, K/M/G and KiB/MiB/GiB in "
        "1024s), as uWSGI's reload-on-rss. Checked on each heartbeat; Linux only. 0: never.",
        section="workers",
    )
    cpu_affinity: str = _setting(
        "auto",
        "--cpu-affinity",
        metavar="N",
        help="Pin each worker process to CPUs (Linux), as uWSGI's cpu-affinity: N CPUs per "
        "worker, handed out in turn; auto: one per worker when there are at least as many "
        "workers as CPUs (its threads then share the GIL on one core instead of waking each "
        "other across cores: about twice the throughput with -w 2 on two cores); off: the "
        "kernel decides.",
        section="workers",
    )
    preload_app: bool = _setting(
        False,
        "--preload",
        help="Load the app in the supervisor, before the workers fork.",
        section="workers",
    )
    reuse_port: bool = _setting(
        False, "--reuse-port", help="Set SO_REUSEPORT on listening sockets.", section="binding"
    )
    pidfile: str | None = _setting(
        None,
        "-p",
        "--pid",
        metavar="FILE",
        help="Write the supervisor's pid to FILE.",
        section="process",
    )
    chdir: str | None = _setting(
        None,
        "--chdir",
        metavar="DIR",
        help="Change to DIR before loading the app.",
        section="process",
    )
    pythonpath: str | None = _setting(
        None,
        "--pythonpath",
        metavar="DIRS",
        help="Comma-separated directories to put first on sys.path before loading the app.",
        section="process",
    )
    raw_env: tuple[str, ...] = _setting(
        (),
        "-e",
        "--env",
        metavar="KEY=VALUE",
        help="Set an environment variable for the app. Repeatable.",
        section="process",
    )
    proc_name: str | None = _setting(
        None,
        "-n",
        "--name",
        metavar="NAME",
        help="Process title (shown by ps and top when setproctitle is installed).",
        section="process",
    )
    umask: int = _setting(
        0,
        "-m",
        "--umask",
        metavar="MASK",
        help="umask for the processes, which sets the permissions of unix sockets "
        "(e.g. 0o007). 0 leaves the umask as it is.",
        section="process",
    )
    socket_mode: int | None = _setting(
        None,
        "--socket-mode",
        metavar="MODE",
        help="Permissions of unix: sockets, octal (e.g. 660); set before the socket accepts "
        "anything. Default: 660 with --socket-group, else as the umask makes them.",
        section="binding",
    )
    socket_group: str | None = _setting(
        None,
        "--socket-group",
        metavar="GROUP",
        help="Group (name or gid) that owns unix: sockets, so that a web server running as "
        "that group (www-data) may connect. Needs root or membership of the group.",
        section="binding",
    )
    user: str | None = _setting(
        None,
        "-u",
        "--user",
        metavar="USER",
        help="Run as this user (name or uid) once the sockets are bound; needs root.",
        section="process",
    )
    group: str | None = _setting(
        None,
        "-g",
        "--group",
        metavar="GROUP",
        help="Run as this group (name or gid) once the sockets are bound; needs root.",
        section="process",
    )
    initgroups: bool = _setting(
        False,
        "--initgroups",
        help="With --user: the workers also get every group the user is a member of in the "
        "group database (initgroups(3)); without it they have no supplementary groups.",
        section="process",
    )
    factory: bool = _setting(
        False,
        "--factory",
        help="Treat MODULE:NAME as a factory: call it to get the app.",
        section="workers",
    )
    reload: bool = _setting(
        False,
        "--reload",
        help="Development: restart the workers when a .py file under the app's directory "
        "changes (watchfiles if installed, else polling).",
        section="process",
    )

    reload_engine: str = _setting(
        "auto",
        "--reload-engine",
        metavar="ENGINE",
        help="How --reload notices changes: auto (watchfiles when installed, else polling), "
        "poll (a look every second; works on network and container mounts where change events "
        "never arrive) or inotify (watchfiles, which must be installed).",
        section="process",
    )
    reload_extra_files: tuple[str, ...] = _setting(
        (),
        "--reload-extra-file",
        metavar="FILE",
        help="With --reload, also restart the workers when FILE changes (any kind: templates, "
        ".env ...); a glob pattern such as 'templates/**/*.html' works too. Repeatable.",
        section="process",
    )

    # -- TLS ---------------------------------------------------------------------------------
    certfile: str | None = _setting(
        None,
        "--certfile",
        metavar="FILE",
        help="Serve HTTPS with this certificate (PEM).",
        section="TLS",
    )
    keyfile: str | None = _setting(
        None,
        "--keyfile",
        metavar="FILE",
        help="The certificate's private key (PEM).",
        section="TLS",
    )
    ca_certs: str | None = _setting(
        None,
        "--ca-certs",
        metavar="FILE",
        help="CA certificates to verify client certificates.",
        section="TLS",
    )
    cert_reqs: int = _setting(
        0,
        "--cert-reqs",
        metavar="N",
        help="Client certificates: 0 not asked, 1 optional, 2 required (gunicorn's numbers).",
        section="TLS",
    )
    ciphers: str | None = _setting(
        None,
        "--ciphers",
        metavar="LIST",
        help="OpenSSL cipher list (default: Python's).",
        section="TLS",
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
        for name, flag in (
            ("uwsgi_allow_ips", "uwsgi-allow-ips"),
            ("proxy_allow_ips", "proxy-allow-from"),
        ):
            try:
                TrustedProxies.parse(getattr(self, name))
            except ValueError as error:
                raise ValueError(str(error).replace("forwarded-allow-ips", flag)) from None
        if isinstance(self.proxy_protocol, bool):  # gunicorn before 24: a switch
            object.__setattr__(self, "proxy_protocol", "auto" if self.proxy_protocol else "off")
        if self.proxy_protocol not in PROXY_MODES:
            modes = ", ".join(PROXY_MODES)
            raise ValueError(f"proxy_protocol must be one of {modes}, not {self.proxy_protocol!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}"
            )
        if self.cert_reqs not in (0, 1, 2):
            raise ValueError("cert_reqs must be 0, 1 or 2")
        if isinstance(self.max_worker_memory, str):  # Settings(max_worker_memory="512MB")
            object.__setattr__(self, "max_worker_memory", parse_size(self.max_worker_memory))
        for name in OCTAL:  # serve(socket_mode="660"): octal, as a config file reads it
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, convert(name, getattr(self, name)))
        for name in (
            "max_requests",
            "max_requests_jitter",
            "umask",
            "max_connections",
            "max_worker_memory",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.socket_mode is not None and not 0 <= self.socket_mode <= 0o777:
            raise ValueError(
                f"socket_mode: {self.socket_mode:o} is not a permission mode; use octal "
                "digits such as 660 (owner and group may connect)"
            )
        if self.root_path:
            from .proxy import mount_prefix

            root = mount_prefix(self.root_path)
            if root is None:
                raise ValueError(
                    f"root_path: {self.root_path!r} is not a URL path; write it as the proxy "
                    "mounts the app, such as /app"
                )
            object.__setattr__(self, "root_path", root)
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
        object.__setattr__(self, "cpu_affinity", str(self.cpu_affinity).lower())
        affinity.check(self.cpu_affinity)
        if self.thread_policy not in THREAD_POLICIES:
            raise ValueError(f"thread_policy must be one of {', '.join(THREAD_POLICIES)}")
        object.__setattr__(self, "reload_extra_files", tuple(self.reload_extra_files))
        if self.reload_engine not in RELOAD_ENGINES:
            raise ValueError(f"reload_engine must be one of {', '.join(RELOAD_ENGINES)}")
        if self.logconfig_dict is not None and not isinstance(self.logconfig_dict, dict):
            raise ValueError("logconfig_dict must be a dictionary for logging.config.dictConfig")
        if self.syslog_facility.lower() not in SYSLOG_FACILITIES:
            raise ValueError(
                f"syslog_facility: {self.syslog_facility!r} is not a syslog facility; use one "
                f"of {', '.join(sorted(SYSLOG_FACILITIES))}"
            )
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


# Settings written in octal by custom; text given for them is read as octal.
OCTAL = ("umask", "socket_mode")
TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
FALSE = frozenset({"false", "0", "no", "off", "n", "f", ""})


def convert(name: str, value: Any) -> Any:
    """A setting given as text (a config file, an environment variable, a flag), converted
    as gunicorn converts it: `workers = os.getenv("WEB_CONCURRENCY", "4")` is 4. Values
    that are not text pass through; raises `ValueError` naming the setting and the value.
    """
    kind = next((f.type for f in dataclasses.fields(Settings) if f.name == name), None)
    if not isinstance(value, str):
        if kind in ("str", "str | None") and type(value) is int:
            return str(value)  # `user = 1000`: a uid, as gunicorn takes it
        if name == "forwarded_allow_ips" and isinstance(value, (list, tuple)):
            return ",".join(str(item) for item in value)  # gunicorn takes a list here too
        return value
    if kind == "tuple[str, ...]":
        return (value,)  # `bind = "0.0.0.0:8000"`: one item, as gunicorn takes it
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
        if name == "socket_mode":
            # chmod's and uWSGI's chmod-socket's spelling: "660" is octal, as is "0o660".
            return int(text, 8) if text.isdigit() else int(text, 0)
        if kind in ("int", int):
            return int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text)
        if kind in ("float", float):
            return float(text)
        if kind in ("bool", bool):
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise ValueError(text)
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}
        octal = {"umask": "an octal umask such as 022", "socket_mode": "an octal mode such as 660"}
        what = octal.get(name) or expected.get(str(kind), str(kind))
        raise ValueError(f"{name}: {value!r} is not {what}") from None
    return value


def as_config(settings: Settings) -> dict[str, Any]:
    """`settings` as plain data that a config file reads back unchanged.

    Modes are octal text ("0o660"): a bare number in a config file is taken as it is, so
    0o660 printed as 432 would come back as a different mode, and 660 as no mode at all.
    """
    values = dataclasses.asdict(settings)
    for name in OCTAL:
        if values[name] is not None:
            values[name] = f"0o{values[name]:03o}"
    return values


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
        flags = ", ".join(f"`{flag}`" for flag in meta["flags"]) or "(config file)"
        rows.append(f"| `{field.name}` | {flags} | {shown} | {meta['help']} |")
    return "\n".join(rows)
