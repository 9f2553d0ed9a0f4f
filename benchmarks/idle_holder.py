"""Hold idle keep-alive connections open against a server, for ``bench``'s idle scenario.

Opens ``--connections`` connections (at most ``--concurrency`` handshakes at a time),
sends one ``GET`` on each, reads the response and then leaves the connection idle. It
prints ``ready open=N pending=P failed=F`` once every connection has answered or
``--ready-timeout`` has passed, then ``status open=N closed=C`` on each SIGUSR1.
Connections the server closes are counted, not reopened. It exits on SIGTERM/SIGINT
or after ``--lifetime`` seconds, whichever comes first, so it can never outlive a
benchmark by much.

Run: ``python -m benchmarks.idle_holder --port 8000 --connections 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys
from dataclasses import dataclass


@dataclass
class Counts:
    open: int = 0
    closed: int = 0  # answered, then closed by the server while idle
    failed: int = 0  # could not connect, or no proper answer

    def line(self, word: str, pending: int | None = None) -> str:
        extra = f" pending={pending}" if pending is not None else ""
        return f"{word} open={self.open}{extra} closed={self.closed} failed={self.failed}"


async def _read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)


async def _hold(
    host: str,
    port: int,
    request: bytes,
    counts: Counts,
    gate: asyncio.Semaphore,
    answered: asyncio.Queue[bool],
) -> None:
    writer: asyncio.StreamWriter | None = None
    reported = False
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await _read_response(reader)
        counts.open += 1
        answered.put_nowait(True)
        reported = True
        await reader.read(1)  # returns b"" when the server closes the idle connection
        counts.open -= 1
        counts.closed += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        if reported:
            counts.open -= 1
            counts.closed += 1
        else:
            counts.failed += 1
            answered.put_nowait(False)
    finally:
        if writer is not None:
            writer.close()


async def hold(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    counts = Counts()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(counts.line("status"), flush=True))
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    gate = asyncio.Semaphore(args.concurrency)
    answered: asyncio.Queue[bool] = asyncio.Queue()
    tasks = [
        asyncio.create_task(_hold(args.host, args.port, request, counts, gate, answered))
        for _ in range(args.connections)
    ]
    deadline = loop.time() + args.ready_timeout
    done = 0
    while done < args.connections and (left := deadline - loop.time()) > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(answered.get(), left)
            done += 1
    print(counts.line("ready", pending=args.connections - done), flush=True)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), args.lifetime)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes at a time")
    parser.add_argument("--ready-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--lifetime", type=float, default=300.0, help="seconds, at most")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return asyncio.run(hold(args))


if __name__ == "__main__":
    sys.exit(main())
