"""One warning per interval, not one per call: what the producer logs in an outage."""

from __future__ import annotations

import logging
import threading
import time


class Throttled:
    """One warning per interval in an outage, not one per submit: the line carries how many
    submits it stands for (``count``, since the previous line) and the ids of the latest."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._count = 0

    def warn(self, message: str, **extra: object) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self.interval_s:
                return
            count, self._count, self._last = self._count, 0, now
        self.logger.warning(message, extra={**extra, "count": count})
