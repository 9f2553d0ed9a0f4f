"""Serve a WSGI app with bjoern: one process, one thread (bjoern has no thread pool)."""

from __future__ import annotations

import importlib
import sys

from benchmarks.runners._common import load_app, parse_args


def main() -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    bjoern = importlib.import_module("bjoern")
    bjoern.run(load_app(args.app), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
