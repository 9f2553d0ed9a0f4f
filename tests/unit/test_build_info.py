"""Which build runs: `make test` runs the suite on pure Python, `make test-compiled` again on
the mypyc build, where every module on the request path must come from its extension (a
compiled run that silently imported the .py files would prove nothing)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import wsgiserve
from wsgiserve import build_info

EXPECT_COMPILED = os.environ.get("WSGISERVE_EXPECT_COMPILED") == "1"
PACKAGE = Path(wsgiserve.__file__).parent


def test_every_listed_module_exists() -> None:
    for name in build_info.COMPILED_MODULES:
        assert (PACKAGE / f"{name}.py").is_file(), name


def test_the_suite_runs_on_the_build_it_expects() -> None:
    for name in build_info.COMPILED_MODULES:
        importlib.import_module(f"wsgiserve.{name}")
    if EXPECT_COMPILED:
        assert build_info.compiled() == list(build_info.COMPILED_MODULES)
        assert build_info.describe() == f"compiled, {len(build_info.COMPILED_MODULES)} modules"
    else:
        assert build_info.compiled() == []
        assert build_info.describe() == "pure Python"
