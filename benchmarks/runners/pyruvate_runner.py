"""Serve a WSGI app with pyruvate: one process, ``--threads`` worker threads.

pyruvate runs with its defaults, which close the connection after every response.
Its keep-alive and chunked options do not work in pyruvate 1.6.1 (checked by hand
against this benchmark's apps): with ``max_reuse_count > 0`` the second request on a
connection never gets an answer, and ``chunked_transfer=True`` appends a chunked
terminator (``0\\r\\n\\r\\n``) to responses that have a Content-Length.
"""

from __future__ import annotations

import importlib
import sys

from benchmarks.runners._common import load_app, parse_args


def main() -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    pyruvate = importlib.import_module("pyruvate")
    pyruvate.serve(load_app(args.app), args.bind, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
