"""Every flag the README names is one the command takes: guides and tables cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

from wsgiserve.cli import build_parser

README = Path(__file__).parents[2] / "README.md"
# Flags of other commands the README shows (useradd, ruff, `wsgiserve status`, the reference).
OTHER_COMMANDS = {"--check", "--json", "--no-create-home", "--system", "--readme"}


def test_every_flag_in_the_readme_exists() -> None:
    known = set(build_parser()._option_string_actions)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]+)", README.read_text(encoding="utf-8")))
    unknown = sorted(named - known - OTHER_COMMANDS)
    assert not unknown, f"README.md names flags the command does not take: {unknown}"
