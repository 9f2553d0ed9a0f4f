"""What wsgiserve does with each of gunicorn 27's settings: one row per setting, one source.

The rows cover every setting a WSGI config file, command line or `GUNICORN_CMD_ARGS` can carry
(gunicorn's ASGI, HTTP/2 and "dirty worker" settings are left out; hooks live in `config`).
Each row says one of three things:

- honoured: same meaning, under our name (`setting`) when it differs; `setting` None means
  wsgiserve already behaves that way and there is nothing to set;
- warned: accepted, and a one-line warning says what wsgiserve does instead;
- refused: stopping is kinder than running on without it; the note says why.

A value equal to gunicorn's own default asks for nothing, so it is accepted without a word
(`daemon = False` in a config file is fine). `config.normalise` (config files, pyproject.toml),
`cli` (the flags of warned and refused rows) and the README's "Coming from gunicorn" table are
all derived from `ROWS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from .settings import FALSE, TRUE

Outcome = Literal["honoured", "warned", "refused"]

_ANY = object()  # a default no value equals: every value set gets the row's outcome
NOT_YET = "not supported yet"
_FOREGROUND = (
    "wsgiserve stays in the foreground; run it under systemd, a container or a process "
    "manager, which restart it and collect its logs"
)
_PASTE = "PasteDeploy is not supported: name the app as MODULE:APP"
_GREEN = {"gevent", "eventlet", "tornado"}
# Worker classes whose job wsgiserve's own worker does: accepted with a warning.
WORKER_CLASSES_OK = {
    "sync",
    "gthread",
    "egg:gunicorn#sync",
    "egg:gunicorn#gthread",
    "gunicorn.workers.sync.SyncWorker",
    "gunicorn.workers.gthread.ThreadWorker",
    "uvicorn.workers.UvicornWorker",
    "uvicorn_worker.UvicornWorker",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One gunicorn setting and what wsgiserve does with it."""

    name: str  # gunicorn's name, as a config file spells it
    flags: tuple[str, ...]  # gunicorn's command-line flags, short ones first
    outcome: Outcome
    setting: str | None = None  # honoured: our name (None: nothing to set)
    note: str = ""  # warned: what wsgiserve does instead; refused: why; honoured: a difference
    default: Any = _ANY  # gunicorn's default: setting it to this is accepted silently
    switch: Any = None  # the value a flag without an argument stores (store_true: True)
    many: bool = False  # the flag may repeat (argparse "append")
    judge: Callable[[Any], tuple[Outcome, str] | None] | None = None  # per-value exceptions

    def outcome_for(self, value: Any) -> tuple[Outcome, str] | None:
        """What setting this row to `value` does, or None when it is accepted silently."""
        if self.default is not _ANY and _as_default_type(value, self.default) == self.default:
            return None
        if self.judge is not None:
            special = self.judge(value)
            if special is not None:
                return special
        if self.outcome == "honoured":
            return None
        return self.outcome, self.note


def _as_default_type(value: Any, default: Any) -> Any:
    """`value` read as gunicorn reads text for a setting like `default`: `daemon = "false"` is
    False, `control_socket_mode = "0600"` is 0o600."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if isinstance(default, bool):
        return True if text in TRUE else False if text in FALSE else value
    if isinstance(default, int):
        try:
            return int(text, 8) if text[:1] == "0" and text.isdigit() else int(text, 0)
        except ValueError:
            return value
    return value


def _worker_class(value: Any) -> tuple[Outcome, str] | None:
    name = str(value)
    if name.lower() in _GREEN or "gevent" in name or "eventlet" in name:
        return (
            "refused",
            f"{name} workers are not supported: wsgiserve runs your app in a thread pool behind "
            "an asyncio event loop, and monkey-patching green threads would break the loop. "
            "Drop it and size --threads for your I/O wait instead",
        )
    if name not in WORKER_CLASSES_OK:
        return (
            "refused",
            f"worker class {name} cannot be loaded: wsgiserve has one worker (an event loop "
            "plus a thread pool); drop it",
        )
    return None


def _honoured(name: str, flags: tuple[str, ...], setting: str | None = None, **kw: Any) -> Row:
    return Row(name, flags, "honoured", setting or name, **kw)


def _warned(name: str, flags: tuple[str, ...], note: str, **kw: Any) -> Row:
    return Row(name, flags, "warned", None, note, **kw)


def _refused(name: str, flags: tuple[str, ...], note: str, **kw: Any) -> Row:
    return Row(name, flags, "refused", None, note, **kw)


ROWS: tuple[Row, ...] = (
    # -- config file, app -------------------------------------------------------------------
    Row("config", ("-c", "--config"), "honoured", None, "the command line only, as in gunicorn"),
    Row("wsgi_app", (), "honoured", None, "the app when none is named on the command line"),
    Row("check_config", ("--check-config",), "honoured", None, switch=True),
    Row("print_config", ("--print-config",), "honoured", None, switch=True),
    # -- binding ----------------------------------------------------------------------------
    _honoured("bind", ("-b", "--bind"), many=True),
    _honoured("backlog", ("--backlog",)),
    _honoured("reuse_port", ("--reuse-port",), switch=True),
    # -- workers ----------------------------------------------------------------------------
    _honoured("workers", ("-w", "--workers")),
    _warned(
        "worker_class",
        ("-k", "--worker-class"),
        "wsgiserve always runs an event loop plus a thread pool; size it with --threads",
        default="sync",
        judge=_worker_class,
    ),
    _honoured("threads", ("--threads",), note="wsgiserve's default is 8, gunicorn's 1"),
    _honoured(
        "worker_connections",
        ("--worker-connections",),
        "max_connections",
        note="open connections per worker, idle keep-alive ones included",
    ),
    _honoured("max_requests", ("--max-requests",)),
    _honoured("max_requests_jitter", ("--max-requests-jitter",)),
    _honoured(
        "timeout",
        ("-t", "--timeout"),
        note="also logs a request running longer, with its thread's stack",
    ),
    _honoured("graceful_timeout", ("--graceful-timeout",)),
    _honoured("keepalive", ("--keep-alive",), "keep_alive"),
    _honoured("preload_app", ("--preload",), switch=True),
    # -- limits -----------------------------------------------------------------------------
    _honoured("limit_request_line", ("--limit-request-line",)),
    _honoured("limit_request_fields", ("--limit-request-fields",)),
    _honoured("limit_request_field_size", ("--limit-request-field_size",)),
    # -- development ------------------------------------------------------------------------
    _honoured("reload", ("--reload",), switch=True),
    _honoured("reload_engine", ("--reload-engine",), note="inotify: through watchfiles"),
    _honoured("reload_extra_files", ("--reload-extra-file",), many=True),
    _warned(
        "spew",
        ("--spew",),
        "wsgiserve has no line-by-line trace; use a debugger such as pdb instead",
        default=False,
        switch=True,
    ),
    # -- process ----------------------------------------------------------------------------
    _warned(
        "sendfile",
        ("--no-sendfile",),
        "the event loop writes every response; there is no sendfile to turn off",
        default=None,
        switch=False,
    ),
    _honoured("chdir", ("--chdir",)),
    _refused("daemon", ("-D", "--daemon"), _FOREGROUND, default=False, switch=True),
    _honoured("raw_env", ("-e", "--env"), many=True),
    _honoured("pidfile", ("-p", "--pid")),
    _warned(
        "worker_tmp_dir",
        ("--worker-tmp-dir",),
        "heartbeats go through a pipe, not a temporary file",
        default=None,
    ),
    _honoured("user", ("-u", "--user")),
    _honoured("group", ("-g", "--group")),
    _honoured("umask", ("-m", "--umask")),
    _honoured("initgroups", ("--initgroups",), switch=True),
    _warned(
        "tmp_upload_dir",
        (),
        "request bodies stream to the app as they arrive; nothing is spooled to disk",
        default=None,
    ),
    _honoured("pythonpath", ("--pythonpath",)),
    _refused("paste", ("--paste", "--paster"), _PASTE, default=None),
    _refused("raw_paste_global_conf", ("--paste-global",), _PASTE, default=[], many=True),
    _honoured("proc_name", ("-n", "--name")),
    _warned(
        "default_proc_name",
        (),
        "the process title is wsgiserve's unless proc_name (-n) is set",
        default="gunicorn",
    ),
    # -- proxies ----------------------------------------------------------------------------
    _warned(
        "secure_scheme_headers",
        (),
        "X-Forwarded-Proto and Forwarded are believed from --forwarded-allow-ips peers only; "
        "the header names are fixed",
        default={
            "X-FORWARDED-PROTOCOL": "ssl",
            "X-FORWARDED-PROTO": "https",
            "X-FORWARDED-SSL": "on",
        },
    ),
    _honoured("forwarded_allow_ips", ("--forwarded-allow-ips",)),
    _warned(
        "forwarder_headers",
        ("--forwarder-headers",),
        "a trusted peer's SCRIPT_NAME header sets SCRIPT_NAME, as by default; PATH_INFO and "
        "REMOTE_USER never come from request headers",
        default="SCRIPT_NAME,PATH_INFO",
    ),
    _warned(
        "header_map",
        ("--header-map",),
        "a header whose name holds '_' is always dropped (gunicorn's 'drop'), except a "
        "trusted peer's SCRIPT_NAME",
        default="drop",
    ),
    _honoured(
        "proxy_protocol",
        ("--proxy-protocol",),
        note="v1, v2 or auto; True, gunicorn's old spelling, means auto",
    ),
    _honoured("proxy_allow_ips", ("--proxy-allow-from",)),
    _honoured("protocol", ("--protocol",), note="http or uwsgi"),
    _honoured("uwsgi_allow_ips", ("--uwsgi-allow-from",)),
    _honoured("root_path", ("--root-path",)),
    # -- HTTP parsing -----------------------------------------------------------------------
    _warned(
        "strip_header_spaces",
        ("--strip-header-spaces",),
        "whitespace before a header's colon is always refused (RFC 9112 section 5.1)",
        default=False,
        switch=True,
    ),
    _warned(
        "permit_obsolete_folding",
        ("--permit-obsolete-folding",),
        "obsolete line folding is always refused (RFC 9112 section 5.2)",
        default=False,
        switch=True,
    ),
    _warned(
        "permit_unconventional_http_method",
        ("--permit-unconventional-http-method",),
        "only the methods httptools knows are accepted",
        default=False,
        switch=True,
    ),
    _warned(
        "permit_unconventional_http_version",
        ("--permit-unconventional-http-version",),
        "only HTTP/1.0 and HTTP/1.1 are accepted",
        default=False,
        switch=True,
    ),
    _warned(
        "casefold_http_method",
        ("--casefold-http-method",),
        "methods are case-sensitive (RFC 9110 section 9.1); a lower-case one is refused",
        default=False,
        switch=True,
    ),
    _warned(
        "http_parser",
        ("--http-parser",),
        "wsgiserve always parses with httptools (llhttp, in C)",
        default="auto",
    ),
    # -- logging ----------------------------------------------------------------------------
    _honoured("accesslog", ("--access-logfile",), "access_logfile"),
    _honoured("access_log_format", ("--access-logformat",), "access_logformat"),
    _honoured("errorlog", ("--error-logfile", "--log-file"), "error_logfile"),
    _honoured("loglevel", ("--log-level",), "log_level"),
    _honoured("capture_output", ("--capture-output",), switch=True),
    _warned(
        "logger_class",
        ("--logger-class",),
        "no logger class is loaded; shape the logs with --log-config or logconfig_dict",
        default="gunicorn.glogging.Logger",
    ),
    _honoured(
        "logconfig",
        ("--log-config",),
        "log_config",
        note="an .ini file for fileConfig, as in gunicorn; .json and .toml files also work",
    ),
    _honoured("logconfig_dict", ()),
    _honoured("logconfig_json", ("--log-config-json",), "log_config", note="read as JSON"),
    _honoured("syslog", ("--log-syslog",), switch=True),
    _honoured("syslog_addr", ("--log-syslog-to",)),
    _honoured("syslog_prefix", ("--log-syslog-prefix",)),
    _honoured("syslog_facility", ("--log-syslog-facility",)),
    _honoured(
        "disable_redirect_access_to_syslog", ("--disable-redirect-access-to-syslog",), switch=True
    ),
    Row(
        "enable_stdio_inheritance",
        ("-R", "--enable-stdio-inheritance"),
        "honoured",
        None,
        "always so: wsgiserve never detaches from its stdio",
        switch=True,
    ),
    # -- metrics ----------------------------------------------------------------------------
    _honoured("statsd_host", ("--statsd-host",)),
    _honoured("statsd_prefix", ("--statsd-prefix",)),
    _warned(
        "dogstatsd_tags",
        ("--dogstatsd-tags",),
        "statsd metrics are sent without tags; --metrics-bind serves labelled Prometheus metrics",
        default="",
    ),
    _warned(
        "enable_backlog_metric",
        ("--enable-backlog-metric",),
        "no backlog metric; --metrics-bind serves queue and busy-thread gauges",
        default=False,
        switch=True,
    ),
    _warned(
        "control_socket",
        ("--control-socket",),
        "the status socket sits beside the pidfile: `wsgiserve status -p PIDFILE`",
    ),
    _warned(
        "control_socket_mode",
        ("--control-socket-mode",),
        "the status socket beside the pidfile is readable by its owner only",
        default=0o600,  # shown as 384
    ),
    _warned(
        "control_socket_disable",
        ("--no-control-socket",),
        "there is a status socket only when a pidfile (-p) is given",
        default=False,
        switch=True,
    ),
    # -- TLS --------------------------------------------------------------------------------
    _honoured("keyfile", ("--keyfile",)),
    _honoured("certfile", ("--certfile",)),
    _warned(
        "ssl_version",
        ("--ssl-version",),
        "TLS 1.2 or newer is negotiated; use the ssl_context hook to pin versions",
        default=2,  # ssl.PROTOCOL_SSLv23, i.e. PROTOCOL_TLS: negotiate
    ),
    _honoured("cert_reqs", ("--cert-reqs",)),
    _honoured("ca_certs", ("--ca-certs",)),
    _warned(
        "suppress_ragged_eofs",
        ("--suppress-ragged-eofs",),
        "a TLS connection closed without close_notify ends like a plain close",
        default=True,
        switch=True,
    ),
    _warned(
        "do_handshake_on_connect",
        ("--do-handshake-on-connect",),
        "the event loop runs every TLS handshake before the first request is read",
        default=False,
        switch=True,
    ),
    _honoured("ciphers", ("--ciphers",)),
)

BY_NAME = {row.name: row for row in ROWS}

# Config-file names we spell differently: gunicorn's name -> ours.
ALIASES = {
    row.name: row.setting
    for row in ROWS
    if row.outcome == "honoured" and row.setting and row.setting != row.name
}
# Rows that map onto no setting of ours: warned, refused, or honoured by behaviour alone.
UNMAPPED = frozenset(row.name for row in ROWS if row.setting is None)


def describe(row: Row, defaults: bool = True) -> str:
    """What happens to `row`, in one line for the README table and --help (`defaults`: say
    that gunicorn's default is accepted silently)."""
    if row.outcome == "honoured":
        what = "honoured"
        if row.setting and row.setting != row.name:
            what += f", as `{row.setting}`"
        if row.note:
            what += f" ({row.note})"
    elif row.outcome == "warned":
        what = f"accepted with a warning: {row.note}"
    else:
        what = f"refused: {row.note}"
    if row.judge is _worker_class:
        what += " (gthread and uvicorn.workers.UvicornWorker alike); gevent, eventlet, "
        what += "tornado and any other class are refused"
    if defaults and row.outcome != "honoured" and row.default is not _ANY:
        shown = f"`{row.default!r}`" if len(repr(row.default)) < 30 else ""
        what += f" (silent when set to gunicorn's default {shown})".replace(" )", ")")
    return what


def markdown_table() -> str:
    """The README's "Coming from gunicorn" table: every row, name and flags -> what happens."""
    lines = ["| gunicorn setting | flags | wsgiserve |", "|---|---|---|"]
    for row in ROWS:
        flags = ", ".join(f"`{flag}`" for flag in row.flags) or "(config file only)"
        lines.append(f"| `{row.name}` | {flags} | {describe(row)} |")
    return "\n".join(lines)
