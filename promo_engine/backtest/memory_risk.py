"""The abuse controls in the back-test's memory, as `ledger/abuse_counts.py` keeps them in
tables: each device's uses of each campaign (`limits.per_device`, `per_device_daily`) and
the risk policy's counters (`core/risk.py`).

The same rules as the ledger's: a device's uses count the campaign's rewards on it not fully
refunded (a full refund or a cancel gives one back, to the device of the payment it
undoes); the risk counters count every rewarded event on its day and month in the
program's timezone and are never lowered. Events come in occurred_at order, so only each
subject's current day and month are kept.

There is no denylist here: a back-test asks what campaigns would grant, and who would be
denied then is not known from a history.
"""
from __future__ import annotations

from datetime import date, tzinfo

from promo_engine.core.risk import RiskCounters, risk_day, risk_month, usage_of

NO_USES: dict = {}  # what an event without a device_id reads: it is not limited


class DeviceHistory:
    """A device's uses, as the device_campaign_usage and device_campaign_daily_usage rows
    hold them, and its risk counters of the current day (device_day_users included)."""

    __slots__ = ("uses", "daily_uses", "day", "day_events", "day_minor", "day_users")

    def __init__(self):
        self.uses: dict[str, int] = {}  # campaign id -> rewards on the device not fully refunded
        self.daily_uses: dict[tuple[str, date], int] = {}  # (campaign id, local day) -> rewards
        self.day: date | None = None  # the program-timezone day of the counters below
        self.day_events = 0
        self.day_minor = 0
        self.day_users: set[str] = set()

    def used(self, campaign_id: str, local_day: date, utc_day: date) -> None:
        self.uses[campaign_id] = self.uses.get(campaign_id, 0) + 1
        daily = self.daily_uses
        if len(daily) > 8:  # as the user's: no later event reads days before yesterday
            floor = date.fromordinal(utc_day.toordinal() - 1)
            daily = self.daily_uses = {key: n for key, n in daily.items() if key[1] >= floor}
        key = (campaign_id, local_day)
        daily[key] = daily.get(key, 0) + 1

    def freed(self, campaign_id: str, local_day: date | None) -> None:
        """`abuse_counts.uncount_device_use`: never below 0."""
        if self.uses.get(campaign_id, 0) > 0:
            self.uses[campaign_id] -= 1
        key = (campaign_id, local_day)
        if self.daily_uses.get(key, 0) > 0:
            self.daily_uses[key] -= 1


class _UserRisk:
    __slots__ = ("day", "day_events", "day_minor", "month", "month_cashback")

    def __init__(self):
        self.day: date | None = None
        self.day_events = self.day_minor = 0
        self.month: date | None = None
        self.month_cashback = 0


class MemoryRisk:
    """The risk policy's counters of every user and device (`abuse_counts`' risk_counters
    and device_day_users rows)."""

    def __init__(self, zone: tzinfo, minor_digits: int):
        self.zone = zone
        self.minor_digits = minor_digits
        self.users: dict[str, _UserRisk] = {}

    def counters(self, event, device: DeviceHistory | None) -> RiskCounters:
        """What was counted before the event on its day and month (`risk_from_rows`)."""
        day = risk_day(event.occurred_at, self.zone)
        user = self.users.get(event.user_id)
        user_events = user_minor = month_cashback = 0
        if user is not None:
            if user.day == day:
                user_events, user_minor = user.day_events, user.day_minor
            if user.month == risk_month(day):
                month_cashback = user.month_cashback
        if device is None or device.day != day:
            return RiskCounters(user_events, user_minor, month_cashback)
        return RiskCounters(user_events, user_minor, month_cashback, device.day_events,
                            device.day_minor, len(device.day_users),
                            event.user_id in device.day_users)

    def count(self, event, grants, device: DeviceHistory | None) -> None:
        """Add a rewarded event (`abuse_counts.counts_for` and `write_counts`)."""
        usage = usage_of(grants, self.minor_digits)
        if usage is None:
            return
        money_minor, cashback_minor = usage
        day = risk_day(event.occurred_at, self.zone)
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = _UserRisk()
        if user.day != day:
            user.day, user.day_events, user.day_minor = day, 0, 0
        user.day_events += 1
        user.day_minor += money_minor
        month = risk_month(day)
        if user.month != month:
            user.month, user.month_cashback = month, 0
        user.month_cashback += cashback_minor
        if device is not None:
            if device.day != day:
                device.day, device.day_events, device.day_minor = day, 0, 0
                device.day_users = set()
            device.day_events += 1
            device.day_minor += money_minor
            device.day_users.add(event.user_id)
