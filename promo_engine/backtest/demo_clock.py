"""The clock of the demo wallet history: its local hours, and "busy time".

Hours are UTC buckets of 3600 seconds from local midnight of the first day, each one a local
hour (a day has 23 or 25 of them when daylight saving time starts or ends), with the text
of its date, hour and UTC offset ready for the RFC 3339 timestamps of its events.

Busy time runs fast when people pay and nearly stops at night: its rate in each hour is the
expected number of payments, in that hour, of a customer who pays once on an ordinary day.
A payer's payments are exponential gaps in busy time, mapped back to seconds by the hour's
rate, which gives them the patterns of the day and the week for one draw each.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class Clock:
    """The history's local hours as UTC Unix-second buckets, with what each hour is like.

    Bucket k starts 3600 k seconds after local midnight of the first day, so each one is a
    local hour (23 or 25 of them on the days daylight saving time starts or ends)."""

    def __init__(self, start: date, days: int, timezone: str):
        zone = ZoneInfo(timezone)
        self.begin = int(datetime.combine(start, time(), zone).timestamp())
        last = start + timedelta(days=days)
        self.end = int(datetime.combine(last, time(), zone).timestamp())
        count = -(-(self.end - self.begin) // 3600)
        self.starts = [self.begin + 3600 * k for k in range(count)]
        self.day: list[int] = []  # local day index of each bucket
        self.hour: list[int] = []  # local hour of day
        self.stamp: list[str | None] = []  # "2026-11-01T08:" (None: not on a whole hour)
        self.offset: list[str] = []  # "+08:00"
        self.day_start = [0] * (days + 1)
        seen = set()
        for moment in self.starts:
            local = datetime.fromtimestamp(moment, zone)
            index = (local.date() - start).days
            if index not in seen:
                seen.add(index)
                self.day_start[index] = moment
            self.day.append(index)
            self.hour.append(local.hour)
            whole = local.minute == 0 and local.second == 0
            self.stamp.append(local.strftime("%Y-%m-%dT%H:") if whole else None)
            text = local.strftime("%z")
            self.offset.append(f"{text[:3]}:{text[3:5]}")
        self.day_start[days] = self.end
        self.zone = zone


class Busy:
    """Busy time: the expected payments of a one-a-day payer since the history began."""

    def __init__(self, clock: Clock, rates: list[float]):
        self.starts, self.rates = clock.starts, rates
        self.cum = [0.0] * len(rates)
        total = 0.0
        for k, rate in enumerate(rates):
            self.cum[k] = total
            total += rate
        self.total = total
        self.seconds_per_unit = [3600.0 / rate for rate in rates]

    def at(self, moment: int) -> float:
        """Busy time at Unix second `moment`."""
        k = (moment - self.starts[0]) // 3600
        if k >= len(self.rates):
            return self.total
        return self.cum[k] + (moment - self.starts[k]) * self.rates[k] / 3600.0
