"""Build hook for the optional compiled build (`make compiled`).

By default this adds nothing: the package is pure Python and installs anywhere. With
WSGISERVE_COMPILE=1 the modules a request passes through are compiled with mypyc (as black
and mypy ship themselves); Python then imports each compiled module in place of its .py.
"""

from __future__ import annotations

import os
import runpy
from typing import Any

from setuptools import setup

COMPILE = os.environ.get("WSGISERVE_COMPILE") == "1"


def compiled_extensions() -> list[Any] | None:
    """The compiled modules, or None while mypyc is not installed yet."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        return None
    modules = runpy.run_path("wsgiserve/build_info.py")["COMPILED_MODULES"]
    return mypycify(
        [f"wsgiserve/{name}.py" for name in modules],
        opt_level="3",
        # The shared runtime goes inside the package, not beside it in site-packages.
        group_name="wsgiserve.compiled",
    )


extensions = compiled_extensions() if COMPILE else []
# pip's isolated build asks for its requirements before it builds: ask for mypy then.
setup(
    ext_modules=extensions or [],
    setup_requires=["mypy>=1.10"] if extensions is None else [],
)
