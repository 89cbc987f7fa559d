"""A campaign's results read from the ledger (`promo-engine campaigns report`): what it
granted, what that cost, what is left of its budget, and, for a campaign with a `holdout`,
its control group against the rest.

The figures use the definitions of `campaigns simulate --json`, so a back-test and the live
result can be put side by side: `rewards` are the campaign's grants not fully reversed by
refunds or cancels, `users` the distinct users with such a grant, `cost` the money grants
(discounts, cashback, vouchers at face value) and `points` the points grants, both net of
their reversals.

The holdout comparison (see docs/measuring.md):
- the users compared are those with an event the campaign's type triggers on (its
  `triggers`: payments for a discount or multiplier, activations or payments for a welcome
  bonus, redemptions for an exchange), recorded with `occurred_at` in [starts_at, ends_at),
  at one of the campaign's merchants when it names any (an event without a merchant is then
  not in its scope, as in the engine);
- each is in the control group when `held_out(campaign id, user id, holdout)` says so (the
  same hash as events, quotes and offers), in the treatment group otherwise;
- per user: the payments recorded in [starts_at, ends_at) at the campaign's merchants (any
  merchant when it names none), refunded ones included (as `conditions.user` counts them),
  and the spend, each payment's amount less what has been refunded of it so far.
Recurring `windows` and `conditions` are not applied: whether a payment falls in them can be
what the campaign changed, and the groups must be chosen by something it cannot change.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from sqlalchemy import func, select

from promo_engine.core.campaign import Campaign
from promo_engine.core.money import from_minor, minor_digits
from promo_engine.core.targeting import held_out
from promo_engine.core.uplift import welch_interval
from promo_engine.ledger.models import EventRecord, RewardRecord

PAYMENT = "payment"
COUNT_DIGITS = 4  # payments per user are printed to 4 decimals


@dataclass(frozen=True)
class Group:
    """Control or treatment: its users and their means (None for a group without users)."""
    users: int
    payments_per_user: Decimal | None
    spend_per_user: Decimal | None


@dataclass(frozen=True)
class Difference:
    """Treatment minus control, and its 95% Welch interval (None when either group has
    fewer than 2 users; the difference itself is None when either group is empty)."""
    difference: Decimal | None
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True)
class Holdout:
    percent: int
    control: Group
    treatment: Group
    uplift: dict[str, Difference]  # "payments_per_user", "spend_per_user"


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    name: str
    type: str
    currency: str
    rewards: int
    users: int
    cost: Decimal
    points: int
    budget_unit: str | None  # "money" | "points" | None (no budget)
    budget_left: Decimal | int | None
    holdout: Holdout | None


def campaign_report(session, campaign: Campaign, triggers: frozenset[str]) -> CampaignReport:
    """The campaign's results from the ledger rows (`triggers`: its type's event types)."""
    currency = campaign.currency
    rewards, users, cost_minor, points = _granted(session, campaign.id)
    budget_left: Decimal | int | None = None
    budget = campaign.budget
    if budget is not None and budget.unit == "points":
        budget_left = budget.points - points
    elif budget is not None:
        budget_left = budget.amount - from_minor(cost_minor, currency)
    holdout = None
    if campaign.holdout > 0:
        holdout = _holdout(session, campaign, triggers)
    return CampaignReport(campaign_id=campaign.id, name=campaign.name, type=campaign.type,
                          currency=currency, rewards=rewards, users=users,
                          cost=from_minor(cost_minor, currency), points=points,
                          budget_unit=budget.unit if budget is not None else None,
                          budget_left=budget_left, holdout=holdout)


def _granted(session, campaign_id: str) -> tuple[int, int, int, int]:
    """(rewards, users, cost in minor units, points), net of reversals."""
    grants = select(RewardRecord.id).where(
        RewardRecord.campaign_id == campaign_id, RewardRecord.reason.is_(None),
        RewardRecord.reverses_id.is_(None))
    reversed_by = dict(session.execute(
        select(RewardRecord.reverses_id,
               func.sum(func.coalesce(RewardRecord.points, RewardRecord.amount_minor)))
        .where(RewardRecord.reverses_id.in_(grants))
        .group_by(RewardRecord.reverses_id)).all())
    rewards, cost, points = 0, 0, 0
    users: set[str] = set()
    rows = session.execute(select(RewardRecord.id, RewardRecord.user_id, RewardRecord.kind,
                                  RewardRecord.points, RewardRecord.amount_minor)
                           .where(RewardRecord.id.in_(grants)))
    for reward_pk, user_id, kind, reward_points, amount_minor in rows:
        is_points = kind == "points"
        left = (reward_points if is_points else amount_minor) + int(reversed_by.get(reward_pk) or 0)
        if is_points:
            points += left
        else:
            cost += left
        if left:
            rewards += 1
            users.add(user_id)
    return rewards, len(users), cost, points


def _in_scope(query, campaign: Campaign):
    query = query.where(EventRecord.occurred_at >= campaign.starts_at,
                        EventRecord.occurred_at < campaign.ends_at)
    if campaign.merchants is not None:
        query = query.where(EventRecord.merchant_id.in_(sorted(campaign.merchants)))
    return query


def _holdout(session, campaign: Campaign, triggers: frozenset[str]) -> Holdout:
    eligible = session.scalars(_in_scope(
        select(EventRecord.user_id).distinct().where(EventRecord.type.in_(sorted(triggers))),
        campaign)).all()
    per_user: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    rows = session.execute(_in_scope(
        select(EventRecord.user_id, func.count(),
               func.sum(EventRecord.amount_minor - EventRecord.refunded_minor))
        .where(EventRecord.type == PAYMENT), campaign).group_by(EventRecord.user_id))
    for user_id, payments, spend in rows:
        per_user[user_id] = (int(payments), int(spend or 0))
    groups: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    for user_id in eligible:
        groups[held_out(campaign.id, user_id, campaign.holdout)].append(per_user[user_id])
    control, treatment = groups[True], groups[False]
    digits = minor_digits(campaign.currency)
    uplift = {
        "payments_per_user": _difference([p for p, _ in treatment], [p for p, _ in control],
                                         COUNT_DIGITS, 0),
        "spend_per_user": _difference([s for _, s in treatment], [s for _, s in control],
                                      digits, digits)}
    return Holdout(percent=campaign.holdout, control=_group(control, digits),
                   treatment=_group(treatment, digits), uplift=uplift)


def _group(values: list[tuple[int, int]], digits: int) -> Group:
    if not values:
        return Group(0, None, None)
    n = len(values)
    return Group(n, _decimal(Fraction(sum(p for p, _ in values), n), COUNT_DIGITS),
                 _decimal(Fraction(sum(s for _, s in values), n * 10 ** digits), digits))


def _difference(treatment: list[int], control: list[int], places: int,
                minor: int) -> Difference:
    """Means compared exactly (fractions of the integer values); the interval's half-width
    is a float estimate. `minor`: the values are in units of 10^-minor."""
    if not treatment or not control:
        return Difference(None, None, None)
    scale = 10 ** minor
    exact = (Fraction(sum(treatment), len(treatment)) - Fraction(sum(control), len(control))) \
        / scale
    interval = welch_interval([float(v) for v in treatment], [float(v) for v in control])
    if interval.low is None:
        return Difference(_decimal(exact, places), None, None)
    half = Fraction(interval.high - interval.low) / 2 / scale
    return Difference(_decimal(exact, places), _decimal(exact - half, places),
                      _decimal(exact + half, places))


def _decimal(value: Fraction, places: int) -> Decimal:
    """A fraction rounded half-up to `places` decimals."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
