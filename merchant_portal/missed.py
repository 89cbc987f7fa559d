"""Payments at the merchant that the offer's own limits kept from it, read from the ledger.

Next to the campaigns that outranked an offer (`outranked.py`), the results page counts the
payments the offer turned away itself, with the engine's explain reasons
(`promo_engine/core/explain.py`):

* `limit_reached`: the customer had already used the offer `per_user` times, or
  `per_user_daily` times that local day;
* `budget_exhausted`: the offer's budget was already used up, or all of its
  `max_redemptions` had been made.

Only payments the offer could otherwise have rewarded count: at its merchant, in its dates
and hours, at least its minimum payment, not refunded in full, not taken by a campaign that
outranks it. What was used is counted as the engine saw it when the payment came, from the
offer's rewards recorded before it (a refund of an earlier payment gives its use back only
when it came first), so a line never claims a limit that was not reached; a payment that
found some budget left but not enough for its reward is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from merchant_portal.offers import validate
from merchant_portal.outranked import outranked_events, payments_without_the_offer
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.core import money
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, EventRecord, RewardRecord

LIMIT_REACHED = "limit_reached"
BUDGET_EXHAUSTED = "budget_exhausted"
# Which limit: the customer's, the customer's that day, the offer's redemptions, its budget.
PER_USER, PER_USER_DAILY, MAX_REDEMPTIONS, BUDGET = ("per_user", "per_user_daily",
                                                     "max_redemptions", "budget")
REASON_OF = {PER_USER: LIMIT_REACHED, PER_USER_DAILY: LIMIT_REACHED,
             MAX_REDEMPTIONS: BUDGET_EXHAUSTED, BUDGET: BUDGET_EXHAUSTED}
ORDER = (PER_USER, PER_USER_DAILY, MAX_REDEMPTIONS, BUDGET)  # the engine's order


@dataclass(frozen=True)
class Missed:
    limit: str      # PER_USER | PER_USER_DAILY | MAX_REDEMPTIONS | BUDGET
    payments: int
    value: int      # the limit: uses, redemptions, or the budget (minor units or points)

    @property
    def reason(self) -> str:
        return REASON_OF[self.limit]


@dataclass(frozen=True)
class _Grant:
    event_pk: int
    user_id: str
    local_day: object
    value: int        # minor units or points; negative for a reversal
    counts: bool      # a redemption that still counts (not reversed, refunded or cancelled)


def _grants(campaign_id: str) -> list[_Grant]:
    rows = db.session.execute(
        select(RewardRecord.event_pk, RewardRecord.user_id, RewardRecord.local_day,
               RewardRecord.points, RewardRecord.amount_minor, RewardRecord.reverses_id,
               EventRecord.amount_minor, EventRecord.refunded_minor, EventRecord.cancelled_by_pk)
        .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
        .where(RewardRecord.campaign_id == campaign_id, RewardRecord.reason.is_(None))).all()
    grants = []
    for pk, user, day, points, amount, reverses, paid, refunded, cancelled in rows:
        whole_refund = paid is not None and refunded >= paid
        counts = reverses is None and cancelled is None and not whole_refund
        grants.append(_Grant(pk, user, day, int(points if points is not None else amount or 0),
                             counts))
    return grants


def _budget_total(campaign) -> int | None:
    if campaign.budget is None:
        return None
    if campaign.budget.points is not None:
        return campaign.budget.points
    return money.to_minor(Decimal(campaign.budget.amount), campaign.currency)


def missed_for(campaign_id: str | None) -> list[Missed]:
    """Payments the offer's limits turned away, one entry per limit, in the engine's order."""
    if campaign_id is None:
        return []
    record = db.session.get(CampaignRecord, campaign_id)
    if record is None:
        return []
    try:
        campaign = validate(record.spec)
    except CampaignInvalid:
        return []
    taken = outranked_events(record)
    events = db.session.execute(
        select(EventRecord.id, EventRecord.user_id, EventRecord.occurred_at,
               EventRecord.amount_minor, EventRecord.currency)
        .where(EventRecord.id.in_(payments_without_the_offer(record)))
        .order_by(EventRecord.id)).all()
    grants = _grants(campaign_id)
    limits, budget = campaign.limits, _budget_total(campaign)
    values = {PER_USER: limits.per_user, PER_USER_DAILY: limits.per_user_daily,
              MAX_REDEMPTIONS: limits.max_redemptions, BUDGET: budget}
    counts: dict[str, int] = {}
    for pk, user_id, occurred_at, amount_minor, currency in events:
        if pk in taken or not _could_apply(campaign, occurred_at, amount_minor, currency):
            continue
        before = [g for g in grants if g.event_pk < pk]
        day = occurred_at.astimezone(ZoneInfo(campaign.timezone)).date()
        used = {PER_USER: sum(g.counts and g.user_id == user_id for g in before),
                PER_USER_DAILY: sum(g.counts and g.user_id == user_id and g.local_day == day
                                    for g in before),
                MAX_REDEMPTIONS: sum(g.counts for g in before),
                BUDGET: sum(g.value for g in before)}
        limit = next((name for name in ORDER
                      if values[name] is not None and used[name] >= values[name]), None)
        if limit is not None:
            counts[limit] = counts.get(limit, 0) + 1
    return [Missed(name, counts[name], values[name]) for name in ORDER if name in counts]


def _could_apply(campaign, occurred_at, amount_minor, currency) -> bool:
    """In the offer's hours and at least its minimum payment (merchant and dates are
    already the query's)."""
    local = occurred_at.astimezone(ZoneInfo(campaign.timezone))
    if campaign.windows and not any(w.contains(local.weekday(), local.time())
                                    for w in campaign.windows):
        return False
    minimum = campaign.conditions.min_amount
    if minimum is None:
        return True
    if amount_minor is None or currency != campaign.currency:
        return False
    return amount_minor >= money.to_minor(minimum, campaign.currency)
