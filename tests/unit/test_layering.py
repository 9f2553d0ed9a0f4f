"""The package's layering rules, checked by walking imports (STYLE.md, "lessons" 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "wsgiserve"

# Worker-side and pure modules: they run in worker threads or hold no I/O at all.
LOOP_FREE = ["accesslog", "body", "call", "config", "environ", "errors", "exchange", "flow", "logs",
             "pool", "proxy", "reload", "response", "settings", "tls", "validate"]


def imported_modules(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: record the sibling module
                names.add("." + (node.module or "").split(".")[0])
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", LOOP_FREE)
def test_worker_side_modules_never_import_the_loop(module: str) -> None:
    imports = imported_modules(module)
    assert not imports & {"asyncio", "uvloop"}, f"{module}.py imports the event loop"
    assert not imports & {".protocol", ".server", ".cli"}, f"{module}.py imports a higher layer"


def test_nothing_imports_the_cli() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("cli", "__main__"):
            continue
        assert ".cli" not in imported_modules(path.stem), f"{path.name} imports the CLI"
