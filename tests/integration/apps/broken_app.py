"""A module that fails while being imported, for the CLI's app-load error path."""

from __future__ import annotations

raise RuntimeError("broken_app refuses to import")
