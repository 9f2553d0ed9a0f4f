"""What ``bench`` measures: one entry per scenario, all served by ``benchmarks.apps``."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import apps

MIB = 1 << 20
POST_BYTES = 64 << 10  # must match benchmarks/post64k.lua
POST_SCRIPT = "benchmarks/post64k.lua"
IDLE_CONNECTIONS = 1000
CROWD_CONNECTIONS = 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str  # MODULE:ATTRIBUTE in benchmarks.apps
    expect_body: bytes  # what one sanity request must return (status 200)
    connections: int = 64
    wrk_threads: int = 1
    wrk_extra: tuple[str, ...] = ()  # e.g. headers or a lua script
    post_body: bytes | None = None  # sanity request method: POST with this body, else GET
    idle_connections: int = 0  # held open by benchmarks.idle_holder during each run
    workers: int = 1
    pinned: bool = True
    app_sleep_s: float = 0.0  # per-request sleep in the app: ideal req/s = threads / sleep
    # Small responses keep a saturated server on its CPU the whole time; big bodies and
    # sleeping apps leave it waiting on sockets or timers, so low CPU means nothing there.
    cpu_bound: bool = True

    def ideal_rps(self, threads: int) -> float | None:
        return threads / self.app_sleep_s if self.app_sleep_s else None


_HELLO = "benchmarks.apps:hello"
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hello", "13-byte body, 64 keep-alive connections", _HELLO, apps.HELLO_BODY),
    Scenario(
        "close",
        "Connection: close: a new connection per request",
        _HELLO,
        apps.HELLO_BODY,
        wrk_extra=("-H", "Connection: close"),
    ),
    Scenario(
        "big",
        "1 MiB response with Content-Length",
        "benchmarks.apps:big",
        apps.BIG_BODY,
        cpu_bound=False,
    ),
    Scenario(
        "stream",
        "1 MiB streamed as 64 x 16 KiB chunks, no Content-Length",
        "benchmarks.apps:stream",
        apps.STREAM_CHUNK * apps.STREAM_CHUNKS,
        cpu_bound=False,
    ),
    Scenario(
        "post",
        "64 KiB POST, the app reads it and answers its length",
        "benchmarks.apps:echo_length",
        str(POST_BYTES).encode(),
        wrk_extra=("-s", POST_SCRIPT),
        post_body=b"p" * POST_BYTES,
    ),
    Scenario(
        "sleep",
        "app sleeps 10 ms per request (I/O bound)",
        "benchmarks.apps:sleepy",
        apps.HELLO_BODY,
        app_sleep_s=apps.SLEEP_SECONDS,
        cpu_bound=False,
    ),
    Scenario(
        "idle",
        f"hello while {IDLE_CONNECTIONS:,} idle keep-alive connections are held open",
        _HELLO,
        apps.HELLO_BODY,
        idle_connections=IDLE_CONNECTIONS,
    ),
    Scenario(
        "crowd",
        f"hello on {CROWD_CONNECTIONS:,} active keep-alive connections",
        _HELLO,
        apps.HELLO_BODY,
        connections=CROWD_CONNECTIONS,
    ),
    Scenario(
        "flask",
        "Flask route returning JSON (jsonify), 8 threads",
        "benchmarks.framework_apps:flask_json",
        apps.FLASK_JSON_BODY,
    ),
    Scenario(
        "django",
        "Django view rendering a template through the default middleware, 8 threads",
        "benchmarks.framework_apps:django_page",
        apps.DJANGO_PAGE_BODY,
    ),
    Scenario(
        "multicore",
        "hello with -w 2 worker processes, unpinned (wrk shares the cores)",
        _HELLO,
        apps.HELLO_BODY,
        wrk_threads=2,
        workers=2,
        pinned=False,
    ),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


def select(names: list[str] | None) -> list[Scenario]:
    """Scenarios by name, in the canonical order (all of them for None).

    Raises:
        ValueError: an unknown name.
    """
    if not names:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIO_NAMES)}")
    return [s for s in SCENARIOS if s.name in names]
