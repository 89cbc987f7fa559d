"""Signs of reward hunting read from the ledger (`promo-engine risk report`, the portal's Risk
page): who earned the most, devices shared by many users, merchants whose rewarded payments
are refunded far more than elsewhere, payments clustered just above a campaign's minimum, and
the cashback each user received this month (AML).

Definitions (docs/risk.md "Risk report" repeats them for readers):

- The period is the last `days` days of the program timezone (PROMO_TIMEZONE), today
  included: [midnight `days - 1` days ago, midnight tomorrow). Events count by `occurred_at`.
- A campaign reward is a campaign's grant (a rewards row with a campaign, no `reason`, not a
  reversal); held rewards count. Rewards are counted gross, before refunds, as the risk
  policy's counters are: rewarded then refunded is how hunters work.
- Top users and top devices: by rewards (rows), then money (discounts, cashback and vouchers
  at face value), then points. A device's rewards are those of the events naming it.
- Shared devices: the devices named by events of at least 2 distinct users in the period,
  most users first (any event type, rewarded or not).
- Merchant refunds: of the payments a campaign rewarded, those refunded (fully or in part,
  up to now). The program rate is refunded / rewarded over all merchants. A merchant is
  flagged when its rate is at least REFUND_MULTIPLE times the program's and at least
  MIN_REFUNDED of its rewarded payments were refunded (a couple of refunds prove nothing).
  Listed: the merchants with a refunded rewarded payment, flagged first, then by rate.
- Min-amount clusters: for each open, paused or closed campaign with `conditions.min_amount`
  (m), its payments in the period and inside its window, at its merchants (any when it names
  none), in the campaign's currency: `just_above` in [m, m x 1.05], `just_below` in
  [m x 0.95, m). Hunters split or pad payments to clear the minimum: many just above and few
  just below. The ratio is above / below (None when nothing is just below).
- Cashback this month: each user's campaign cashback for events in the current month of the
  program timezone (gross, as the policy's monthly cap counts it), beside the cap of the risk
  policy in force (`per_user_monthly.cashback`), if any.

Every row carries `events`: the filter (user, device, merchants, type, amounts, instants)
that lists the events behind it (the portal's admin events page takes the same keys).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, select

from promo_engine.campaigns.risk_policy import load_risk_policy
from promo_engine.campaigns.store import POLICY_ROW
from promo_engine.core import money
from promo_engine.core.rewards import CASHBACK, POINTS
from promo_engine.ledger.models import CampaignRecord, EventRecord, RewardRecord
from promo_engine.ledger.risk_models import RiskPolicyRecord

PAYMENT = "payment"
DAYS, LIMIT, MAX_DAYS = 30, 20, 1096
REFUND_MULTIPLE, MIN_REFUNDED = 2, 5
CLUSTER_PERCENT = 5  # the band on either side of min_amount, in percent
CLUSTER_STATUSES = ("open", "paused", "closed")
RATE = Decimal("0.0001")
RATIO = Decimal("0.01")


class PeriodError(ValueError):
    """A period the report cannot cover (the message names the option)."""


@dataclass(frozen=True)
class Earner:
    """A user or a device and the campaign rewards of its events."""
    id: str
    rewards: int
    events: int
    money: Decimal
    points: int
    users: int | None  # devices only: the distinct users rewarded
    events_filter: dict


@dataclass(frozen=True)
class SharedDevice:
    device_id: str
    users: int
    events: int
    first_at: datetime
    last_at: datetime
    events_filter: dict


@dataclass(frozen=True)
class MerchantRefunds:
    merchant_id: str
    rewarded_payments: int
    refunded_payments: int
    rate: Decimal
    flagged: bool
    events_filter: dict


@dataclass(frozen=True)
class RefundSection:
    rewarded_payments: int
    refunded_payments: int
    rate: Decimal | None  # None: no rewarded payment in the period
    merchants: list[MerchantRefunds]


@dataclass(frozen=True)
class Band:
    low: Decimal    # both included
    high: Decimal
    payments: int
    events_filter: dict


@dataclass(frozen=True)
class Cluster:
    campaign_id: str
    name: str
    status: str
    currency: str
    min_amount: Decimal
    just_above: Band
    just_below: Band
    ratio: Decimal | None


@dataclass(frozen=True)
class CashbackUser:
    user_id: str
    rewards: int
    cashback: Decimal
    share_of_cap: Decimal | None
    at_cap: bool
    events_filter: dict


@dataclass(frozen=True)
class CashbackSection:
    month: str  # "2026-12"
    cap: Decimal | None
    users: list[CashbackUser]


@dataclass(frozen=True)
class RiskReport:
    timezone: str
    currency: str
    days: int
    first_day: date
    last_day: date
    since: datetime
    until: datetime
    as_of: datetime
    top_users: list[Earner]
    top_devices: list[Earner]
    shared_devices: list[SharedDevice]
    refunds: RefundSection
    clusters: list[Cluster]
    cashback: CashbackSection
    limit: int = field(default=LIMIT)


def check_options(days: int, limit: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise PeriodError(f"--days {days} is not between 1 and {MAX_DAYS}")
    if not 1 <= limit <= 1000:
        raise PeriodError(f"--limit {limit} is not between 1 and 1000")


def _start(day: date, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the local day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


def instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def risk_report(session, *, zone_name: str, currency: str, now: datetime, days: int = DAYS,
                limit: int = LIMIT) -> RiskReport:
    """The report over the `days` local days ending today, as the ledger stands at `now`."""
    check_options(days, limit)
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    since, until = _start(first_day, zone), _start(today + timedelta(days=1), zone)
    digits = money.minor_digits(currency)
    period = {"from": instant(since), "to": instant(until)}
    return RiskReport(
        timezone=zone_name, currency=currency, days=days, first_day=first_day, last_day=today,
        since=since, until=until, as_of=now,
        top_users=_earners(session, RewardRecord.user_id, "user_id", since, until, digits,
                           limit, period),
        top_devices=_earners(session, EventRecord.device_id, "device_id", since, until, digits,
                             limit, period),
        shared_devices=_shared_devices(session, since, until, limit, period),
        refunds=_refunds(session, since, until, limit, period),
        clusters=_clusters(session, since, until, currency, limit),
        cashback=_cashback(session, zone, today, currency, limit), limit=limit)


def _grants():
    return and_(RewardRecord.campaign_id.is_not(None), RewardRecord.reason.is_(None),
                RewardRecord.reverses_id.is_(None))


def _in(since: datetime, until: datetime):
    return and_(EventRecord.occurred_at >= since, EventRecord.occurred_at < until)


def _earners(session, key, name: str, since, until, digits: int, limit: int,
             period: dict) -> list[Earner]:
    money_minor = func.coalesce(func.sum(case((RewardRecord.kind == POINTS, 0),
                                              else_=RewardRecord.amount_minor)), 0)
    points = func.coalesce(func.sum(case((RewardRecord.kind == POINTS, RewardRecord.points),
                                         else_=0)), 0)
    rewards = func.count(RewardRecord.id)
    columns = [key, rewards, func.count(func.distinct(RewardRecord.event_pk)), money_minor,
               points]
    if name == "device_id":
        columns.append(func.count(func.distinct(RewardRecord.user_id)))
    rows = session.execute(
        select(*columns).join(EventRecord, EventRecord.id == RewardRecord.event_pk)
        .where(_grants(), _in(since, until), key.is_not(None)).group_by(key)
        .order_by(rewards.desc(), money_minor.desc(), points.desc(), key).limit(limit)).all()
    return [Earner(row[0], int(row[1]), int(row[2]), Decimal(int(row[3])).scaleb(-digits),
                   int(row[4]), int(row[5]) if name == "device_id" else None,
                   {name: row[0], **period}) for row in rows]


def _shared_devices(session, since, until, limit: int, period: dict) -> list[SharedDevice]:
    users = func.count(func.distinct(EventRecord.user_id))
    events = func.count(EventRecord.id)
    rows = session.execute(
        select(EventRecord.device_id, users, events, func.min(EventRecord.occurred_at),
               func.max(EventRecord.occurred_at))
        .where(EventRecord.device_id.is_not(None), _in(since, until))
        .group_by(EventRecord.device_id).having(users >= 2)
        .order_by(users.desc(), events.desc(), EventRecord.device_id).limit(limit)).all()
    return [SharedDevice(device, int(n_users), int(n_events), _aware(first), _aware(last),
                         {"device_id": device, **period})
            for device, n_users, n_events, first, last in rows]


def _aware(value: datetime) -> datetime:
    """min()/max() bypass the column type: SQLite hands back naive UTC text or datetimes."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _refunds(session, since, until, limit: int, period: dict) -> RefundSection:
    rewarded = exists().where(RewardRecord.event_pk == EventRecord.id, _grants())
    refunded = func.sum(case((EventRecord.refunded_minor > 0, 1), else_=0))
    rows = session.execute(
        select(EventRecord.merchant_id, func.count(EventRecord.id), refunded)
        .where(EventRecord.type == PAYMENT, _in(since, until), rewarded)
        .group_by(EventRecord.merchant_id)).all()
    total = sum(int(count) for _m, count, _r in rows)
    total_refunded = sum(int(r or 0) for _m, _c, r in rows)
    merchants = []
    for merchant_id, count, n_refunded in rows:
        count, n_refunded = int(count), int(n_refunded or 0)
        if not n_refunded or merchant_id is None:
            continue
        # Exact: rate >= MULTIPLE x program rate, cross-multiplied in integers.
        flagged = (n_refunded >= MIN_REFUNDED and
                   n_refunded * total >= REFUND_MULTIPLE * total_refunded * count)
        merchants.append(MerchantRefunds(
            merchant_id, count, n_refunded, _share(n_refunded, count), flagged,
            {"merchant_id": [merchant_id], "type": PAYMENT, **period}))
    merchants.sort(key=lambda m: (not m.flagged, -m.rate, -m.refunded_payments, m.merchant_id))
    return RefundSection(total, total_refunded, _share(total_refunded, total) if total else None,
                         merchants[:limit])


def _share(part: int, whole: int) -> Decimal:
    return (Decimal(part) / Decimal(whole)).quantize(RATE, ROUND_HALF_UP)


def _clusters(session, since, until, program_currency: str, limit: int) -> list[Cluster]:
    out = []
    records = session.scalars(select(CampaignRecord)
                              .where(CampaignRecord.status.in_(CLUSTER_STATUSES))
                              .order_by(CampaignRecord.id)).all()
    for record in records:
        spec = record.spec or {}
        minimum = (spec.get("conditions") or {}).get("min_amount")
        if minimum in (None, ""):
            continue
        currency = spec.get("currency") or program_currency
        digits = money.minor_digits(currency)
        low_minor = int(Decimal(str(minimum)).scaleb(digits))
        # [m, m x 1.05] and [m x 0.95, m), in whole minor units inside those bounds.
        above_high = low_minor * (100 + CLUSTER_PERCENT) // 100
        below_low = -(-low_minor * (100 - CLUSTER_PERCENT) // 100)
        start, end = max(since, record.starts_at), min(until, record.ends_at)
        merchants = spec.get("merchants")
        query_filter = [EventRecord.type == PAYMENT, EventRecord.currency == currency,
                        EventRecord.occurred_at >= start, EventRecord.occurred_at < end]
        if merchants:
            query_filter.append(EventRecord.merchant_id.in_(sorted(merchants)))
        above_count, below_count = (0, 0)
        if start < end:
            amount = EventRecord.amount_minor
            above_count, below_count = session.execute(select(
                func.coalesce(func.sum(case((and_(amount >= low_minor, amount <= above_high),
                                             1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(amount >= below_low, amount < low_minor),
                                             1), else_=0)), 0))
                .where(*query_filter)).one()
        base = {"type": PAYMENT, "from": instant(start), "to": instant(max(start, end))}
        if merchants:
            base["merchant_id"] = sorted(merchants)

        def band(low: int, high: int, count) -> Band:
            low_d, high_d = Decimal(low).scaleb(-digits), Decimal(high).scaleb(-digits)
            return Band(low_d, high_d, int(count),
                        {**base, "min_amount": str(low_d), "max_amount": str(high_d)})
        above = band(low_minor, above_high, above_count)
        below = band(below_low, low_minor - 1, below_count)
        ratio = (None if not below.payments else
                 (Decimal(above.payments) / below.payments).quantize(RATIO, ROUND_HALF_UP))
        out.append(Cluster(record.id, record.name, record.status, currency,
                           Decimal(low_minor).scaleb(-digits), above, below, ratio))
    out.sort(key=lambda c: (-c.just_above.payments, c.campaign_id))
    return out[:limit]


def monthly_cashback_cap(session, currency: str) -> Decimal | None:
    """`per_user_monthly.cashback` of the risk policy in force, or None (also when the
    stored policy no longer loads: then none is enforced either)."""
    record = session.get(RiskPolicyRecord, POLICY_ROW)
    if record is None:
        return None
    try:
        return load_risk_policy(record.spec, currency=currency).user_monthly_cashback
    except Exception:  # noqa: BLE001 - as store.stored_risk_policy: not in force
        return None


def _cashback(session, zone: ZoneInfo, today: date, currency: str,
              limit: int) -> CashbackSection:
    digits = money.minor_digits(currency)
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    since, until = _start(first, zone), _start(following, zone)
    cap = monthly_cashback_cap(session, currency)
    total = func.sum(RewardRecord.amount_minor)
    rows = session.execute(
        select(RewardRecord.user_id, func.count(RewardRecord.id), total)
        .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
        .where(_grants(), RewardRecord.kind == CASHBACK, _in(since, until))
        .group_by(RewardRecord.user_id).order_by(total.desc(), RewardRecord.user_id)
        .limit(limit)).all()
    users = []
    for user_id, count, minor in rows:
        amount = Decimal(int(minor or 0)).scaleb(-digits)
        share = None if not cap else (amount / cap).quantize(RATE, ROUND_HALF_UP)
        users.append(CashbackUser(user_id, int(count), amount, share,
                                  cap is not None and amount >= cap,
                                  {"user_id": user_id, "from": instant(since),
                                   "to": instant(until)}))
    return CashbackSection(first.strftime("%Y-%m"), cap, users)


def _text(value) -> str | None:
    return None if value is None else str(value)


def report_json(report: RiskReport) -> dict:
    """The `--json` object (docs/risk.md): decimals as strings, instants in UTC."""
    def earner(e: Earner) -> dict:
        row = {"rewards": e.rewards, "events_rewarded": e.events, "money": str(e.money),
               "points": e.points}
        if e.users is not None:
            row["users"] = e.users
        return row

    def band(b: Band) -> dict:
        return {"from": str(b.low), "to": str(b.high), "payments": b.payments,
                "events": b.events_filter}
    return {
        "timezone": report.timezone, "currency": report.currency, "days": report.days,
        "from": report.first_day.isoformat(), "to": report.last_day.isoformat(),
        "since": instant(report.since), "until": instant(report.until),
        "as_of": instant(report.as_of), "limit": report.limit,
        "top_users": [{"user_id": e.id, **earner(e), "events": e.events_filter}
                      for e in report.top_users],
        "top_devices": [{"device_id": e.id, **earner(e), "events": e.events_filter}
                        for e in report.top_devices],
        "shared_devices": [{"device_id": d.device_id, "users": d.users, "events_count": d.events,
                            "first_at": instant(d.first_at), "last_at": instant(d.last_at),
                            "events": d.events_filter} for d in report.shared_devices],
        "merchant_refunds": {
            "rewarded_payments": report.refunds.rewarded_payments,
            "refunded_payments": report.refunds.refunded_payments,
            "rate": _text(report.refunds.rate),
            "rule": {"rate_multiple": REFUND_MULTIPLE, "min_refunded": MIN_REFUNDED},
            "merchants": [{"merchant_id": m.merchant_id, "rewarded_payments": m.rewarded_payments,
                           "refunded_payments": m.refunded_payments, "rate": str(m.rate),
                           "flagged": m.flagged, "events": m.events_filter}
                          for m in report.refunds.merchants]},
        "min_amount_clusters": [{"campaign_id": c.campaign_id, "name": c.name,
                                 "status": c.status, "currency": c.currency,
                                 "min_amount": str(c.min_amount),
                                 "just_above": band(c.just_above),
                                 "just_below": band(c.just_below), "ratio": _text(c.ratio)}
                                for c in report.clusters],
        "cashback": {"month": report.cashback.month, "cap": _text(report.cashback.cap),
                     "users": [{"user_id": u.user_id, "rewards": u.rewards,
                                "cashback": str(u.cashback),
                                "share_of_cap": _text(u.share_of_cap), "at_cap": u.at_cap,
                                "events": u.events_filter} for u in report.cashback.users]},
    }
