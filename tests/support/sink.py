"""A `parser.RequestSink` that records what a parser reports: for parser tests without a
connection."""

from __future__ import annotations

from wsgiserve.environ import Environ
from wsgiserve.errors import HTTPError
from wsgiserve.parser import Parser


class Sink:
    """Records what the parser reports, as the connection would receive it."""

    def __init__(self) -> None:
        self.heads: list[tuple[Environ, str, bool, int | None]] = []
        self.body = b""
        self.ended = 0
        self.refused: list[tuple[HTTPError, bool]] = []
        self.parsers: list[Parser] = []
        self.flags: list[tuple[bool, bool]] = []  # (expect_continue, upgrade) of each head

    def on_head(
        self,
        environ: Environ,
        version: str,
        keep_alive: bool,
        length: int | None,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        self.flags.append((expect_continue, upgrade))
        self.heads.append((environ, version, keep_alive, length))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_end(self) -> None:
        self.ended += 1

    def on_refused(self, error: HTTPError, in_body: bool) -> None:
        self.refused.append((error, in_body))

    def use_parser(self, parser: Parser) -> None:
        self.parsers.append(parser)
