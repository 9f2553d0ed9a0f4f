"""The package's layering rules, checked by walking imports (STYLE.md, "lessons" 1).

Every module has a layer; a module imports only from its own layer or those below,
`TYPE_CHECKING` imports included, and the import graph has no circle. A new module
fails here until it is given a layer: the rules deny by default.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "wsgiserve"

# Lowest first. Within a layer, imports flow one way too (no circle).
LAYERS: dict[str, tuple[str, ...]] = {
    # Leaves: data, rules, formatting and start-up helpers; no app threads, no loop.
    "leaves": (
        "version",
        "errors",
        "state",
        "affinity",
        "heap",
        "settings",
        "proxy",
        "environ",
        "validate",
        "accesslog",
        "metrics",
        "gunicorn_settings",
        "config",
        "reference",
        "appload",
        "listeners",
        "tls",
        "logs",
        "reload",
        "control",
        "pidfile",
        "demo",
        "throttle",
        "balance",
        "chunk_lines",
    ),
    # The app-thread side and the hop: what a worker thread runs, and the pool.
    "app-thread": ("body", "flow", "pool", "exchange", "response", "call"),
    # The loop side: parsing a connection's bytes, the connection, one process's server.
    "loop": ("parser", "uwsgi", "proxy_protocol", "context", "connection", "server"),
    # The process level: running servers, workers, the supervisor, the command line.
    "process": (
        "build_info",
        "serving",
        "worker",
        "roster",
        "supervisor",
        "cli",
        "__init__",
        "__main__",
    ),
}
LAYER_OF = {module: rank for rank, layer in enumerate(LAYERS.values()) for module in layer}
# Worker-side and pure modules run in worker threads or hold no I/O at all.
LOOP_FREE = sorted(module for module, rank in LAYER_OF.items() if rank <= 1)


def modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def imported_siblings(module: str) -> set[str]:
    """The package modules `module` imports, `TYPE_CHECKING` blocks included."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.module:
                names.add(node.module.split(".")[0])
            else:  # `from . import x`
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wsgiserve"):
            parts = (node.module or "").split(".")
            names.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "wsgiserve":
                    names.add(parts[1] if len(parts) > 1 else "__init__")
    return names


def imported_top_level(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", modules())
def test_every_module_has_a_layer_and_imports_only_downward(module: str) -> None:
    assert module in LAYER_OF, f"{module}.py has no layer: add it to LAYERS"
    for imported in imported_siblings(module):
        assert imported in LAYER_OF, f"{module}.py imports {imported}, which has no layer"
        assert LAYER_OF[imported] <= LAYER_OF[module], (
            f"{module}.py ({list(LAYERS)[LAYER_OF[module]]}) imports {imported} "
            f"({list(LAYERS)[LAYER_OF[imported]]}), a higher layer"
        )


def test_the_import_graph_has_no_circle() -> None:
    graph = {module: imported_siblings(module) for module in modules()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError with the circle


@pytest.mark.parametrize("module", LOOP_FREE)
def test_worker_side_modules_never_import_the_loop(module: str) -> None:
    imports = imported_top_level(module)
    assert not imports & {"asyncio", "uvloop"}, f"{module}.py imports the event loop"


def test_nothing_imports_the_cli() -> None:
    for module in modules():
        if module in ("cli", "__main__"):
            continue
        assert "cli" not in imported_siblings(module), f"{module}.py imports the CLI"
