"""When a delivery that was not accepted is tried again, and when it is given up.

The first retry comes within 10 s (a receiver restarting, a deploy), later ones further
apart so that a receiver that is down for hours is not hammered, and the last well inside
a day. Deliveries are retried until the retry window (24 h by default) has passed since the
change, then marked failed: the last attempt comes at or after the window's end, so a
delivery is always retried for at least the whole window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Seconds before the 1st, 2nd, ... retry; the last one repeats.
RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)
DEFAULT_RETRY_HOURS = 24  # PROMO_WEBHOOK_RETRY_HOURS, 1 to 720 (`config.py`)


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[float, ...] = RETRY_DELAYS
    window: timedelta = timedelta(hours=DEFAULT_RETRY_HOURS)

    def __post_init__(self):
        if not self.delays or min(self.delays) <= 0:
            raise ValueError("retry delays must be positive")
        if self.window <= timedelta(0):
            raise ValueError("the retry window must be positive")

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt (1: the first)."""
        return timedelta(seconds=self.delays[min(max(attempts, 1), len(self.delays)) - 1])

    def after_failure(self, created_at: datetime, attempts: int,
                      now: datetime) -> datetime | None:
        """When to try again after the `attempts`-th failed attempt, made at `now`, of a
        delivery created at `created_at`; None when the window has passed: it has failed."""
        if now - created_at >= self.window:
            return None
        return now + self.delay(attempts)


def schedule_for(settings) -> RetrySchedule:
    """The schedule with the retry window of `settings` (PROMO_WEBHOOK_RETRY_HOURS)."""
    return RetrySchedule(window=timedelta(hours=settings.webhook_retry_hours))
