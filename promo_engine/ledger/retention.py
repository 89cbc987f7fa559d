"""Retention (`PROMO_RETENTION_DAYS`): personal details older than the retention period are
purged, in batches, by the scheduler's leader (docs/privacy.md says what and why).

What goes: the device id of events recorded before the cutoff (set NULL), the users seen
per device per day (`device_day_users`), the risk policy's day counters and its month
counters of months before both the cutoff and the previous month, the daily per-device
usage of campaigns (`device_campaign_daily_usage`), and webhook deliveries that were
delivered or given up (their payloads name the user). What stays: the events themselves
with their stored responses (every retry of an event_id is answered from it, however late,
and it names no user), rewards, points lots, vouchers, sums and usage counters, and
deliveries still pending (they are yet to be sent).

Each batch is its own short transaction, fenced like the scheduler's other work, so a
purge never holds locks an event waits on for long, and a deposed leader stops at once.
Purging is idempotent: a second run, or two runs at once, remove nothing more.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import Date, bindparam, text

from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.models import UTCDateTime

BATCH_SIZE = 5000  # rows per transaction


@dataclass
class Purged:
    """Rows changed or removed by one purge, by what they held."""
    event_device_ids: int = 0
    device_day_users: int = 0
    risk_counters: int = 0
    device_daily_usage: int = 0
    webhook_deliveries: int = 0

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        return ", ".join(f"{getattr(self, f.name)} {f.name.replace('_', ' ')}"
                         for f in fields(self))


@dataclass(frozen=True)
class Cutoff:
    """The instant before which records go, and the same as days and months of the
    program's timezone (risk counters and per-device days are kept by local day)."""
    instant: datetime
    day: date  # local days before this one go
    month: str  # month counters before this one ("YYYY-MM") go

    @classmethod
    def of(cls, now: datetime, days: int, timezone: str) -> "Cutoff":
        instant = now - timedelta(days=days)
        zone = ZoneInfo(timezone)
        day = instant.astimezone(zone).date()
        this_month = now.astimezone(zone).date().replace(day=1)
        previous_month = (this_month - timedelta(days=1)).replace(day=1)
        # A month counter is kept while its month is the current or the previous one (the
        # monthly cashback cap reads the current month) or reaches into the retention period.
        month = min(previous_month, day.replace(day=1))
        return cls(instant, day, month.strftime("%Y-%m"))


def purge_expired(session, now: datetime, *, days: int, timezone: str,
                  fence: Callable[[object], None] = lambda session: None,
                  batch_size: int = BATCH_SIZE,
                  should_stop: Callable[[], bool] = lambda: False) -> Purged:
    """Purge what is older than `days` before `now`, in transactions of at most
    `batch_size` rows, each first calling `fence(session)` (which raises to stop)."""
    cutoff = Cutoff.of(now, days, timezone)
    purged = Purged()
    params = {"instant": cutoff.instant, "day": cutoff.day, "day_text": cutoff.day.isoformat(),
              "month": cutoff.month}
    for name, statement in _steps(session.get_bind().dialect.name).items():
        while not should_stop():
            def work(statement=statement):
                fence(session)
                return session.execute(statement, {**params, "limit": batch_size}).rowcount
            count = run_in_transaction(session, work)
            setattr(purged, name, getattr(purged, name) + count)
            if count < batch_size:
                break
    return purged


def _steps(dialect: str) -> dict[str, object]:
    """One statement per kind of record, each changing at most :limit rows. Rows are picked
    by their physical address (ctid, rowid): the tables keyed by several columns need no
    join back, and a row changed meanwhile is simply left for the next run."""
    if dialect == "postgresql":
        def delete(table: str, where: str):
            return _typed(f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                          f"SELECT ctid FROM {table} WHERE {where} LIMIT :limit))")
    else:
        def delete(table: str, where: str):
            return _typed(f"DELETE FROM {table} WHERE rowid IN "
                          f"(SELECT rowid FROM {table} WHERE {where} LIMIT :limit)")

    return {
        # The partial index on device_id holds only events inside the retention period
        # (older ones lost theirs), so finding the next batch reads little.
        "event_device_ids": _typed(
            "UPDATE events SET device_id = NULL WHERE id IN (SELECT id FROM events "
            "WHERE device_id IS NOT NULL AND created_at < :instant LIMIT :limit)"),
        "device_day_users": delete("device_day_users", "day < :day"),
        "risk_counters": delete(
            "risk_counters", "(length(period) = 10 AND period < :day_text) OR "
                             "(length(period) = 7 AND period < :month)"),
        "device_daily_usage": delete("device_campaign_daily_usage", "day < :day"),
        "webhook_deliveries": delete(
            "webhook_deliveries", "status IN ('delivered', 'failed') AND created_at < :instant"),
    }


_TYPES = {"instant": UTCDateTime(), "day": Date()}


def _typed(sql: str):
    """The statement with its times and dates bound as the columns store them (SQLite
    keeps them as text)."""
    return text(sql).bindparams(*(bindparam(name, type_=type_) for name, type_ in
                                  _TYPES.items() if re.search(f":{name}\\b", sql)))
