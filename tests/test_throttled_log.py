"""Repeated warnings during an outage are logged once per interval, with a count."""
from __future__ import annotations

import logging

from promo_engine.coordination.throttled_log import ThrottledWarning


def test_repeats_within_the_interval_are_counted_not_logged(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("promo_engine.coordination.throttled_log.time.monotonic", lambda: clock[0])
    warn = ThrottledWarning(logging.getLogger("promo.test"), interval=10)
    with caplog.at_level(logging.WARNING, logger="promo.test"):
        warn.warning("redis away: %s", "refused")
        for _ in range(41):
            clock[0] += 0.2
            warn.warning("redis away: %s", "refused")
        clock[0] += 2.0  # 10.2 s after the first
        warn.warning("redis away: %s", "timeout")
    assert [r.getMessage() for r in caplog.records] == [
        "redis away: refused",
        "redis away: timeout (41 more like this in the last 10 s)"]
