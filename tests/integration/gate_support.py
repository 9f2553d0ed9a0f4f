"""A gate the test holds and an app request waits at: the app (lifecycle_app's ``/hold``)
connects to it and blocks until the test releases it, so a request is in flight exactly as
long as the test says, with no sleeping on either side."""

from __future__ import annotations

import socket
from types import TracebackType

ACCEPT_TIMEOUT = 10.0  # seconds for the app's request to reach the gate


class Gate:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(ACCEPT_TIMEOUT)
        self.port: int = self._server.getsockname()[1]

    def release(self) -> None:
        """Let the one request waiting at the gate (or about to) go on."""
        held, _ = self._server.accept()
        held.close()

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
