"""Why each candidate campaign did or did not reward an event: the answer to a customer's
"why didn't I get it?" (`POST /v1/quote?explain=true`).

The explanation describes the engine's own decision, never a second opinion: the decision
is `RulesEngine.evaluate_traced`, the full evaluation (every admitted campaign's reward, then
`_apply`), which gives the decision `evaluate` reaches lazily for every event (held equal by
tests/test_engine_lazy.py) and also each campaign's reward, which an explanation needs; the gate
is wrapped only to note what it refused, and a campaign that made no proposal is asked the
hot loop's questions again one by one, in the hot loop's order, so the first one that fails
is the one that stopped it. Exclusivity and stacking groups are read from the decision.
The program's abuse controls are explained the same way: a denied user or device stops
every campaign (the engine asks nothing else), the risk policy's refusal stops every
campaign that proposed a reward, and its money caps are told apart from the ledger's gate
by asking them again (`_risk_capped`). The hot path is untouched: nothing here runs unless
an explanation is asked for.

Reason codes are stable (clients and support tools switch on them); `detail` is English
text for people and may be reworded.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import NamedTuple

from promo_engine.core.campaign_type import EvaluationContext, UserState
from promo_engine.core.compiled import CompiledCampaign, attribute_text
from promo_engine.core.engine import Decision, Gate, RulesEngine
from promo_engine.core.event import Event
from promo_engine.core.rewards import CASHBACK, DISCOUNT, MONEY_KINDS, Reward
from promo_engine.core.risk import NO_COUNTS, CompiledRiskPolicy

APPLIED = "applied"
NOT_AT_MERCHANT = "not_at_merchant"
OUT_OF_WINDOW = "out_of_window"
CONDITION_FAILED = "condition_failed"
LIMIT_REACHED = "limit_reached"
DEVICE_LIMIT_REACHED = "device_limit_reached"
HELD_OUT = "held_out"
BUDGET_EXHAUSTED = "budget_exhausted"
BLOCKED_BY_EXCLUSIVE = "blocked_by_exclusive"
BEATEN_BY_MULTIPLIER = "beaten_by_multiplier"
NO_REWARD = "no_reward"
DENYLISTED = "denylisted"  # the user or the event's device is on the denylist
RISK_LIMIT_REACHED = "risk_limit_reached"  # the program's risk policy (`core/risk.py`)
REASONS = (APPLIED, NOT_AT_MERCHANT, OUT_OF_WINDOW, CONDITION_FAILED, LIMIT_REACHED,
           DEVICE_LIMIT_REACHED, HELD_OUT, BUDGET_EXHAUSTED, BLOCKED_BY_EXCLUSIVE,
           BEATEN_BY_MULTIPLIER, NO_REWARD, DENYLISTED, RISK_LIMIT_REACHED)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Explained(NamedTuple):
    campaign_id: str
    name: str
    applied: bool
    reason: str
    detail: str

    def as_json(self) -> dict:
        return {"campaign_id": self.campaign_id, "name": self.name, "applied": self.applied,
                "reason": self.reason, "detail": self.detail}


class _RecordingGate:
    """Passes every question to the real gate (or says yes without one, as the engine
    does) and notes the campaigns it was asked about and those it refused. The risk
    policy's money caps wrap it: what they refuse never reaches it."""

    def __init__(self, gate: Gate | None):
        self.gate = gate
        self.asked: set[str] = set()
        self.refused: set[str] = set()

    def reserve(self, campaign: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        self.asked.add(campaign.id)
        if self.gate is None or self.gate.reserve(campaign, reward, local_day):
            return True
        self.refused.add(campaign.id)
        return False


def explain_evaluation(engine: RulesEngine, event: Event, user: UserState,
                       gate: Gate | None = None, *, discounted: Decimal = Decimal(0)
                       ) -> tuple[Decision, list[Explained]]:
    """The engine's decision for the event (exactly `engine.evaluate`'s) and, for every
    candidate campaign in priority order, whether it applied and why (see `candidates`)."""
    recording = _RecordingGate(gate)
    decision, proposals = engine.evaluate_traced(event, user, recording, discounted=discounted)
    granted = {grant.campaign.id: grant for grant in decision.grants
               if grant.campaign is not None}
    proposed = {compiled.id: (compiled, reward) for compiled, reward, _ in proposals}
    by_id = {compiled.id: compiled for compiled, _, _ in proposals}
    # The exclusive campaign that applied first blocks every proposal of lower priority.
    blocker = next((by_id[g.campaign.id] for g in decision.grants
                    if g.campaign is not None and g.campaign.exclusive), None)
    winners = {}  # stacking group -> the member granted
    for compiled, reward, _ in proposals:
        if reward.stacking_group is not None and compiled.id in granted:
            winners[reward.stacking_group] = compiled
    # Why the program lets the event earn no campaign reward at all (denylist, risk policy)
    refusal = engine.risk_refusal(event, user)
    capped = {} if refusal is not None else _risk_capped(
        engine, event, user, decision, proposals, recording, blocker, discounted)
    explained = []
    for compiled in candidates(engine, event):
        campaign = compiled.campaign
        if compiled.id in granted:
            reason, detail = APPLIED, _applied_detail(engine.risk, granted[compiled.id])
        elif user.denied:  # the engine asks nothing else of a denied user or device
            reason, detail = DENYLISTED, refusal
        elif compiled.id in proposed:
            if refusal is not None:
                reason, detail = RISK_LIMIT_REACHED, refusal
            elif compiled.id in capped:
                reason, detail = RISK_LIMIT_REACHED, capped[compiled.id]
            else:
                reason, detail = _refusal(compiled, proposed[compiled.id][1],
                                          recording.refused, blocker, winners)
        else:
            reason, detail = _why_not(compiled, event, user, engine.base_points(event))
        explained.append(Explained(compiled.id, campaign.name, reason == APPLIED, reason,
                                   detail))
    return decision, explained


def candidates(engine: RulesEngine, event: Event) -> list[CompiledCampaign]:
    """What an explanation lists: the exchange a redemption names (alone), or else every
    open campaign (exchanges aside) with a trigger for the event's type, merchant-scoped
    ones at other merchants included, in priority order."""
    if event.campaign_id is not None:
        return list(engine.candidates(event))
    return sorted((c for c in engine.campaigns.values()
                   if not c.is_exchange and event.type in c.triggers),
                  key=lambda c: c.sort_key)


def _applied_detail(risk: CompiledRiskPolicy | None, grant) -> str:
    if not grant.held:
        return "applied"
    return (f"applied, held for review: cashback above the risk policy's "
            f"{risk.hold_above}")


def _risk_capped(engine: RulesEngine, event: Event, user: UserState, decision: Decision,
                 proposals, recording: _RecordingGate, blocker: CompiledCampaign | None,
                 discounted: Decimal) -> dict[str, str]:
    """The campaigns whose money reward the risk policy's money caps refused, with which
    cap: `RulesEngine._apply`'s money steps asked of the caps again, in its order, with the
    rewards it granted taken off what the caps leave. A reward the caps let through was
    asked of the ledger's gate (`recording.asked`); one never asked was refused by them,
    unless it was a discount that found nothing left of the payment."""
    risk = engine.risk
    if risk is None:
        return {}
    has_device = event.device_id is not None
    caps = risk.gate(None, user.risk or NO_COUNTS, has_device)
    if caps is None:
        return {}
    granted = {g.campaign.id: g.reward for g in decision.grants if g.campaign is not None}
    payable = event.amount
    if payable is not None and (discounted or event.redeem_points):
        payable = payable - engine.points_discount(event) - discounted
    capped = {}
    for compiled, reward, local_day in proposals:
        if blocker is not None and compiled.priority < blocker.priority:
            break
        if reward.stacking_group is not None or reward.kind not in MONEY_KINDS:
            continue  # groups are points multipliers: never capped as money
        if compiled.id in granted:
            reward = granted[compiled.id]
            caps.reserve(compiled, reward, local_day)
            if reward.kind == DISCOUNT:
                payable -= reward.amount
            continue
        if compiled.id in recording.asked:
            continue  # the caps let it through; the ledger's gate refused it
        if reward.kind == DISCOUNT:
            if payable <= 0:
                continue
            reward = reward._replace(amount=min(reward.amount, payable))
        detail = _cap_refusing(risk, caps, reward)
        if detail is not None:
            capped[compiled.id] = detail
    return capped


def _cap_refusing(risk: CompiledRiskPolicy, caps, reward: Reward) -> str | None:
    """Which of the caps has no room for the reward (in `RiskGate.reserve`'s order)."""
    cost = int(reward.amount.scaleb(risk.minor_digits))
    policy = risk.policy
    if caps.user_left is not None and cost > caps.user_left:
        return (f"the user's campaign rewards today would exceed the risk policy's "
                f"{policy.user_daily_reward_amount}")
    if caps.device_left is not None and cost > caps.device_left:
        return (f"the device's campaign rewards today would exceed the risk policy's "
                f"{policy.device_daily_reward_amount}")
    if reward.kind == CASHBACK and caps.cashback_left is not None and \
            cost > caps.cashback_left:
        return (f"the user's cashback this month would exceed the risk policy's "
                f"{policy.user_monthly_cashback}")
    return None


def _refusal(compiled: CompiledCampaign, reward: Reward, refused: set[str],
             blocker: CompiledCampaign | None, winners: dict) -> tuple[str, str]:
    """Why a campaign that proposed a reward was not granted it (`RulesEngine._apply`)."""
    if compiled.id in refused:
        limits = [name for name, value in (("budget", compiled.budget_limit),
                                           ("max_redemptions", compiled.max_redemptions))
                  if value is not None]
        return BUDGET_EXHAUSTED, f"no room left in the campaign's {' or '.join(limits)}"
    if blocker is not None and compiled.priority < blocker.priority:
        return BLOCKED_BY_EXCLUSIVE, (
            f"{blocker.id} ({blocker.campaign.name}, priority {blocker.priority}) is "
            f"exclusive and applied")
    winner = winners.get(reward.stacking_group)
    if winner is not None:
        return BEATEN_BY_MULTIPLIER, (
            f"{winner.id} ({winner.campaign.name}) won stacking group {reward.stacking_group}")
    if reward.kind == DISCOUNT:
        return NO_REWARD, "nothing of the payment was left to discount"
    return NO_REWARD, "not granted"


def _why_not(compiled: CompiledCampaign, event: Event, user: UserState,
             base_points: int) -> tuple[str, str]:
    """Why a candidate made no proposal: the hot loop's checks (`compiled.admitted`)
    asked again in its order (merchant scope, dates, conditions, hours, the user's limits,
    the device's, history, holdout, the type's evaluator); the first that fails is what
    stopped it."""
    merchants = compiled.campaign.merchants
    if event.campaign_id is None and merchants is not None and event.merchant_id not in merchants:
        where = ", ".join(sorted(merchants))
        return NOT_AT_MERCHANT, f"only at merchants {where}"
    occurred_at = event.occurred_at
    if not (compiled.starts_at <= occurred_at < compiled.ends_at):
        starts, ends = (at.astimezone(compiled.zone) for at in (compiled.starts_at,
                                                                  compiled.ends_at))
        return OUT_OF_WINDOW, (f"dates: runs from {starts:%Y-%m-%d %H:%M} until "
                               f"{ends:%Y-%m-%d %H:%M} ({compiled.campaign.timezone})")
    failed = _failed_condition(compiled, event)
    if failed is not None:
        return CONDITION_FAILED, failed
    local = occurred_at.astimezone(compiled.zone)
    weekday, time_of_day, local_day = local.weekday(), local.time(), local.date()
    if compiled.windows and not any(w.contains(weekday, time_of_day) for w in compiled.windows):
        return OUT_OF_WINDOW, (f"hours: {_WEEKDAYS[weekday]} {time_of_day:%H:%M} in "
                               f"{compiled.campaign.timezone} is outside the campaign's hours")
    used = user.campaign_uses.get(compiled.id, 0)
    if compiled.per_user is not None and used >= compiled.per_user:
        return LIMIT_REACHED, f"per_user: {used} of {compiled.per_user} used"
    used_today = user.daily_uses.get((compiled.id, local_day), 0)
    if compiled.per_user_daily is not None and used_today >= compiled.per_user_daily:
        return LIMIT_REACHED, (f"per_user_daily: {used_today} of {compiled.per_user_daily} "
                               f"used on {local_day.isoformat()}")
    if event.device_id is not None:  # an event without a device is not limited by it
        on_device = user.device_uses.get(compiled.id, 0)
        if compiled.per_device is not None and on_device >= compiled.per_device:
            return DEVICE_LIMIT_REACHED, (f"per_device: {on_device} of {compiled.per_device} "
                                          f"used on device {event.device_id}")
        on_device_today = user.device_daily_uses.get((compiled.id, local_day), 0)
        if compiled.per_device_daily is not None and \
                on_device_today >= compiled.per_device_daily:
            return DEVICE_LIMIT_REACHED, (
                f"per_device_daily: {on_device_today} of {compiled.per_device_daily} used "
                f"on device {event.device_id} on {local_day.isoformat()}")
    failed = _failed_history(compiled, user, occurred_at)
    if failed is not None:
        return CONDITION_FAILED, failed
    if compiled.holds_out(user.user_id):
        return HELD_OUT, f"the user is in the campaign's {compiled.holdout}% control group"
    try:
        reward = compiled.evaluate(EvaluationContext(event=event, user=user,
                                                     base_points=base_points))
    except Exception:  # the engine already reported it (on_error) when it decided
        return NO_REWARD, "the campaign's type failed on this event"
    if reward is None:
        return NO_REWARD, "the campaign's type gives no reward for this event"
    return NO_REWARD, "not granted"


def _failed_condition(compiled: CompiledCampaign, event: Event) -> str | None:
    """The first of the event's conditions that fails, named as in the campaign file."""
    amount = event.amount
    if compiled.min_amount is not None and (amount is None or amount < compiled.min_amount):
        shown = "no amount" if amount is None else f"the amount {amount}"
        return f"min_amount: {shown} is below {compiled.min_amount}"
    if compiled.mcc is not None and event.mcc not in compiled.mcc:
        return f"mcc: {_shown(event.mcc)} is not one of {', '.join(sorted(compiled.mcc))}"
    if compiled.channels is not None and event.channel not in compiled.channels:
        return (f"channels: {_shown(event.channel)} is not one of "
                f"{', '.join(sorted(compiled.channels))}")
    for name, accepted in compiled.attributes:
        if name not in event.attributes:
            return f"attributes.{name}: the event has no {name}"
        value = attribute_text(event.attributes[name])
        if value not in accepted:
            return f"attributes.{name}: {value} is not one of {', '.join(sorted(accepted))}"
    return None


def _shown(value) -> str:
    return "none given" if value is None else str(value)


def _failed_history(compiled: CompiledCampaign, user: UserState, occurred_at) -> str | None:
    """The first of `conditions.user` that fails (the order of `history_matches`)."""
    conditions = compiled.user_conditions
    if conditions is None or compiled.history_matches(user, occurred_at):
        return None
    payments = user.payments
    if conditions.min_payments is not None and payments < conditions.min_payments:
        return (f"user.min_payments: the user has {payments} payments, needs at least "
                f"{conditions.min_payments}")
    if conditions.max_payments is not None and payments > conditions.max_payments:
        return (f"user.max_payments: the user has {payments} payments, at most "
                f"{conditions.max_payments} qualify")
    last = user.last_payment_at
    if last is None:
        return (f"user.inactive_days: the user has never paid "
                f"({conditions.inactive_days} days since a payment needed)")
    idle = (occurred_at - last).days
    return (f"user.inactive_days: {idle} days since the last payment, "
            f"{conditions.inactive_days} needed")
