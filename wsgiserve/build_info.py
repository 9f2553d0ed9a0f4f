"""Which build is running: pure Python, or with the request path compiled by mypyc.

Standard library only: setup.py reads `COMPILED_MODULES` from this file before the
package's dependencies are installed.
"""

from __future__ import annotations

import importlib.machinery
import sys

# The modules a request passes through, compiled by `make compiled` (WSGISERVE_COMPILE=1).
COMPILED_MODULES = (
    "body",
    "call",
    "chunk_lines",
    "connection",
    "context",
    "environ",
    "exchange",
    "flow",
    "parser",
    "pool",
    "proxy",
    "response",
    "state",
    "validate",
)


def compiled() -> list[str]:
    """The modules of this package that were loaded from a compiled extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = []
    for name in COMPILED_MODULES:
        module = sys.modules.get(f"wsgiserve.{name}")
        if module is not None and (getattr(module, "__file__", None) or "").endswith(suffixes):
            found.append(name)
    return found


def describe() -> str:
    """For --version and the startup log: 'compiled, 14 modules' or 'pure Python'."""
    for name in COMPILED_MODULES:
        __import__(f"wsgiserve.{name}")
    found = compiled()
    return f"compiled, {len(found)} modules" if found else "pure Python"
