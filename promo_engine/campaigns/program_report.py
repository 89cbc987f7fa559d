"""The bank's view of activation: the whole program's figures over a range of local days, read
from the ledger (`promo-engine report program`, the portal's Program page).

Marketing runs campaigns to get wallet users to activate and then to pay; this report says
how many did, how fast, and what each campaign spent per new user. Definitions (docs/portal.md
"Program report" repeats them for readers):

- Days and weeks are in the program timezone (PROMO_TIMEZONE); weeks are ISO weeks, Monday to
  Sunday. The range is [first_day, last_day], both included; by default the 12 weeks ending
  with the current one (from its Monday 11 weeks back to today).
- A user's activation is their first activation event ever (`occurred_at`); the report counts
  the users whose activation falls in the range, per day.
- A cohort is the users activated in one week (only its days inside the range). A user "paid
  within N days" when their first payment ever occurred no later than N x 24 hours after the
  activation (a payment before the activation counts: that user had paid by then). Refunded
  payments count, as `conditions.user` counts them. The N-day share is not yet known (None)
  while some member has had less than N days: until N days after the cohort's last day ends.
- Weekly active payers: distinct users with a payment in the week (days inside the range).
- A campaign's cost: its grants (rewards rows without a `reason`) for events that occurred in
  the range, money (discounts, cashback, vouchers at face value) net of their reversals up
  to now, in the program currency; points net likewise, reported apart (points are no money).
  Its users: the distinct users with a grant not fully reversed. Of those, the activated
  users are the ones whose activation falls in the range, and the first-paying users the
  ones whose first payment ever falls in the range. Cost per activated (first-paying) user
  is the cost divided by that count, rounded half up to the currency's minor unit; None
  when the count is 0. The whole cost is divided, also what went to older users: the figure
  answers "what did each new user this campaign touched cost", not an uplift.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from promo_engine.core import money
from promo_engine.ledger.models import CampaignRecord, EventRecord, RewardRecord

ACTIVATION, PAYMENT = "activation", "payment"
WEEKS = 12
WINDOWS = (7, 30)
SHARE = Decimal("0.0001")  # shares to a hundredth of a percent


@dataclass(frozen=True)
class DayActivations:
    day: date
    activations: int


@dataclass(frozen=True)
class Cohort:
    week: date          # the Monday
    first_day: date     # the week's days inside the range
    last_day: date
    users: int
    paid_7d: int | None     # None: not yet known
    paid_30d: int | None
    share_7d: Decimal | None
    share_30d: Decimal | None


@dataclass(frozen=True)
class WeekPayers:
    week: date
    first_day: date
    last_day: date
    payers: int


@dataclass(frozen=True)
class CampaignCost:
    campaign_id: str
    name: str
    cost: Decimal
    points: int
    users: int
    activated_users: int
    first_paying_users: int
    cost_per_activated_user: Decimal | None
    cost_per_first_paying_user: Decimal | None


@dataclass(frozen=True)
class ProgramReport:
    timezone: str
    currency: str
    first_day: date
    last_day: date
    as_of: datetime
    days: list[DayActivations]
    cohorts: list[Cohort]
    weeks: list[WeekPayers]
    campaigns: list[CampaignCost]


class RangeError(ValueError):
    """A range the report cannot cover (the message names the option)."""


def default_range(today: date) -> tuple[date, date]:
    """The 12 ISO weeks ending with today's: from the Monday 11 weeks back to today."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=WEEKS - 1), today


def check_range(first_day: date, last_day: date) -> None:
    if last_day < first_day:
        raise RangeError(f"--to {last_day.isoformat()} is before --from {first_day.isoformat()}")
    if (last_day - first_day).days >= 366 * 3:
        raise RangeError("the range is longer than 3 years; choose a shorter --from/--to")


def _start(day: date, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the local day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


def _weeks(first_day: date, last_day: date) -> list[tuple[date, date, date]]:
    """(Monday, first day in range, last day in range) of each ISO week the range touches."""
    out = []
    monday = first_day - timedelta(days=first_day.weekday())
    while monday <= last_day:
        out.append((monday, max(monday, first_day), min(monday + timedelta(days=6), last_day)))
        monday += timedelta(weeks=1)
    return out


def _first(event_type: str):
    return (select(EventRecord.user_id, func.min(EventRecord.occurred_at).label("at"))
            .where(EventRecord.type == event_type).group_by(EventRecord.user_id).subquery())


def program_report(session, *, zone_name: str, currency: str, first_day: date, last_day: date,
                   now: datetime) -> ProgramReport:
    """The report over [first_day, last_day] as the ledger stands at `now` (aware)."""
    check_range(first_day, last_day)
    zone = ZoneInfo(zone_name)
    start, end = _start(first_day, zone), _start(last_day + timedelta(days=1), zone)
    activated, paid = _first(ACTIVATION), _first(PAYMENT)
    rows = session.execute(
        select(activated.c.user_id, activated.c.at, paid.c.at)
        .outerjoin(paid, paid.c.user_id == activated.c.user_id)
        .where(activated.c.at >= start, activated.c.at < end)).all()
    per_day: dict[date, int] = {}
    members: dict[date, list[tuple[datetime, datetime | None]]] = {}
    for _user, at, first_paid in rows:
        day = at.astimezone(zone).date()
        per_day[day] = per_day.get(day, 0) + 1
        members.setdefault(day - timedelta(days=day.weekday()), []).append((at, first_paid))
    days = [DayActivations(first_day + timedelta(days=i),
                           per_day.get(first_day + timedelta(days=i), 0))
            for i in range((last_day - first_day).days + 1)]
    cohorts, weeks = [], []
    for monday, week_first, week_last in _weeks(first_day, last_day):
        people = members.get(monday, [])
        ends = _start(week_last + timedelta(days=1), zone)
        paid_counts, shares = [], []
        for window in WINDOWS:
            if ends + timedelta(days=window) > now:
                paid_counts.append(None)
                shares.append(None)
                continue
            count = sum(1 for at, first_paid in people
                        if first_paid is not None and first_paid <= at + timedelta(days=window))
            paid_counts.append(count)
            shares.append((Decimal(count) / len(people)).quantize(SHARE, ROUND_HALF_UP)
                          if people else None)
        cohorts.append(Cohort(monday, week_first, week_last, len(people), paid_counts[0],
                              paid_counts[1], shares[0], shares[1]))
        weeks.append(WeekPayers(monday, week_first, week_last, 0))
    payers = _weekly_payers(session, [_start(w.first_day, zone) for w in weeks] + [end])
    weeks = [WeekPayers(w.week, w.first_day, w.last_day, payers.get(i, 0))
             for i, w in enumerate(weeks)]
    activated_users = {user for user, _at, _paid in rows}
    first_paying = set(session.scalars(select(paid.c.user_id)
                                       .where(paid.c.at >= start, paid.c.at < end)))
    campaigns = _campaign_costs(session, start, end, currency, activated_users, first_paying)
    return ProgramReport(zone_name, currency, first_day, last_day, now, days, cohorts, weeks,
                         campaigns)


def _weekly_payers(session, bounds: list[datetime]) -> dict[int, int]:
    """Distinct payers per week (index) in one pass: weeks are contiguous, so each payment's
    week is the first whose end is after it."""
    week = case(*[(EventRecord.occurred_at < bound, index)
                  for index, bound in enumerate(bounds[1:])], else_=None)
    return {int(index): int(count) for index, count in session.execute(
        select(week, func.count(func.distinct(EventRecord.user_id)))
        .where(EventRecord.type == PAYMENT, EventRecord.occurred_at >= bounds[0],
               EventRecord.occurred_at < bounds[-1])
        .group_by(week)).all()}


def _campaign_costs(session, start: datetime, end: datetime, currency: str,
                    activated: set[str], first_paying: set[str]) -> list[CampaignCost]:
    grants = (select(RewardRecord.id)
              .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
              .where(RewardRecord.campaign_id.is_not(None), RewardRecord.reason.is_(None),
                     RewardRecord.reverses_id.is_(None),
                     EventRecord.occurred_at >= start, EventRecord.occurred_at < end))
    reversed_by = dict(session.execute(
        select(RewardRecord.reverses_id,
               func.sum(func.coalesce(RewardRecord.points, RewardRecord.amount_minor)))
        .where(RewardRecord.reverses_id.in_(grants), RewardRecord.reason.is_(None))
        .group_by(RewardRecord.reverses_id)).all())
    totals: dict[str, list] = {}  # campaign id -> [cost minor, points, users]
    for reward_pk, campaign_id, user_id, kind, points, amount_minor in session.execute(
            select(RewardRecord.id, RewardRecord.campaign_id, RewardRecord.user_id,
                   RewardRecord.kind, RewardRecord.points, RewardRecord.amount_minor)
            .where(RewardRecord.id.in_(grants))):
        entry = totals.setdefault(campaign_id, [0, 0, set()])
        is_points = kind == "points"
        left = int((points if is_points else amount_minor) or 0) + int(reversed_by.get(reward_pk)
                                                                       or 0)
        entry[1 if is_points else 0] += left
        if left:
            entry[2].add(user_id)
    names = dict(session.execute(select(CampaignRecord.id, CampaignRecord.name)
                                 .where(CampaignRecord.id.in_(sorted(totals)))).all())
    out = []
    for campaign_id in sorted(totals):
        cost_minor, points, users = totals[campaign_id]
        cost = Decimal(cost_minor).scaleb(-money.minor_digits(currency))
        new, first = len(users & activated), len(users & first_paying)
        out.append(CampaignCost(campaign_id, names.get(campaign_id, campaign_id), cost, points,
                                len(users), new, first, _per(cost, new, currency),
                                _per(cost, first, currency)))
    return out


def _per(cost: Decimal, users: int, currency: str) -> Decimal | None:
    if not users:
        return None
    unit = Decimal(1).scaleb(-money.minor_digits(currency))
    return (cost / users).quantize(unit, ROUND_HALF_UP)


def _text(value) -> str | None:
    return None if value is None else str(value)


def report_json(report: ProgramReport) -> dict:
    """The `--json` object: decimals as strings, days as ISO dates, unknowns as null."""
    return {
        "timezone": report.timezone, "currency": report.currency,
        "from": report.first_day.isoformat(), "to": report.last_day.isoformat(),
        "as_of": report.as_of.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "activations_per_day": [{"day": d.day.isoformat(), "activations": d.activations}
                                for d in report.days],
        "cohorts": [{"week": c.week.isoformat(), "from": c.first_day.isoformat(),
                     "to": c.last_day.isoformat(), "users": c.users,
                     "paid_within_7_days": c.paid_7d, "share_7_days": _text(c.share_7d),
                     "paid_within_30_days": c.paid_30d, "share_30_days": _text(c.share_30d)}
                    for c in report.cohorts],
        "weekly_active_payers": [{"week": w.week.isoformat(), "from": w.first_day.isoformat(),
                                  "to": w.last_day.isoformat(), "payers": w.payers}
                                 for w in report.weeks],
        "campaigns": [{"campaign_id": c.campaign_id, "name": c.name, "cost": str(c.cost),
                       "points": c.points, "users": c.users,
                       "activated_users": c.activated_users,
                       "first_paying_users": c.first_paying_users,
                       "cost_per_activated_user": _text(c.cost_per_activated_user),
                       "cost_per_first_paying_user": _text(c.cost_per_first_paying_user)}
                      for c in report.campaigns],
    }


def report_csv(report: ProgramReport) -> str:
    """Four tables one after another, each under a line naming it and its header row,
    separated by an empty line (a spreadsheet opens it as one sheet); unknowns are empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    data = report_json(report)
    sections = (("activations_per_day", ["day", "activations"]),
                ("cohorts", ["week", "from", "to", "users", "paid_within_7_days", "share_7_days",
                             "paid_within_30_days", "share_30_days"]),
                ("weekly_active_payers", ["week", "from", "to", "payers"]),
                ("campaigns", ["campaign_id", "name", "cost", "points", "users",
                               "activated_users", "first_paying_users",
                               "cost_per_activated_user", "cost_per_first_paying_user"]))
    for index, (name, columns) in enumerate(sections):
        if index:
            writer.writerow([])
        writer.writerow([name])
        writer.writerow(columns)
        for row in data[name]:
            writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue()
