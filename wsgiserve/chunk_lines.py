"""Sans-I/O: chunk-size lines with whitespace around `;` and `=`, made canonical for llhttp.

RFC 9112 §7.1.1 allows BWS in chunk extensions:

    chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    chunk-ext-val = token / quoted-string

llhttp (httptools 0.9) refuses that BWS and has no leniency for it that does not also
accept `5 ` with no extension. `ChunkLines` sits in front of llhttp while a chunked body is
parsed: it follows the chunk framing (size line, then size bytes of data and their CRLF,
then the next size line; after the last chunk's line it touches nothing) and removes the
BWS of a size line only when the whole line matches the grammar above. Every other line
passes unchanged, so llhttp still decides what is refused.

Why our framing agrees with llhttp's: llhttp ends a size line at its first LF (a CR must be
followed by LF, and CR or LF anywhere else in the line is refused), its size is the line's
leading hex digits and nothing else may precede `;` or the CRLF, and it refuses anything but
CRLF after the data (tests/unit/test_chunk_lines.py pins each of these). So a line we pass
is a line llhttp reads, with the same size, or one it refuses. The parser checks it anyway,
after every piece and as the message ends (`settled`, `finished`): llhttp must have taken
exactly the body bytes our framing passed, and end the message where we saw the last chunk;
on any difference the request is refused. A byte that llhttp treats as data is never
rewritten as a size line, nor the reverse.

Cost: a piece whose size lines have no BWS is handed on as the same object, never rebuilt.
Each chunk costs one search for its LF and one `int` of its size line, or one `startswith`
when its size line is the same as the one before.
"""

from __future__ import annotations

import re

_HEX = re.compile(rb"[0-9A-Fa-f]+")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9110 §5.6.4: qdtext and quoted-pair; obs-text is %x80-FF.
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXT = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
_LINE_WITH_BWS = re.compile(rb"[0-9A-Fa-f]+(?:" + _EXT + rb")+\r\n")
# In a line that matches the grammar, whitespace outside quoted strings is BWS.
_BWS_OR_QUOTED = re.compile(rb"(" + _QUOTED + rb")|[ \t]+")
_CR = 13


class ChunkLineTooLong(Exception):
    """A chunk-size line grew past the limit before its LF arrived."""


def _without_bws(match: re.Match[bytes]) -> bytes:
    return match[1] or b""


def canonical(line: bytes) -> bytes:
    """`line` (a whole chunk-size line, CRLF included) without its BWS when it matches the
    RFC 9112 §7.1.1 grammar; otherwise `line` itself, for llhttp to judge."""
    if _LINE_WITH_BWS.fullmatch(line) is None:
        return line
    return _BWS_OR_QUOTED.sub(_without_bws, line)


def _extended(data: bytes, pos: int, lf: int) -> tuple[int, bytes]:
    """The size of the line `data[pos : lf + 1]` (-1: it has none), and the line without
    its BWS if it has BWS the grammar allows (else b"")."""
    digits = _HEX.match(data, pos, lf)
    if digits is None:
        return -1, b""
    after = digits.end()
    if data[after] != _CR and (data.find(b" ", after, lf) >= 0 or data.find(b"\t", after, lf) >= 0):
        line = data[pos : lf + 1]
        fixed = canonical(line)
        if fixed is not line:
            return int(digits.group(), 16), fixed
    return int(digits.group(), 16), b""


class ChunkLines:
    """Follows the chunk framing of one chunked body and rewrites its size lines.

    `feed` takes the body's bytes as they arrive (and whatever follows the body in the same
    read) and returns what to hand llhttp now. A size line split across reads is held
    until its LF, up to `limit` bytes. Loop thread only, like the parser that owns it."""

    __slots__ = (
        "_data",
        "_held",
        "_left",
        "_limit",
        "_same",
        "_same_size",
        "begin",
        "done",
        "lost",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = b""  # the start of a size line whose LF has not arrived
        self._left = 0  # bytes of chunk data and its CRLF still to pass before a size line
        self._data = 0  # body bytes of the chunks whose size lines were passed
        # The last plain size line (CRLF included) and its size: clients send chunks of one
        # size, and a line seen before is recognised without a search or a parse.
        self._same = b""
        self._same_size = 0
        self.done = False  # the last chunk's line was passed: nothing more is touched
        self.begin = 0  # where in the last result the last chunk's line ends (0: not in it)
        self.lost = False  # a line without a size was passed: llhttp must refuse it

    def feed(self, data: bytes) -> bytes:
        """Return the bytes llhttp is to parse now: `data`, with the held start of a size
        line before it, a size line's BWS removed, and the start of an unfinished size line
        held back. Raises `ChunkLineTooLong`."""
        self.begin = 0
        if self.done:
            return data
        if self._held:
            if data.find(b"\n") < 0:
                self._hold(self._held + data)
                return b""
            data = self._held + data  # copied only when a size line was split
            self._held = b""
        pos = self._left
        size = len(data)
        if pos >= size:
            self._left = pos - size
            return data
        parts: list[bytes] = []
        copied = 0  # `data[:copied]` is in `parts`
        body = self._data
        same, same_size = self._same, self._same_size
        while True:
            if same and data.startswith(same, pos):
                lf = pos + len(same) - 1
                chunk_size = same_size
            else:
                lf = data.find(b"\n", pos)
                if lf < 0:
                    self._hold(data[pos:])
                    self._left = 0
                    end = pos
                    break
                line = data[pos : lf + 1]
                try:
                    # The usual line: its size alone. `int` reads more than the grammar (it
                    # strips whitespace, CR and LF included, and takes "0x", "_" and a sign);
                    # such a line passes unchanged and llhttp refuses it, so our size only
                    # ever counts for a line llhttp reads the same.
                    chunk_size = int(line, 16)
                    same, same_size = line, chunk_size
                except ValueError:
                    chunk_size, fixed = _extended(data, pos, lf)
                    if fixed:
                        parts.append(data[copied:pos])
                        parts.append(fixed)
                        copied = lf + 1
            if chunk_size < 0:
                self.lost = self.done = True  # llhttp refuses the line; `settled` checks it
                end = size
                break
            body += chunk_size
            if chunk_size == 0:
                self.done = True
                self.begin = sum(map(len, parts)) + lf + 1 - copied  # in the result
                end = size
                break
            pos = lf + 1 + chunk_size + 2  # the data and its CRLF, which llhttp checks
            if pos >= size:
                self._left = pos - size
                end = size
                break
        self._data = body
        self._same, self._same_size = same, same_size
        if not parts:
            return data if end == size else data[:end]
        parts.append(data[copied:end])
        return b"".join(parts)

    def _hold(self, line: bytes) -> None:
        if len(line) > self._limit:
            raise ChunkLineTooLong
        self._held = line

    def settled(self, body_received: int) -> bool:
        """After llhttp parsed the last result without an error: whether it took exactly the
        body bytes our framing passed."""
        if self.lost:
            return False
        left = self._left - 2  # the rest of the current chunk's data, then its CRLF
        return body_received == self._data - (left if left > 0 and not self.done else 0)

    def finished(self, body_received: int) -> bool:
        """llhttp ended the message: whether our framing ended it too, with as many bytes."""
        return self.done and not self.lost and body_received == self._data
