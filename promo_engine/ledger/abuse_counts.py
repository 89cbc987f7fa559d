"""What the abuse controls count, read and written: a device's uses of each campaign
(`limits.per_device`, `per_device_daily`) and the risk policy's counters (`core/risk.py`).

Apart from the event writes because every path that records, quotes or undoes an event
shares them: SQLAlchemy Core statements for any database (the session paths, SQLite, quotes,
refunds, cancels and voids), and the same reads and writes as fixed SQL for PostgreSQL's
statements (`postgres_writes.py`), sent right after the user's.

Locks: a device's rows are read and written under its `devices` row (`lock_device`), taken
after the user's; a user's risk rows under the user's. So both are exact under concurrency.
Counts are written only for an event a campaign rewarded (`counts_for`): an event without
one adds nothing, and one without a device_id adds nothing to any device.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo

from sqlalchemy import Date, bindparam, case, false, func, insert, literal, null, select
from sqlalchemy import type_coerce, union_all, update
from sqlalchemy.dialects import postgresql, sqlite

from promo_engine.core.risk import RiskCounters, risk_day, risk_month, usage_of
from promo_engine.ledger.event_rows import day_range
from promo_engine.ledger.risk_models import (DeviceCampaignDailyUsage, DeviceCampaignUsage,
                                             DeviceDayUser, DeviceRecord, RewardHold,
                                             RiskCounter)

_devices = DeviceRecord.__table__
_uses = DeviceCampaignUsage.__table__
_daily = DeviceCampaignDailyUsage.__table__
_risk = RiskCounter.__table__
_day_users = DeviceDayUser.__table__
_holds = RewardHold.__table__

HELD = "held"


def user_subject(user_id: str) -> str:
    return "user:" + user_id


def device_subject(device_id: str) -> str:
    return "device:" + device_id


def day_period(day: date) -> str:
    return day.isoformat()


def month_period(day: date) -> str:
    return risk_month(day).isoformat()[:7]


@dataclass(frozen=True)
class AbuseCounts:
    """What one rewarded event adds: a use of each campaign it was rewarded by on its
    device (if it has one), and its money to the risk counters of the user's day and
    month and of the device's day, with the user among the device's users of the day."""
    user_id: str
    device_id: str | None
    day: date  # the event's day in the program's timezone
    uses: tuple[tuple[str, date], ...]  # (campaign, campaign-local day) per grant
    money_minor: int
    cashback_minor: int

    def risk_keys(self) -> list[tuple[str, str]]:
        """(subject, period) of each risk counter the event adds to."""
        keys = [(user_subject(self.user_id), day_period(self.day)),
                (user_subject(self.user_id), month_period(self.day))]
        if self.device_id is not None:
            keys.append((device_subject(self.device_id), day_period(self.day)))
        return keys

    def device_use_counts(self) -> tuple[dict[str, int], dict[tuple[str, date], int]]:
        """Uses per campaign and per (campaign, day) on the device: one row each, since one
        statement may not change the same row twice. Empty without a device."""
        per_campaign: dict[str, int] = {}
        per_day: dict[tuple[str, date], int] = {}
        if self.device_id is None:
            return per_campaign, per_day
        for campaign_id, day in self.uses:
            per_campaign[campaign_id] = per_campaign.get(campaign_id, 0) + 1
            per_day[(campaign_id, day)] = per_day.get((campaign_id, day), 0) + 1
        return per_campaign, per_day


def counts_for(event, grants, minor_digits: int, zone: tzinfo) -> AbuseCounts | None:
    """What the event's grants add to the counters; None when no campaign rewarded it."""
    usage = usage_of(grants, minor_digits)
    if usage is None:
        return None
    uses = tuple((grant.reward.campaign_id, grant.local_day)
                 for grant in grants if grant.campaign is not None)
    return AbuseCounts(user_id=event.user_id, device_id=event.device_id,
                       day=risk_day(event.occurred_at, zone), uses=uses,
                       money_minor=usage[0], cashback_minor=usage[1])


def risk_from_rows(rows, *, user_id: str, device_id: str | None, day: date) -> RiskCounters:
    """RiskCounters from the rows of the risk read (both ways of reading give the same
    rows): (subject, period, rewarded_events, reward_minor, cashback_minor) per counter,
    and (NULL, NULL, users of the device that day, 1 if the user is one of them, 0)."""
    user, device = user_subject(user_id), device_subject(device_id) if device_id else None
    today, month = day_period(day), month_period(day)
    values = dict(user_day_events=0, user_day_minor=0, user_month_cashback_minor=0,
                  device_day_events=0, device_day_minor=0, device_day_users=0,
                  device_knows_user=False)
    for subject, period, events, minor, cashback in rows:
        if subject is None:
            values["device_day_users"] = int(events or 0)
            values["device_knows_user"] = bool(minor)
        elif subject == user and period == today:
            values["user_day_events"], values["user_day_minor"] = int(events), int(minor)
        elif subject == user and period == month:
            values["user_month_cashback_minor"] = int(cashback)
        elif subject == device and period == today:
            values["device_day_events"], values["device_day_minor"] = int(events), int(minor)
    return RiskCounters(**values)


# -- SQLAlchemy Core: any database ---------------------------------------------------

class _CoreStatements:
    """Built once per dialect, with bound parameters."""

    def __init__(self, dialect: str):
        insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # Like the user's lock: ON CONFLICT DO UPDATE .. WHERE false locks an existing row
        # without writing a new version of it (SQLite locks the whole database anyway).
        devices = insert_for(_devices)
        self.lock_device = devices.values(
            device_id=bindparam("device_id"), created_at=bindparam("now")).on_conflict_do_update(
            index_elements=["device_id"], set_={"device_id": devices.excluded.device_id},
            where=false())
        self.device_uses = union_all(
            select(_uses.c.campaign_id, type_coerce(null(), Date).label("day"), _uses.c.uses)
            .where(_uses.c.device_id == bindparam("device_id")),
            select(_daily.c.campaign_id, _daily.c.day, _daily.c.uses)
            .where(_daily.c.device_id == bindparam("device_id"),
                   _daily.c.day.between(bindparam("first_day", type_=Date),
                                        bindparam("last_day", type_=Date))))
        self.risk = union_all(
            select(_risk.c.subject, _risk.c.period, _risk.c.rewarded_events,
                   _risk.c.reward_minor, _risk.c.cashback_minor)
            .where(_risk.c.subject.in_([bindparam("user"), bindparam("device")]),
                   _risk.c.period.in_([bindparam("today"), bindparam("month")])),
            select(null(), null(), func.count(),
                   func.coalesce(func.sum(case((_day_users.c.user_id == bindparam("user_id"), 1),
                                               else_=0)), 0),
                   literal(0))
            .where(_day_users.c.device_id == bindparam("device_id"),
                   _day_users.c.day == bindparam("day", type_=Date)))
        uses = insert_for(_uses)
        self.count_use = uses.on_conflict_do_update(
            index_elements=["campaign_id", "device_id"],
            set_={"uses": _uses.c.uses + uses.excluded.uses})
        daily = insert_for(_daily)
        self.count_daily_use = daily.on_conflict_do_update(
            index_elements=["campaign_id", "device_id", "day"],
            set_={"uses": _daily.c.uses + daily.excluded.uses})
        risk = insert_for(_risk)
        self.count_risk = risk.on_conflict_do_update(
            index_elements=["subject", "period"],
            set_={"rewarded_events": _risk.c.rewarded_events + risk.excluded.rewarded_events,
                  "reward_minor": _risk.c.reward_minor + risk.excluded.reward_minor,
                  "cashback_minor": _risk.c.cashback_minor + risk.excluded.cashback_minor})
        self.add_day_user = insert_for(_day_users).on_conflict_do_nothing()
        self.uncount_use = (
            update(_uses).where(_uses.c.device_id == bindparam("device_id_"),
                                _uses.c.campaign_id == bindparam("campaign_id_"),
                                _uses.c.uses > 0)
            .values(uses=_uses.c.uses - 1))
        self.uncount_daily_use = (
            update(_daily).where(_daily.c.device_id == bindparam("device_id_"),
                                 _daily.c.campaign_id == bindparam("campaign_id_"),
                                 _daily.c.day == bindparam("day_", type_=Date),
                                 _daily.c.uses > 0)
            .values(uses=_daily.c.uses - 1))


_STATEMENTS: dict[str, _CoreStatements] = {}


def _statements(connection) -> _CoreStatements:
    dialect = connection.dialect.name
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _CoreStatements(dialect)
    return statements


def lock_device(connection, device_id: str, now: datetime) -> None:
    """The device's row, created if new, locked until the transaction ends (after the
    user's lock: the order every event takes them in)."""
    connection.execute(_statements(connection).lock_device,
                       {"device_id": device_id, "now": now})


def read_device_and_risk(connection, *, user_id: str, device_id: str | None,
                         occurred_at: datetime, zone: tzinfo, with_risk: bool
                         ) -> tuple[dict, dict, RiskCounters | None]:
    """The device's uses of each campaign, ever and per campaign-local day around the
    event ({} without a device), and with `with_risk` the risk counters of the user and
    the device on the event's day in `zone` (else None). Takes no lock: under the locks
    (`lock_device`) it is what the event may use; without them (quotes) what is committed."""
    statements = _statements(connection)
    device_uses: dict = {}
    device_daily: dict = {}
    if device_id is not None:
        first_day, last_day = day_range(occurred_at)
        for campaign_id, day, count in connection.execute(statements.device_uses, {
                "device_id": device_id, "first_day": first_day, "last_day": last_day}):
            if day is None:
                device_uses[campaign_id] = count
            else:
                device_daily[(campaign_id, day)] = count
    if not with_risk:
        return device_uses, device_daily, None
    day = risk_day(occurred_at, zone)
    rows = connection.execute(statements.risk, {
        "user": user_subject(user_id),
        "device": device_subject(device_id) if device_id is not None else None,
        "today": day_period(day), "month": month_period(day),
        "user_id": user_id, "device_id": device_id, "day": day}).all()
    return device_uses, device_daily, risk_from_rows(rows, user_id=user_id,
                                                     device_id=device_id, day=day)


def write_counts(connection, counts: AbuseCounts | None, held: list[tuple[int, datetime]]
                 ) -> None:
    """Add a rewarded event's counts, under the user's and the device's locks; and a
    `reward_holds` row per (reward primary key, held at) the risk policy held."""
    statements = _statements(connection)
    if counts is not None:
        per_campaign, per_day = counts.device_use_counts()
        if per_campaign:
            connection.execute(statements.count_use, [
                {"campaign_id": campaign_id, "device_id": counts.device_id, "uses": n}
                for campaign_id, n in per_campaign.items()])
            connection.execute(statements.count_daily_use, [
                {"campaign_id": campaign_id, "device_id": counts.device_id, "day": day,
                 "uses": n} for (campaign_id, day), n in per_day.items()])
        connection.execute(statements.count_risk, [
            {"subject": subject, "period": period, "rewarded_events": 1,
             "reward_minor": counts.money_minor, "cashback_minor": counts.cashback_minor}
            for subject, period in counts.risk_keys()])
        if counts.device_id is not None:
            connection.execute(statements.add_day_user, {
                "device_id": counts.device_id, "day": counts.day, "user_id": counts.user_id})
    if held:
        connection.execute(insert(_holds), [
            {"reward_pk": pk, "status": HELD, "held_at": at, "note": ""} for pk, at in held])


def uncount_device_use(connection, device_id: str | None, campaign_id: str,
                       local_day: date | None) -> None:
    """One use of the campaign on the device given back (a grant fully refunded,
    cancelled or voided), as the user's are; nothing for an event without a device.
    `local_day`: the grant's campaign-local day (the reward row's `local_day`)."""
    if device_id is None:
        return
    statements = _statements(connection)
    params = {"device_id_": device_id, "campaign_id_": campaign_id}
    connection.execute(statements.uncount_use, params)
    if local_day is not None:
        connection.execute(statements.uncount_daily_use, dict(params, day_=local_day))


# -- PostgreSQL: the same as fixed SQL for `postgres_writes.py` ----------------------

def _compact(statement: str) -> str:
    return " ".join(statement.split())


# After the user's lock and its read, only for an event with a device_id.
PG_LOCK_DEVICE = _compact("""
INSERT INTO devices (device_id, created_at) VALUES (%(device_id)s, %(now)s)
ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id WHERE false
""")

# After the device's lock, in its own statement (READ COMMITTED: a snapshot per statement).
PG_DEVICE_USES = _compact("""
SELECT campaign_id, NULL::date AS day, uses FROM device_campaign_usage
WHERE device_id = %(device_id)s
UNION ALL
SELECT campaign_id, day, uses FROM device_campaign_daily_usage
WHERE device_id = %(device_id)s AND day BETWEEN %(first_day)s AND %(last_day)s
""")

# Only when a risk policy is in force: the rows `risk_from_rows` reads.
PG_RISK = _compact("""
SELECT subject, period, rewarded_events, reward_minor, cashback_minor FROM risk_counters
WHERE subject IN (%(user)s, %(device)s::text) AND period IN (%(today)s, %(month)s)
UNION ALL
SELECT NULL, NULL, count(*), count(*) FILTER (WHERE user_id = %(user_id)s), 0
FROM device_day_users WHERE device_id = %(device_id)s::text AND day = %(day)s
""")

# A rewarded event's counts and its held rewards, sent after the event's write and
# before its COMMIT (the rewards it holds are then in the transaction). Apart from the
# event's write so that it stays within what psycopg caches, and so an event no campaign
# rewarded sends nothing more.
PG_WRITE_COUNTS = _compact("""
WITH device_counted AS (
  INSERT INTO device_campaign_usage (campaign_id, device_id, uses)
  SELECT c.campaign_id, %(device_id)s::text, c.uses
  FROM unnest(%(c_campaign_id)s::text[], %(c_uses)s::int[]) AS c(campaign_id, uses)
  ON CONFLICT (campaign_id, device_id)
  DO UPDATE SET uses = device_campaign_usage.uses + excluded.uses
), device_daily AS (
  INSERT INTO device_campaign_daily_usage (campaign_id, device_id, day, uses)
  SELECT d.campaign_id, %(device_id)s::text, d.day, d.uses
  FROM unnest(%(d_campaign_id)s::text[], %(d_day)s::date[], %(d_uses)s::int[])
       AS d(campaign_id, day, uses)
  ON CONFLICT (campaign_id, device_id, day)
  DO UPDATE SET uses = device_campaign_daily_usage.uses + excluded.uses
), risk AS (
  INSERT INTO risk_counters (subject, period, rewarded_events, reward_minor, cashback_minor)
  SELECT k.subject, k.period, 1, %(money)s::bigint, %(cashback)s::bigint
  FROM unnest(%(k_subject)s::text[], %(k_period)s::text[]) AS k(subject, period)
  ON CONFLICT (subject, period) DO UPDATE SET
    rewarded_events = risk_counters.rewarded_events + 1,
    reward_minor = risk_counters.reward_minor + excluded.reward_minor,
    cashback_minor = risk_counters.cashback_minor + excluded.cashback_minor
), day_user AS (
  INSERT INTO device_day_users (device_id, day, user_id)
  SELECT %(device_id)s::text, %(day)s::date, %(user_id)s::text
  WHERE %(device_id)s::text IS NOT NULL
  ON CONFLICT DO NOTHING
)
INSERT INTO reward_holds (reward_pk, status, held_at, note)
SELECT id, 'held', %(now)s::timestamptz, '' FROM rewards WHERE reward_id = ANY(%(h_reward_id)s::text[])
""")


# The risk counters of a rewarded event without a device or held rewards (the most common
# rewarded event), as a part of the event's own write statement (`postgres_writes.py`)
# instead of PG_WRITE_COUNTS after it: one round trip less. That
# statement is near the 50 parameters psycopg caches a statement's parsed form for, so the
# counts travel as one array: [reward minor, cashback minor, subject, period, subject, ...].
PG_RISK_COUNTED = _compact("""
, risk_counted AS (
  INSERT INTO risk_counters (subject, period, rewarded_events, reward_minor, cashback_minor)
  SELECT r.k[i], r.k[i + 1], 1, r.k[1]::bigint, r.k[2]::bigint
  FROM (SELECT %(risk)s::text[] AS k) AS r, generate_series(3, cardinality(r.k), 2) AS i
  ON CONFLICT (subject, period) DO UPDATE SET
    rewarded_events = risk_counters.rewarded_events + 1,
    reward_minor = risk_counters.reward_minor + excluded.reward_minor,
    cashback_minor = risk_counters.cashback_minor + excluded.cashback_minor
)
""")


def pg_risk_counted(counts: AbuseCounts | None, held: list) -> list[str] | None:
    """PG_RISK_COUNTED's array for an event whose counts it covers, else None (no counts,
    a device's counts, or held rewards: PG_WRITE_COUNTS writes those)."""
    if counts is None or counts.device_id is not None or held:
        return None
    values = [str(counts.money_minor), str(counts.cashback_minor)]
    for subject, period in counts.risk_keys():
        values += (subject, period)
    return values


def pg_risk_params(*, user_id: str, device_id: str | None, occurred_at: datetime,
                   zone: tzinfo) -> tuple[dict, date]:
    day = risk_day(occurred_at, zone)
    return {"user": user_subject(user_id),
            "device": device_subject(device_id) if device_id is not None else None,
            "today": day_period(day), "month": month_period(day), "user_id": user_id,
            "device_id": device_id, "day": day}, day


def pg_write_params(counts: AbuseCounts | None, user_id: str, device_id: str | None,
                    held_reward_ids: list[str], now: datetime) -> dict:
    """The parameters of PG_WRITE_COUNTS (a held reward is always a rewarded event's)."""
    per_campaign, per_day = counts.device_use_counts() if counts is not None else ({}, {})
    return {
        "device_id": device_id if counts is not None else None, "user_id": user_id,
        "day": counts.day if counts is not None else now.astimezone(timezone.utc).date(),
        "c_campaign_id": list(per_campaign), "c_uses": list(per_campaign.values()),
        "d_campaign_id": [campaign_id for campaign_id, _ in per_day],
        "d_day": [day for _, day in per_day], "d_uses": list(per_day.values()),
        "money": counts.money_minor if counts is not None else 0,
        "cashback": counts.cashback_minor if counts is not None else 0,
        "k_subject": [s for s, _ in counts.risk_keys()] if counts is not None else [],
        "k_period": [p for _, p in counts.risk_keys()] if counts is not None else [],
        "h_reward_id": held_reward_ids, "now": now}
