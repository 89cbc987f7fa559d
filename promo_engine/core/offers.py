"""What a user can still earn (`GET /v1/users/{user_id}/offers`), judged in the core.

Pure, like the engine, because the wallet's list must judge a user exactly as events do:
the same compiled campaigns, the same per-user limits, the same `conditions.user` and the
same holdout hash (`core/targeting.py`), the same per-device limits when the wallet names
the device, the same denylist and the same risk policy (`core/risk.py`), so a user never
sees an offer the next payment would refuse for a reason the list could have known.

Unlike an event, an offer query describes a payment only in part: a condition on a value
that is not given (no amount: `min_amount`; no merchant: the merchant scope) is not judged.
Any payment value given narrows the list to the campaigns a payment can earn, so exchanges
(earned by a redemption naming them) and activation bonuses drop out then. What only the
campaign type's evaluator decides (e.g. whether this is the user's first activation) is
not judged: there is no event to evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Mapping

from promo_engine.core.campaign_type import UserState
from promo_engine.core.compiled import CompiledCampaign
from promo_engine.core.event import PAYMENT
from promo_engine.core.risk import NO_COUNTS, CompiledRiskPolicy


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    """The parts of a payment the wallet gave; None: not given, so not judged."""
    merchant_id: str | None = None
    mcc: str | None = None
    channel: str | None = None
    amount: Decimal | None = None

    @property
    def given(self) -> bool:
        return any(value is not None for value in
                   (self.merchant_id, self.mcc, self.channel, self.amount))


@dataclass(frozen=True, slots=True)
class Offer:
    compiled: CompiledCampaign
    in_window_now: bool
    uses_left: int | None  # None: the campaign has no per-user (or per-device) limit


def offers(campaigns: Iterable[CompiledCampaign], user: UserState, payment: PaymentFilter,
           now: datetime, usage: Mapping[str, tuple[int, int]], *,
           device_given: bool = False, risk: CompiledRiskPolicy | None = None,
           money_campaigns: frozenset[str] = frozenset()) -> list[Offer]:
    """The offers for `user` at `now`, highest priority first, then by campaign id.

    `usage`: (spent, redemptions) per campaign with a budget or max_redemptions, as
    `ledger/usage.current_usage` reads them (a campaign missing from it has used nothing).
    `device_given`: the wallet named the device, whose uses are in `user` (per-device
    limits are judged only then, as an event without a device is not limited by them).
    `risk`: the program's risk policy in force, whose counters are `user.risk`;
    `money_campaigns`: the campaigns whose rewards are money, which the policy's money caps
    hold back once they have no room left.
    """
    if user.denied:  # a denied user (or device) earns no campaign reward at all
        return []
    money_room = True
    if risk is not None:
        counters = user.risk or NO_COUNTS
        if risk.refusal(counters, device_given) is not None:
            return []
        money_room = has_money_room(risk, counters, device_given)
    found = []
    for compiled in sorted(campaigns, key=lambda c: c.sort_key):
        if now >= compiled.ends_at:  # over: it can give nothing again
            continue
        if payment.given and not payment_may_earn(compiled, payment):
            continue
        if not has_room(compiled, usage.get(compiled.id, (0, 0))):
            continue
        if not money_room and compiled.id in money_campaigns:
            continue
        if compiled.targeted and not compiled.targets(user, now):
            continue
        left = uses_left(compiled, user, now, device_given)
        if left is not None and left <= 0:
            continue
        found.append(Offer(compiled, in_window_now(compiled, now), left))
    return found


def payment_may_earn(compiled: CompiledCampaign, payment: PaymentFilter) -> bool:
    """Whether a payment with the given values can earn the campaign, judging only the
    conditions on values given (the engine's checks of `conditions_hold`, one by one)."""
    if compiled.is_exchange or PAYMENT not in compiled.triggers:
        return False
    merchants = compiled.campaign.merchants
    if payment.merchant_id is not None and merchants is not None and \
            payment.merchant_id not in merchants:
        return False
    if payment.amount is not None and compiled.min_amount is not None and \
            payment.amount < compiled.min_amount:
        return False
    if payment.mcc is not None and compiled.mcc is not None and payment.mcc not in compiled.mcc:
        return False
    return payment.channel is None or compiled.channels is None or \
        payment.channel in compiled.channels


def has_room(compiled: CompiledCampaign, used: tuple[int, int]) -> bool:
    """Whether the budget and max_redemptions have any room left. How big the next reward
    is depends on the event, so any room counts."""
    spent, redemptions = used
    if compiled.budget_limit is not None and spent >= compiled.budget_limit:
        return False
    return compiled.max_redemptions is None or redemptions < compiled.max_redemptions


def has_money_room(risk: CompiledRiskPolicy, counters, device_given: bool) -> bool:
    """Whether the policy's daily money caps leave any room for the user (and the device,
    when given). How big the next reward is depends on the event, so any room counts; the
    monthly cashback cap is not judged here, as whether a money reward is cashback is the
    campaign type's to decide at the event."""
    if risk.user_minor is not None and counters.user_day_minor >= risk.user_minor:
        return False
    return not (device_given and risk.device_minor is not None
                and counters.device_day_minor >= risk.device_minor)


def uses_left(compiled: CompiledCampaign, user: UserState, now: datetime,
              device_given: bool = False) -> int | None:
    """What the limits leave: per_user ever and per_user_daily today (in the campaign's
    zone), and with the device given per_device and per_device_daily, the smallest; None
    without such limits."""
    left = []
    today = None
    if compiled.per_user is not None:
        left.append(compiled.per_user - user.campaign_uses.get(compiled.id, 0))
    if compiled.per_user_daily is not None:
        today = now.astimezone(compiled.zone).date()
        left.append(compiled.per_user_daily - user.daily_uses.get((compiled.id, today), 0))
    if device_given:
        if compiled.per_device is not None:
            left.append(compiled.per_device - user.device_uses.get(compiled.id, 0))
        if compiled.per_device_daily is not None:
            today = today or now.astimezone(compiled.zone).date()
            left.append(compiled.per_device_daily
                        - user.device_daily_uses.get((compiled.id, today), 0))
    return min(left) if left else None


def in_window_now(compiled: CompiledCampaign, now: datetime) -> bool:
    """Whether `now` is inside the campaign's dates and one of its windows (local time)."""
    if not (compiled.starts_at <= now < compiled.ends_at):
        return False
    local = now.astimezone(compiled.zone)
    return not compiled.windows or any(window.contains(local.weekday(), local.time())
                                       for window in compiled.windows)
