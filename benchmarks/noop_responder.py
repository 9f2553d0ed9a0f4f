"""Do-nothing HTTP/1.1 responder: the ceiling for ``bench_quick``.

A single asyncio ``Protocol`` on uvloop that feeds bytes to
``httptools.HttpRequestParser`` and, for every complete request, writes one fixed
keep-alive ``200 Hello, World!`` response. No threads, no WSGI, no header
handling beyond what the parser does internally. Anything a real server does on
top of this costs throughput, which is what the ratio in ``bench_quick`` shows.

Run: ``python -m benchmarks.noop_responder --port 8000``
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import httptools
import uvloop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
# Same response for clients that asked to close (HTTP/1.0 or Connection: close).
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class NoopProtocol(asyncio.Protocol):
    """Answers every parsed request with the fixed response."""

    __slots__ = ("_closing", "_parser", "_transport")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport; it quacks like one.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(BAD_REQUEST)

    # httptools callback (only callbacks that exist are invoked, so keep it to one).
    def on_message_complete(self) -> None:
        if self._closing:
            return
        if self._parser.should_keep_alive():
            if self._transport is not None:
                self._transport.write(RESPONSE)
        else:
            self._finish(RESPONSE_CLOSE)

    def _finish(self, payload: bytes) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.write(payload)
            self._transport.close()


async def serve(host: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(NoopProtocol, host, port, backlog=backlog)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"noop_responder ready on http://{bound[0]}:{bound[1]}/", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
