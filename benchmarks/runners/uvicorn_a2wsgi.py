"""Serve a WSGI app with uvicorn through a2wsgi's ``WSGIMiddleware``.

uvicorn's own ``--interface wsgi`` is deprecated; a2wsgi runs the app in a thread
pool of ``--threads`` threads. uvicorn needs an import string to start several
workers, so the app and thread count travel to ``create`` in environment variables.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from benchmarks.runners._common import load_app, parse_args

_APP_VAR = "BENCH_A2WSGI_APP"
_THREADS_VAR = "BENCH_A2WSGI_THREADS"


def create() -> Any:
    """uvicorn factory: the WSGI app named in the environment, wrapped for ASGI."""
    a2wsgi = importlib.import_module("a2wsgi")
    app = load_app(os.environ[_APP_VAR])
    return a2wsgi.WSGIMiddleware(app, workers=int(os.environ[_THREADS_VAR]))


def main() -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    os.environ[_APP_VAR] = args.app
    os.environ[_THREADS_VAR] = str(args.threads)
    uvicorn = importlib.import_module("uvicorn")
    uvicorn.run(
        "benchmarks.runners.uvicorn_a2wsgi:create",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
