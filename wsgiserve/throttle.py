"""A log line for a condition that may repeat many times a second: logged once per interval,
with how many times it happened since the last line."""

from __future__ import annotations

import logging
import time


class RepeatedLine:
    """Loop thread only. `hit()` each time the condition happens."""

    __slots__ = ("_count", "_interval", "_level", "_logged", "_logger", "_message")

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        interval: float = 60.0,
        level: int = logging.WARNING,
    ) -> None:
        """`message` is a %-format that `hit`'s arguments fill; `interval` is in seconds."""
        self._logger = logger
        self._level = level
        self._message = message + " (%d time(s) since the last such line)"
        self._interval = interval
        self._logged = -interval
        self._count = 0

    def hit(self, *args: object) -> bool:
        """Count one occurrence; log it when the last line is `interval` old. True if logged."""
        self._count += 1
        now = time.monotonic()
        if now - self._logged < self._interval:
            return False
        self._logger.log(self._level, self._message, *args, self._count)
        self._logged = now
        self._count = 0
        return True
