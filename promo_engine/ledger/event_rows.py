"""What one event's write consists of, and the small pieces both ways of writing it share
(`event_writes.py` for SQLAlchemy Core, `postgres_writes.py` for PostgreSQL's pipelines).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone


class AlreadyRecorded(Exception):
    """The event's INSERT met a committed copy of the event."""


@dataclass(frozen=True)
class StoredEvent:
    request_hash: str
    response: str


@dataclass
class EventRows:
    """Everything one new payment or activation writes, built before the first write."""
    event: dict  # the events row
    rewards: list[dict]  # rewards rows, in grant order, without event_pk
    uses: list[tuple[str, date]]  # (campaign id, campaign-local day) per campaign reward
    activated: int
    paid: int
    balance: int  # the user's points balance after this event
    pending: int = 0  # and its pending points
    lots: list[dict] = field(default_factory=list)  # `lots.new_lots`, keyed by reward_id
    vouchers: list[dict] = field(default_factory=list)  # a row per voucher granted
    bodies: list[dict] = field(default_factory=list)  # the response's rewards (webhooks)
    # What a rewarded event adds to the device's uses and the risk counters
    # (`abuse_counts.AbuseCounts`); None when no campaign rewarded it.
    counts: object = None
    held: list[str] = field(default_factory=list)  # reward_ids the risk policy held


def use_counts(uses: list[tuple[str, date]]) -> tuple[Counter, Counter]:
    """Uses per campaign and per (campaign, day): one upsert row each, since one statement
    may not change the same counter row twice."""
    return Counter(campaign_id for campaign_id, _ in uses), Counter(uses)


def uses_from_rows(rows) -> tuple[dict, dict]:
    uses = {campaign_id: count for campaign_id, day, count in rows if day is None}
    daily = {(campaign_id, day): count for campaign_id, day, count in rows if day is not None}
    return uses, daily


def day_range(occurred_at: datetime) -> tuple[date, date]:
    """The event's local day in any zone is within a day of its UTC date."""
    utc_day = occurred_at.astimezone(timezone.utc).date()
    return utc_day - timedelta(days=1), utc_day + timedelta(days=1)
