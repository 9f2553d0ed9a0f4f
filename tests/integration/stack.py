"""A web server (nginx, Apache) in front of wsgiserve instances, as one thing to start and stop.

The front is stopped first so it never forwards to an instance that is already gone, and the
instances are stopped even when stopping the front fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .support import ServerProcess


class Front(Protocol):
    """What a stack needs of its web server: where clients reach it and how to stop it."""

    @property
    def url(self) -> str: ...

    def stop(self) -> object: ...


FrontT = TypeVar("FrontT", bound=Front)


@dataclass
class Stack(Generic[FrontT]):
    """``front`` in front of ``servers``; a context manager that stops them all."""

    servers: list[ServerProcess]
    front: FrontT

    @property
    def url(self) -> str:
        """The base URL a client uses: the front's."""
        return self.front.url

    def stop(self) -> None:
        try:
            self.front.stop()
        finally:
            for server in self.servers:
                server.stop()

    def __enter__(self) -> Stack[FrontT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
