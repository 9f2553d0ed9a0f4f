"""Configuration as a user writes it: a gunicorn-style -c file with hooks, pyproject.toml,
$WSGISERVE_CMD_ARGS and their precedence, --check-config, app specs and factories, gunicorn
flags we accept or refuse, $WEB_CONCURRENCY, -e, --chdir and --pythonpath.

Every server runs in a subprocess and is stopped by its pid; config files are written into
``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import eventually

from .support import (
    APPS,
    LISTENING,
    REPO_ROOT,
    START_TIMEOUT,
    ServerProcess,
    StartServer,
    StderrLog,
    run_cli,
    start_server,
    subprocess_env,
)

pytestmark = pytest.mark.timeout(90)

APP = f"{APPS}.ops_app:app"
OPS = f"{APPS}.ops_app"
BOOTING = re.compile(r"Booting worker with pid: (\d+)")
WAIT = 20.0  # seconds: the bound on every wait below
EXIT_USAGE = 2
EXIT_CONFIG = 1
FAST = ("--graceful-timeout", "5", "--threads", "2")

Launch = Callable[..., ServerProcess]


# -- helpers -------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The server environment without the variables these tests set themselves."""
    env = subprocess_env()
    for name in ("WSGISERVE_CMD_ARGS", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "PORT"):
        env.pop(name, None)
    env.update(extra)
    return env


def run_in(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m wsgiserve ARGS`` to completion in ``cwd``, with ``env`` (default: clean)."""
    return subprocess.run(
        [sys.executable, "-m", "wsgiserve", *args],
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def print_config(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    result = run_in(cwd, *args, "--print-config", env=env)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start ``python -m wsgiserve ARGS`` exactly as given (no ``-b`` added) with ``env``;
    return once it logged ``listening`` addresses. Every server is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        *args: str, env: Mapping[str, str] | None = None, listening: int = 1
    ) -> ServerProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsgiserve", *args],
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        server = ServerProcess(proc, StderrLog(proc.stderr))
        started.append(server)
        matches = server.log.wait_for(LISTENING, count=listening, timeout=START_TIMEOUT)
        server.addresses = [m["address"] for m in matches]
        return server

    yield start
    for server in started:
        server.stop()


def booted(server: ServerProcess, count: int) -> set[int]:
    return {int(m[1]) for m in server.log.wait_for(BOOTING, count=count, timeout=WAIT)}


def get(server: ServerProcess, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10.0, headers={"Connection": "close"})


def wait_for_lines(path: Path, pattern: str, count: int) -> list[str]:
    """Poll ``path`` until ``count`` lines match ``pattern``; those lines."""
    text = ""
    lines: list[str] = []

    def enough() -> bool:
        nonlocal text, lines
        text = path.read_text() if path.exists() else ""
        lines = [line for line in text.splitlines() if re.search(pattern, line)]
        return len(lines) >= count

    assert eventually(enough, WAIT), f"{count} lines matching {pattern!r} in {path}; got:\n{text}"
    return lines


# -- a gunicorn-style config file ----------------------------------------------------------

HOOKED_CONF = """\
import os

workers = 2
bind = "127.0.0.1:0"
keepalive = 7
accesslog = {access!r}
loglevel = "info"
threads = 2
graceful_timeout = 5

MARKS = {marks!r}


def _mark(name, line):
    with open(os.path.join(MARKS, name), "a") as file:
        file.write(line + "\\n")


def when_ready(server):
    _mark("ready.txt", f"when_ready {{server.pid}}")


def post_fork(server, worker):
    _mark("forks.txt", f"post_fork {{worker.pid}}")


def pre_request(worker, req):
    _mark("requests.txt", f"pre_request {{worker.pid}} {{req.method}} {{req.path}}")


def post_request(worker, req, environ, resp):
    _mark("requests.txt", f"post_request {{worker.pid}} {{req.path}} {{resp.status_code}} "
          f"{{resp.status}}")


def worker_exit(server, worker):
    _mark("exits.txt", f"worker_exit {{worker.pid}}")


def on_exit(server):
    _mark("exits.txt", f"on_exit {{server.pid}}")
"""


@pytest.fixture
def hooked_conf(tmp_path: Path) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    conf = tmp_path / "wsgiserve.conf.py"
    conf.write_text(HOOKED_CONF.format(access=str(tmp_path / "access.log"), marks=str(marks)))
    return conf


def test_conf_file_settings_are_resolved(hooked_conf: Path, tmp_path: Path) -> None:
    resolved = print_config(REPO_ROOT, APP, "-c", str(hooked_conf))

    assert resolved["workers"] == 2
    assert resolved["bind"] == ["127.0.0.1:0"]
    assert resolved["keep_alive"] == 7
    assert resolved["access_logfile"] == str(tmp_path / "access.log")
    assert resolved["log_level"] == "info"


def test_conf_file_runs_the_server_and_its_hooks(
    launch: Launch, hooked_conf: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    server = launch(APP, "-c", str(hooked_conf))
    workers = booted(server, 2)

    # bind from the file: port 0 was honoured (the default would be 127.0.0.1:8000)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    assert not server.url.endswith(":8000")
    assert server.worker_pids() == workers
    assert wait_for_lines(marks / "ready.txt", "when_ready", 1) == [f"when_ready {server.pid}"]
    forks = wait_for_lines(marks / "forks.txt", "post_fork", 2)
    assert {int(line.split()[1]) for line in forks} == workers

    for index in range(5):
        assert get(server, f"/hello?n={index}").status_code == 200

    pre = wait_for_lines(marks / "requests.txt", r"^pre_request \d+ GET /hello$", 5)
    post = wait_for_lines(marks / "requests.txt", r"^post_request \d+ /hello 200 200 OK$", 5)
    assert len(pre) == len(post) == 5
    assert {int(line.split()[1]) for line in pre} <= workers
    logged = wait_for_lines(tmp_path / "access.log", r"GET /hello\?n=\d", 5)
    assert len(logged) == 5

    assert server.stop() == 0
    exits = (marks / "exits.txt").read_text().splitlines()
    assert f"on_exit {server.pid}" in exits
    assert {int(line.split()[1]) for line in exits if line.startswith("worker_exit")} == workers


def test_conf_file_with_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf.py"
    conf.write_text("workers = 2\nwrokers = 3\n")

    result = run_cli(APP, "-c", str(conf), "--check-config")

    assert result.returncode != 0
    assert "wrokers" in result.stderr
    assert "Traceback" not in result.stderr


# -- precedence ----------------------------------------------------------------------------


def test_precedence_command_line_env_conf_pyproject_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wsgiserve]\nthreads = 3\n")
    conf = tmp_path / "threads.conf.py"
    conf.write_text("threads = 5\n")
    env_layer = clean_env(WSGISERVE_CMD_ARGS="--threads 7")

    everything = print_config(tmp_path, APP, "-c", str(conf), "--threads", "9", env=env_layer)
    no_cli = print_config(tmp_path, APP, "-c", str(conf), env=env_layer)
    no_env = print_config(tmp_path, APP, "-c", str(conf))
    no_conf = print_config(tmp_path, APP)
    (tmp_path / "pyproject.toml").unlink()
    defaults = print_config(tmp_path, APP)

    assert everything["threads"] == 9
    assert no_cli["threads"] == 7
    assert no_env["threads"] == 5
    assert no_conf["threads"] == 3
    assert defaults["threads"] == 8


def test_pyproject_is_read_from_chdir(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wsgiserve]\nthreads = 3\nkeepalive = 11\n")

    resolved = print_config(REPO_ROOT, APP, "--chdir", str(tmp_path))

    assert resolved["threads"] == 3
    assert resolved["keep_alive"] == 11


# -- --check-config ------------------------------------------------------------------------


def test_check_config_passes_when_the_app_loads() -> None:
    result = run_cli(APP, "--check-config")

    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        pytest.param(f"{APPS}.broken_app:app", "refuses to import", id="import-error"),
        pytest.param(f"{APPS}.no_such_module:app", "no_such_module", id="missing-module"),
        pytest.param(f"{OPS}:no_such_app", "no_such_app", id="missing-attribute"),
    ],
)
def test_check_config_fails_when_the_app_does_not_load(spec: str, named: str) -> None:
    result = run_cli(spec, "--check-config")

    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# -- app specs and factories ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([f"{OPS}:create_app()"], {"args": [], "kwargs": {}}, id="call"),
        pytest.param(
            [f'{OPS}:create_app("x", flag=True)'],
            {"args": ["x"], "kwargs": {"flag": True}},
            id="literal-args",
        ),
        pytest.param(
            ["--factory", f"{OPS}:create_app"], {"args": [], "kwargs": {}}, id="--factory"
        ),
    ],
)
def test_factory_specs_reach_the_factory(
    server_factory: StartServer, argv: list[str], expected: dict[str, Any]
) -> None:
    *flags, spec = argv
    server = server_factory(spec, *flags, "--graceful-timeout", "5", threads=2)

    response = get(server, "/args")

    assert response.status_code == 200
    assert response.json() == expected


@pytest.mark.parametrize("mode", [["--check-config"], ["-b", "127.0.0.1:0", *FAST]])
def test_non_literal_factory_arguments_are_refused(mode: list[str]) -> None:
    result = run_cli(f"{OPS}:create_app(os.getcwd())", *mode)

    assert result.returncode != 0
    assert "literal" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# -- gunicorn compatibility ----------------------------------------------------------------


def test_gevent_worker_class_is_refused_with_a_reason() -> None:
    result = run_cli(APP, "-k", "gevent", "-b", "127.0.0.1:0")

    assert result.returncode == EXIT_CONFIG
    assert "gevent" in result.stderr
    assert "thread" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "warning"),
    [
        pytest.param(["-k", "gthread"], r"--worker-class gthread is ignored", id="gthread"),
        pytest.param(
            ["--spew"], r"--spew is ignored: wsgiserve has no line-by-line trace", id="spew"
        ),
    ],
)
def test_accepted_gunicorn_flags_warn_and_serve(
    server_factory: StartServer, flags: list[str], warning: str
) -> None:
    server = server_factory(APP, *flags, "--graceful-timeout", "5", threads=2)

    assert get(server, "/hello").text == "hello"
    assert re.search(warning, server.log.text), server.log.text


def test_worker_connections_is_the_max_connections_limit(
    server_factory: StartServer, tmp_path: Path
) -> None:
    resolved = print_config(tmp_path, APP, "--worker-connections", "1000")
    assert resolved["max_connections"] == 1000

    server = server_factory(APP, "--worker-connections", "1000", *FAST[:2], threads=2)
    assert get(server, "/hello").text == "hello"


@pytest.mark.parametrize("flag", ["--daemon", "-D"])
def test_daemon_is_refused(flag: str) -> None:
    result = run_cli(APP, flag, "-b", "127.0.0.1:0")

    assert result.returncode == EXIT_CONFIG
    assert "not supported" in result.stderr
    assert "foreground" in result.stderr


# -- the environment, directories -----------------------------------------------------------


def test_web_concurrency_sets_the_worker_count(launch: Launch) -> None:
    server = launch(APP, "-b", "127.0.0.1:0", *FAST, env=clean_env(WEB_CONCURRENCY="2"))

    workers = booted(server, 2)

    assert server.worker_pids() == workers
    assert len(workers) == 2


def test_workers_flag_beats_web_concurrency(tmp_path: Path) -> None:
    resolved = print_config(tmp_path, APP, "-w", "1", env=clean_env(WEB_CONCURRENCY="3"))
    assert resolved["workers"] == 1


def test_env_flag_is_visible_to_the_app(server_factory: StartServer) -> None:
    server = server_factory(APP, "-e", "FOO=bar", "-e", "EMPTY=", *FAST[:2], threads=2)

    assert get(server, "/env?name=FOO").text == "bar"
    assert get(server, "/env?name=EMPTY").text == ""


def test_chdir_and_pythonpath_load_an_app_from_elsewhere(
    server_factory: StartServer, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    libs = tmp_path / "libs"
    site.mkdir()
    libs.mkdir()
    (libs / "helper_on_path.py").write_text('VALUE = "from-pythonpath"\n')
    (site / "data.txt").write_text("relative-file")
    (site / "chdir_app.py").write_text(
        "import os\n"
        "from helper_on_path import VALUE\n\n\n"
        "def app(environ, start_response):\n"
        "    with open('data.txt') as file:\n"
        "        body = f'{os.getcwd()}|{VALUE}|{file.read()}'.encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )

    server = server_factory(
        "chdir_app:app", "--chdir", str(site), "--pythonpath", str(libs), *FAST[:2], threads=2
    )
    cwd, value, data = get(server, "/").text.split("|")

    assert os.path.realpath(cwd) == os.path.realpath(site)
    assert value == "from-pythonpath"
    assert data == "relative-file"


def test_gunicorn_conf_py_in_the_current_directory_is_loaded_without_c(tmp_path: Path) -> None:
    # gunicorn loads ./gunicorn.conf.py by itself; after the rename it was silently dropped.
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\nthreads = 5\n")
    env = clean_env()
    result = run_in(tmp_path, APP, "--print-config", env=env)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert (resolved["workers"], resolved["threads"]) == (3, 5)
    assert "gunicorn.conf.py" in result.stderr  # says which file it used


def test_gunicorn_cmd_args_are_read_below_wsgiserve_cmd_args(tmp_path: Path) -> None:
    gunicorn_only = print_config(tmp_path, APP, env=clean_env(GUNICORN_CMD_ARGS="-w 5 --threads 3"))
    assert (gunicorn_only["workers"], gunicorn_only["threads"]) == (5, 3)
    both = print_config(
        tmp_path,
        APP,
        env=clean_env(
            GUNICORN_CMD_ARGS="-w 5 -b 127.0.0.1:7001", WSGISERVE_CMD_ARGS="-w 2 -b 127.0.0.1:7002"
        ),
    )
    assert both["workers"] == 2
    assert both["bind"] == ["127.0.0.1:7002"]  # replaced, not added to


def test_port_binds_every_interface_when_no_bind_is_given(tmp_path: Path) -> None:
    # A PaaS container says where to listen in $PORT; listening on loopback only serves nobody.
    assert print_config(tmp_path, APP, env=clean_env(PORT="8123"))["bind"] == ["0.0.0.0:8123"]
    given = print_config(tmp_path, APP, "-b", "127.0.0.1:9000", env=clean_env(PORT="8123"))
    assert given["bind"] == ["127.0.0.1:9000"]


def test_numbers_given_as_strings_convert_as_gunicorn_converts_them(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "import os\n"
        'workers = os.getenv("WEB_CONCURRENCY", "4")\n'
        'timeout = "60"\n'
        'preload_app = "true"\n'
        'umask = "007"\n'
    )
    resolved = print_config(tmp_path, APP, "-c", str(conf))
    assert (resolved["workers"], resolved["timeout"]) == (4, 60.0)
    assert (resolved["preload_app"], resolved["umask"]) == (True, "0o007")


def test_a_value_that_is_no_number_is_named_with_the_setting(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf.py"
    conf.write_text('workers = "four"\n')
    result = run_in(tmp_path, APP, "-c", str(conf), "--print-config")
    assert result.returncode == 1
    assert "workers: 'four' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--umask", "-m"])
@pytest.mark.parametrize(("given", "umask"), [("007", "0o007"), ("0o22", "0o022"), ("18", "0o022")])
def test_umask_flags_read_as_octal_where_written_so(
    tmp_path: Path, flag: str, given: str, umask: str
) -> None:
    assert print_config(tmp_path, APP, flag, given)["umask"] == umask


def test_print_config_shows_modes_in_octal_and_reads_back_as_is(tmp_path: Path) -> None:
    # 0o660 was printed as 432, which a config file then read as the mode 0o660 = 432 decimal.
    printed = print_config(tmp_path, APP, "--socket-mode", "660", "--umask", "027")
    assert (printed["socket_mode"], printed["umask"]) == ("0o660", "0o027")
    conf = tmp_path / "printed.conf.py"
    conf.write_text("".join(f"{name} = {value!r}\n" for name, value in printed.items()))
    assert print_config(tmp_path, "-c", str(conf)) == printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus",), "unrecognized arguments: --bogus"),
        (("--umask", "nine"), "umask: 'nine' is not an octal umask such as 022"),
        (("--threads", "many"), "invalid int value: 'many'"),
    ],
)
def test_a_flag_error_is_one_line_and_a_hint_not_the_usage(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_in(tmp_path, APP, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("wsgiserve: error: ")
    assert message in lines[0]
    assert lines[1:] == ["See `wsgiserve --help` for the options."]
    assert "usage:" not in result.stderr


def test_check_config_fails_on_a_bind_that_cannot_work(tmp_path: Path) -> None:
    # --check-config said OK, then the start failed on the bind.
    result = run_in(tmp_path, APP, "-b", "http://127.0.0.1:8020", "--check-config")
    assert result.returncode == 1
    assert "a bind is HOST:PORT, not a URL. Use -b 127.0.0.1:8020." in result.stderr
    assert print_config(tmp_path, APP, "-b", "8020")["bind"] == ["8020"]  # read as a port


@pytest.mark.parametrize(
    ("conf", "says"),
    [
        ("workerz = 3\n", "unknown setting 'workerz'; did you mean workers?"),
        (
            "def post_forkk(server, worker):\n    pass\n",
            "post_forkk is no hook; did you mean post_fork?",
        ),
        ("def helper():\n    return 3\nworkers = helper()\n", None),  # a helper is fine
    ],
)
def test_a_misspelled_setting_or_hook_gets_a_did_you_mean(
    tmp_path: Path, conf: str, says: str | None
) -> None:
    path = tmp_path / "conf.py"
    path.write_text(conf)
    result = run_in(tmp_path, APP, "-c", str(path), "--print-config")
    if says is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert says in result.stderr


MORE_HOOKS = """\
import os

bind = "127.0.0.1:0"
workers = 1
threads = 2
graceful_timeout = 5
MARKS = {marks!r}


def _mark(line):
    with open(os.path.join(MARKS, "hooks.txt"), "a") as file:
        file.write(line + "\\n")


def pre_fork(server, worker):
    _mark(f"pre_fork {{worker.pid}} {{worker.age}}")


def post_worker_init(worker):
    _mark(f"post_worker_init {{worker.pid}}")


def nworkers_changed(server, new_value, old_value):
    _mark(f"nworkers_changed {{new_value}} {{old_value}}")


def child_exit(server, worker):
    _mark(f"child_exit {{worker.pid}}")


def worker_int(worker):
    _mark(f"worker_int {{worker.pid}}")
"""


def test_gunicorns_other_hooks_are_called_at_gunicorns_moments(
    launch: Launch, tmp_path: Path
) -> None:
    # They were accepted and never called (or, for pre_fork, called with worker=None).
    marks = tmp_path / "marks"
    marks.mkdir()
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(MORE_HOOKS.format(marks=str(marks)))
    hooks = marks / "hooks.txt"
    server = launch(APP, "-c", str(conf))
    (first,) = booted(server, 1)
    assert wait_for_lines(hooks, r"^pre_fork \[booting\] \d+$", 1)
    assert wait_for_lines(hooks, rf"^post_worker_init {first}$", 1)

    server.proc.send_signal(signal.SIGTTIN)
    assert wait_for_lines(hooks, r"^nworkers_changed 2 1$", 1)
    booted(server, 2)
    server.proc.send_signal(signal.SIGTTOU)
    assert wait_for_lines(hooks, r"^nworkers_changed 1 2$", 1)
    assert wait_for_lines(hooks, r"^child_exit \d+$", 1)

    (survivor,) = server.worker_pids()
    os.kill(survivor, signal.SIGINT)  # a worker's own Ctrl-C
    assert wait_for_lines(hooks, rf"^worker_int {survivor}$", 1)


# -- gunicorn's settings, end to end (tests/unit/test_gunicorn_settings.py walks every row) ------


def test_a_gunicorn_conf_py_with_what_wsgiserve_does_not_do_starts_and_says_so(
    launch: Launch, tmp_path: Path
) -> None:
    # Each of these stopped the server with "unknown setting" before.
    access = tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        f"""\
import os
wsgi_app = {APP!r}
bind = "127.0.0.1:0"
workers = os.getenv("WEB_CONCURRENCY", "1")
threads = "2"
graceful_timeout = 5
daemon = False
worker_class = "gthread"
tmp_upload_dir = "/var/tmp"
umask = 0o007
logconfig_dict = {{
    "version": 1,
    "handlers": {{"file": {{"class": "logging.FileHandler", "filename": {str(access)!r}}}}},
    "loggers": {{"wsgiserve.access": {{"handlers": ["file"], "level": "INFO"}}}},
}}
"""
    )
    server = launch("-c", str(conf))

    assert get(server, "/hello").text == "hello"
    wait_for_lines(access, r'"GET /hello HTTP/1.1" 200', 1)
    log = server.log.text
    assert "tmp_upload_dir is ignored: request bodies stream" in log
    assert "worker_class is ignored: wsgiserve always runs an event loop" in log
    assert "daemon" not in log
    assert "unknown setting" not in log


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("daemon = True", "daemon is not supported: wsgiserve stays in the foreground"),
        ("raw_paste_global_conf = ['a=1']", "raw_paste_global_conf is not supported: PasteDeploy"),
        ("paste = 'production.ini'", "paste is not supported: PasteDeploy is not supported"),
    ],
)
def test_a_refused_gunicorn_setting_stops_with_the_reason(
    tmp_path: Path, line: str, reason: str
) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(line + "\n")
    result = run_in(tmp_path, APP, "-b", "127.0.0.1:0")
    assert result.returncode == EXIT_CONFIG
    assert reason in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_syslog_flags_send_both_logs_to_a_udp_syslog(launch: Launch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as syslog:
        syslog.bind(("127.0.0.1", 0))
        syslog.settimeout(WAIT)
        port = syslog.getsockname()[1]
        flags = f"--log-syslog --log-syslog-to udp://127.0.0.1:{port} --log-syslog-prefix shop -R"
        server = launch(APP, "-b", "127.0.0.1:0", *FAST, env=clean_env(GUNICORN_CMD_ARGS=flags))
        assert get(server, "/hello").text == "hello"
        lines: list[str] = []
        while not any('"GET /hello HTTP/1.1" 200' in line for line in lines):
            lines.append(syslog.recv(65536).decode("utf-8"))  # bounded by the timeout
    supervisor = server.proc.pid
    assert f"<14>shop[{supervisor}]: [INFO] Starting wsgiserve" in "".join(lines)
    assert lines[-1].startswith("<14>shop[")  # user facility, info: the access line


APP_READING_A_TEMPLATE = """
from pathlib import Path

BODY = Path("templates/page.html").read_bytes()


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def test_reload_extra_file_restarts_the_workers_when_a_template_changes(tmp_path: Path) -> None:
    (tmp_path / "templated.py").write_text(APP_READING_A_TEMPLATE)
    (tmp_path / "templates").mkdir()
    page = tmp_path / "templates" / "page.html"
    page.write_text("one")
    server = start_server(
        "templated:app",
        "--reload",
        "--reload-engine",
        "poll",  # gunicorn's choice for mounts where change events never arrive
        "--reload-extra-file",
        "templates/*.html",
        "--chdir",
        str(tmp_path),
        *FAST[:2],
    )
    try:
        assert get(server, "/").text == "one"
        page.write_text("two")
        assert eventually(lambda: get(server, "/").text == "two", WAIT), server.log.text
        assert "page.html changed; restarting workers" in server.log.text
        assert re.search(r"--reload: watching .* with polling", server.log.text)
    finally:
        assert server.stop() == 0
