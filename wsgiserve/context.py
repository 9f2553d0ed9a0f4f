"""What every connection of one server shares, frozen: a connection never sees `Server`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .environ import Environ
from .exchange import ServerClock
from .flow import ResponseBudget
from .parser import Parser, RequestSink
from .proxy import TrustedProxies
from .settings import Settings
from .state import Limits


class LoopSidePool(Protocol):
    """The thread pool as a connection uses it, on the loop thread (`pool.WorkerPool`)."""

    @property
    def in_flight(self) -> int: ...
    @property
    def crowded_at(self) -> int: ...
    def submit(self, job: Any) -> None: ...
    def finished(self) -> None: ...
    def post(self, callback: Callable[[Any], None], argument: Any) -> None: ...
    def after_batch(self, callback: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """Settings, clock, the pool's loop-side face and the per-server templates.

    Attributes:
        settings: the server's settings.
        limits: the timeout rules' settings (`state.Limits`).
        clock: shared values the loop refreshes once a second (time, Date header).
        pool: the thread pool (loop-side methods only).
        proxies: the trusted proxies.
        environ_base: the environ keys every request of the server shares.
        head_limit: bytes a request head may take before it is refused (431).
        opened, closed: called with the connection when it opens and closes.
        post, limit_concurrency, body_preread: `pool.post` and two settings, kept at hand
            for the per-request path.
        budget: the response bytes this worker holds for clients that stopped reading.
        make_parser: the parser of the listener's protocol, for a connection (the sink)
            and its environ template (the connection's addresses).
        warn: log a warning about the set-up (%-format, arguments), once a minute at most.
        note: the same at INFO, for what clients do (timeouts).
    """

    settings: Settings
    limits: Limits
    clock: ServerClock
    pool: LoopSidePool
    proxies: TrustedProxies
    environ_base: Environ
    head_limit: int
    opened: Callable[[Any], None]
    closed: Callable[[Any], None]
    post: Callable[[Callable[[Any], None], Any], None]
    budget: ResponseBudget
    limit_concurrency: int
    body_preread: int
    make_parser: Callable[[RequestSink, Environ], Parser]
    warn: Callable[..., None]
    note: Callable[..., None]


def limits_from(settings: Settings) -> Limits:
    """The timeout rules' view of the settings."""
    return Limits(
        keep_alive=settings.keep_alive,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        write_timeout=settings.write_timeout,
        min_upload_rate=settings.min_upload_rate,
        min_download_rate=settings.min_download_rate,
        rate_grace=settings.min_rate_grace,
    )
