"""Answers with its worker's collector settings: `gc.get_threshold()` and how many objects
are frozen. With GC_APP_OWN set, it sets its own threshold when imported."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

if os.environ.get("GC_APP_OWN"):
    gc.set_threshold(1234, 5, 5)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
