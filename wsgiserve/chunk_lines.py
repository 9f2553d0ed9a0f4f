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
leading hex digits, and it refuses anything but CRLF after the data. The parser checks it
anyway, as each size line is reported and as the message ends (`confirm`, `settled`,
`finished`), and refuses the request on any difference: a byte that llhttp treats as data
is never taken for a size line, nor the reverse.

Cost: a line without SP or HTAB is never copied; each chunk costs one search for its LF.
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


class ChunkLines:
    """Follows the chunk framing of one chunked body and rewrites its size lines.

    `feed` takes the body's bytes as they arrive (and whatever follows the body in the same
    read) and returns what to hand llhttp now. A size line split across reads is held
    until its LF, up to `limit` bytes. Loop thread only, like the parser that owns it."""

    __slots__ = ("_data", "_held", "_left", "_limit", "begin", "confirmed", "done", "starts")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = b""  # the start of a size line whose LF has not arrived
        self._left = 0  # bytes of chunk data and its CRLF still to pass before a size line
        self._data = 0  # body bytes before the next size line, by our framing
        self.done = False  # the last chunk's line was passed: nothing more is touched
        self.begin = 0  # where in the last result the last chunk's line ends (0: not in it)
        # The body bytes before each size line passed by the last `feed`, in order (-1: a
        # line without a size, which llhttp must refuse); `confirmed` of them were reported.
        self.starts: list[int] = []
        self.confirmed = 0

    def feed(self, data: bytes) -> bytes:
        """Return the bytes llhttp is to parse now: `data`, with the held start of a size
        line before it, a size line's BWS removed, and the start of an unfinished size line
        held back. Raises `ChunkLineTooLong`."""
        self.begin = 0
        if self.done:
            return data
        self.starts.clear()
        self.confirmed = 0
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
        starts = self.starts
        while True:
            lf = data.find(b"\n", pos)
            if lf < 0:
                self._hold(data[pos:])
                self._left = 0
                end = pos
                break
            hexdigits = _HEX.match(data, pos, lf)
            if hexdigits is None:
                starts.append(-1)  # llhttp refuses it; if it did not, `confirm` would
                self.done = True
                end = size
                break
            chunk_size = int(hexdigits.group(), 16)
            after = hexdigits.end()
            if data[after] != _CR and (
                data.find(b" ", after, lf) >= 0 or data.find(b"\t", after, lf) >= 0
            ):
                line = data[pos : lf + 1]
                fixed = canonical(line)
                if fixed is not line:
                    parts.append(data[copied:pos])
                    parts.append(fixed)
                    copied = lf + 1
            starts.append(self._data)
            self._data += chunk_size
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
        if not parts:
            return data if end == size else data[:end]
        parts.append(data[copied:end])
        return b"".join(parts)

    def _hold(self, line: bytes) -> None:
        if len(line) > self._limit:
            raise ChunkLineTooLong
        self._held = line

    def confirm(self, body_received: int) -> bool:
        """llhttp reported the next size line, with `body_received` body bytes before it:
        whether that is where our framing has it."""
        index = self.confirmed
        self.confirmed = index + 1
        return index < len(self.starts) and self.starts[index] == body_received

    def settled(self, body_received: int) -> bool:
        """After llhttp parsed the last result: whether it reported every size line passed
        and exactly the body bytes passed."""
        if self.confirmed != len(self.starts):
            return False
        if self.done:
            return True
        left = self._left - 2  # the rest of the current chunk's data, then its CRLF
        return body_received == self._data - (left if left > 0 else 0)

    def finished(self) -> bool:
        """llhttp ended the message: whether our framing ended it too, at the same line."""
        return self.done and self.confirmed == len(self.starts) and self.starts[-1] >= 0
