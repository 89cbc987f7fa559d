"""Warnings that would repeat on every request while a backing service is away (Redis,
say) are logged once per interval, with the number that were held back, so an outage leaves
a readable log rather than thousands of identical lines."""
from __future__ import annotations

import logging
import threading
import time

INTERVAL_SECONDS = 10.0


class ThrottledWarning:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL_SECONDS):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._held = 0

    def warning(self, message: str, *args) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        if held:
            message += f" ({held} more like this in the last {self.interval:.0f} s)"
        self.logger.warning(message, *args)
