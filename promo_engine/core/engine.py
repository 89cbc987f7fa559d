"""The pure rules core: an event, the compiled open campaigns and the user's counters in,
a decision out. No Flask, no SQLAlchemy: the API, quotes and back-tests share this code.

Campaign-wide limits (budget, max_redemptions) are shared between users, so the engine
cannot know whether they have room; it asks a `Gate`, which the ledger implements with a
guarded update inside its transaction and a quote implements read-only. The engine keeps
the order of the questions (priority, exclusivity, highest multiplier) in one place.

Exchange campaigns (a type whose `cost_points` is a number) are kept apart: they apply only
to a redemption that names them by `campaign_id`, so no other event ever looks at them.
"""
from __future__ import annotations

import logging
from decimal import ROUND_FLOOR, Decimal
from typing import Callable, Iterable

from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import EvaluationContext, Stacking, UserState
from promo_engine.core.compiled import DENIED, CompiledCampaign, admitted
from promo_engine.core.event import PAYMENT, Event
from promo_engine.core.grants import (Decision, Gate, Grant, insert_in_priority_order,
                                      mark_held, new, settle_group)
from promo_engine.core.lazy import checked_reward, decide
from promo_engine.core.registry import Registry
from promo_engine.core.rewards import DISCOUNT, points_reward
from promo_engine.core.risk import NO_COUNTS, CompiledRiskPolicy, RiskPolicy

log = logging.getLogger(__name__)

DEFAULT_POINT_VALUE = Decimal("0.01")  # money per point when points pay part of a payment
_ZERO = Decimal(0)

__all__ = ["CompiledCampaign", "Decision", "Gate", "Grant", "RulesEngine"]


ErrorHook = Callable[[Campaign, BaseException], None]


def _log_error(campaign: Campaign, exc: BaseException) -> None:
    log.error("campaign %s (type %s) raised %r; skipped", campaign.id, campaign.type, exc,
              exc_info=exc)


# What the hot loop reads of a candidate that many campaigns hold equal: dates, mcc and
# channel sets, windows. Immutable values that compare equal mean the same thing here.
_SHARED_FIELDS = ("starts_at", "ends_at", "mcc", "channels", "window_spans")


def _share_equal_values(compiled: CompiledCampaign, shared: dict) -> None:
    """Make the campaign's equal values one object with the other campaigns' (`shared`,
    value -> the first object of that value). The engine's loop reads them for every
    candidate; a season's campaigns share a few dates, sets and windows, and a few shared
    objects stay in the CPU caches where thousands of equal copies would not: at 10,000
    campaigns, a candidate out of the caches cost the engine twice the floor's before."""
    for field in _SHARED_FIELDS:
        value = getattr(compiled, field)
        if value is not None:
            setattr(compiled, field, shared.setdefault(value, value))


class RulesEngine:
    """Compiled open campaigns indexed by trigger and merchant.

    The cost of an event follows the campaigns that could apply to it (its merchant's and
    the bank-wide ones for its type), not the number of campaigns that exist.

    `point_value` is the money one point is worth when a payment's `redeem_points` pay part
    of it: that part earns no base points and leaves less for campaign discounts.

    `risk_policy`: the program's caps across campaigns and its holds (`core/risk.py`).
    """

    def __init__(self, campaigns: Iterable[CompiledCampaign], *, currency: str,
                 points_per_unit: Decimal, minor_digits: int = 2,
                 on_error: ErrorHook = _log_error,
                 point_value: Decimal = DEFAULT_POINT_VALUE,
                 risk_policy: RiskPolicy | None = None):
        self.currency = currency
        self.risk_policy = risk_policy
        self.risk = (CompiledRiskPolicy(risk_policy, minor_digits)
                     if risk_policy is not None and not risk_policy.is_empty else None)
        self.points_per_unit = points_per_unit
        self.point_value = point_value
        self.minor_digits = minor_digits
        self.on_error = on_error
        self.campaigns: dict[str, CompiledCampaign] = {}
        # Exchanges by id, each alone in the tuple `candidates` returns for its redemptions.
        self._exchanges: dict[str, tuple[CompiledCampaign]] = {}
        by_merchant: dict[str, dict[str, list[CompiledCampaign]]] = {}
        bank_wide: dict[str, list[CompiledCampaign]] = {}
        shared: dict = {}  # see _share_equal_values
        for compiled in campaigns:
            self.campaigns[compiled.id] = compiled
            _share_equal_values(compiled, shared)
            if compiled.cost_points is not None:
                self._exchanges[compiled.id] = (compiled,)
                continue
            for trigger in compiled.triggers:
                merchants = compiled.campaign.merchants
                if merchants is None:
                    bank_wide.setdefault(trigger, []).append(compiled)
                else:
                    per_trigger = by_merchant.setdefault(trigger, {})
                    for merchant in merchants:
                        per_trigger.setdefault(merchant, []).append(compiled)
        order = lambda c: c.sort_key  # noqa: E731
        self._bank_wide = {t: tuple(sorted(cs, key=order)) for t, cs in bank_wide.items()}
        # Each merchant's tuple already holds the bank-wide campaigns of its trigger, merged
        # in priority order once here rather than sorted again for every event.
        self._by_merchant = {
            t: {m: tuple(sorted(cs + list(self._bank_wide.get(t, ())), key=order))
                for m, cs in per.items()}
            for t, per in by_merchant.items()}
        # Decisions and base-points grants are immutable and depend only on the base
        # points, so the common ones are built once and shared (see _plain_decision). They
        # are keyed by the points, not the amount: redeem_points lower the base points, and
        # whatever led to a number of points, its plain decision is the same.
        self._plain_decisions: dict[int, Decision] = {}
        self._base_grants: dict[int, Grant] = {}

    @classmethod
    def compile(cls, campaigns: Iterable[Campaign], registry: Registry, *, currency: str,
                points_per_unit: Decimal, minor_digits: int = 2,
                on_error: ErrorHook = _log_error,
                point_value: Decimal = DEFAULT_POINT_VALUE,
                risk_policy: RiskPolicy | None = None) -> "RulesEngine":
        """Compile each campaign once; a type that fails to compile skips only its campaign."""
        compiled = []
        for campaign in campaigns:
            campaign_type = registry.campaign_type(campaign.type)
            if campaign_type is None:
                on_error(campaign, LookupError(f"no campaign type {campaign.type!r} is installed"))
                continue
            try:
                evaluate = campaign_type.compile(campaign)
                triggers = frozenset(campaign_type.triggers(campaign.params))
                cost_points = campaign_type.cost_points(campaign.params)
                if cost_points is not None and \
                        (type(cost_points) is not int or cost_points < 1):
                    raise ValueError(f"cost_points returned {cost_points!r}, not an int >= 1")
                stacking = campaign_type.stacking(campaign.params)
                if stacking is not None and not (
                        isinstance(stacking, tuple) and len(stacking) == 2
                        and isinstance(stacking[0], str) and stacking[0]
                        and isinstance(stacking[1], Decimal) and stacking[1].is_finite()):
                    raise ValueError(f"stacking returned {stacking!r}, not (group, Decimal rank)")
            except Exception as exc:  # a plugin bug must not take the other campaigns down
                on_error(campaign, exc)
                continue
            compiled.append(CompiledCampaign(
                campaign, evaluate, triggers, minor_digits, cost_points,
                None if stacking is None else Stacking(*stacking)))
        return cls(compiled, currency=currency, points_per_unit=points_per_unit,
                   minor_digits=minor_digits, on_error=on_error, point_value=point_value,
                   risk_policy=risk_policy)

    def __len__(self) -> int:
        return len(self.campaigns)

    def candidates(self, event: Event) -> tuple[CompiledCampaign, ...]:
        """The campaigns whose trigger and merchant scope admit the event, in priority order.

        An event naming a campaign (a redemption exchanging points) has that exchange as its
        only candidate, or none; exchanges are no other event's candidates."""
        campaign_id = event.campaign_id
        if campaign_id is not None:
            alone = self._exchanges.get(campaign_id)
            return alone if alone is not None and event.type in alone[0].triggers else ()
        bank_wide = self._bank_wide.get(event.type, ())
        merchant_id = event.merchant_id
        if merchant_id:
            per_merchant = self._by_merchant.get(event.type)
            if per_merchant:
                return per_merchant.get(merchant_id, bank_wide)
        return bank_wide

    def exchange_campaign(self, campaign_id: str) -> CompiledCampaign | None:
        """The open exchange campaign of this id (its `cost_points` is the price), or None."""
        alone = self._exchanges.get(campaign_id)
        return None if alone is None else alone[0]

    def points_discount(self, event: Event) -> Decimal:
        """The money the event's `redeem_points` pay: points x point_value (0 without)."""
        if not event.redeem_points:
            return _ZERO
        return event.redeem_points * self.point_value

    def base_points(self, event: Event) -> int:
        """floor((amount - points_discount) x points_per_unit) for a payment, else 0: the
        part paid with points earns none."""
        if event.type != PAYMENT or not self.points_per_unit:
            return 0
        amount = event.amount
        if event.redeem_points:
            amount -= self.points_discount(event)
            if amount <= 0:
                return 0
        return int((amount * self.points_per_unit).to_integral_value(ROUND_FLOOR))

    def evaluate(self, event: Event, user: UserState, gate: Gate | None = None, *,
                 discounted: Decimal = _ZERO) -> Decision:
        """The decision for the event. `discounted` is the money of the payment already
        taken off before the campaigns (the discounts of the vouchers it uses): campaign
        discounts, like it, only take what is left after it and the points discount.

        Decided lazily (`core/lazy.py`): the same decision as `evaluate_traced`'s full
        evaluation, without calling the evaluators whose reward could not change it."""
        base = self.base_points(event)
        candidates = self.candidates(event) if not user.denied else None
        if not candidates:
            return self._plain_decision(base)
        risk = self.risk
        if risk is not None:
            gate = self._risk_gate(risk, event, user, gate)
            if gate is False:
                return self._plain_decision(base)
        payable = event.amount
        if payable is not None and (discounted or event.redeem_points):
            payable = payable - self.points_discount(event) - discounted
        granted = decide(candidates, event, user, base, gate, payable, self.on_error)
        if not granted:  # the value of the full path's decision without campaign grants
            return self._plain_decision(base)
        if base:
            granted.insert(0, self._base_grants.get(base) or self._base_grant(base))
        if risk is not None and risk.hold_above is not None:
            mark_held(risk, granted)
        return new(Decision, (tuple(granted), base))

    def evaluate_traced(self, event: Event, user: UserState, gate: Gate | None = None, *,
                        discounted: Decimal = _ZERO) -> tuple[Decision, tuple]:
        """`evaluate`'s decision by the full evaluation, also returning its proposals
        (campaign, reward, local day) in priority order, for `core/explain.py`: every
        admitted campaign's reward is computed, even those a higher multiplier beats or an
        exclusive grant blocks, because an explanation tells each one's fate. Kept apart so
        that the hot path pays nothing for explanations; tests hold the two to the same
        decision."""
        base = self.base_points(event)
        proposals = self._proposals(event, user, base) if not user.denied else None
        if not proposals:
            return self._plain_decision(base), ()
        risk = self.risk
        if risk is not None:
            gate = self._risk_gate(risk, event, user, gate)
            if gate is False:
                return self._plain_decision(base), tuple(proposals)
        grants: list[Grant] = [self._base_grant(base)] if base else []
        payable = event.amount
        if payable is not None and (discounted or event.redeem_points):
            payable = payable - self.points_discount(event) - discounted
        self._apply(proposals, gate, grants, payable)
        if risk is not None and risk.hold_above is not None:
            mark_held(risk, grants)
        return new(Decision, (tuple(grants), base)), tuple(proposals)

    def risk_refusal(self, event: Event, user: UserState) -> str | None:
        """Why the program's denylist or risk policy lets the event earn no campaign
        reward at all, or None (for explanations and the API's messages)."""
        if user.denied:
            return DENIED
        if self.risk is None:
            return None
        return self.risk.refusal(user.risk or NO_COUNTS, event.device_id is not None)

    @staticmethod
    def _risk_gate(risk: CompiledRiskPolicy, event: Event, user: UserState, gate):
        """The gate to evaluate with under the risk policy; False when the policy lets the
        event earn no campaign reward at all."""
        counters = user.risk or NO_COUNTS
        has_device = event.device_id is not None
        if risk.refusal(counters, has_device) is not None:
            return False
        return risk.gate(gate, counters, has_device) or gate

    def unavailable_reason(self, event: Event, user: UserState) -> str | None:
        """Why the exchange a redemption names does not apply to it now, in words for the
        API's message; None when it does, or when only what the ledger's gate decides
        (budget, stock) can still refuse it, or when the event names no campaign."""
        campaign_id = event.campaign_id
        if campaign_id is None:
            return None
        compiled = self.exchange_campaign(campaign_id)
        if compiled is None:
            if campaign_id in self.campaigns:
                return f"campaign {campaign_id} is not a points exchange"
            return f"campaign {campaign_id} is not open"
        if event.type not in compiled.triggers:
            return f"campaign {campaign_id} does not apply to a {event.type} event"
        refusal = self.risk_refusal(event, user)
        if refusal is not None:
            return refusal
        return compiled.unavailable_reason(
            EvaluationContext(event=event, user=user, base_points=self.base_points(event)))

    # Most events earn only their base points, and building a Reward, a Grant and a
    # Decision costs more than evaluating a handful of campaigns; all three are frozen, so
    # one instance per points value is shared. The caches stop growing at _CACHE_SIZE
    # entries (base points are small numbers for almost every payment).
    _CACHE_SIZE = 4096

    def _base_grant(self, base: int) -> Grant:
        grant = self._base_grants.get(base)
        if grant is None:
            grant = Grant(points_reward(base), None, None)
            if len(self._base_grants) < self._CACHE_SIZE:
                self._base_grants[base] = grant
        return grant

    def _plain_decision(self, base: int) -> Decision:
        decision = self._plain_decisions.get(base)
        if decision is None:
            decision = Decision(grants=(self._base_grant(base),) if base else (),
                                base_points=base)
            if len(self._plain_decisions) < self._CACHE_SIZE:
                self._plain_decisions[base] = decision
        return decision

    def _proposals(self, event: Event, user: UserState, base: int):
        """Every (campaign, reward, local day) that matches, before limits shared with
        others: the full evaluation, for explanations (`evaluate` decides lazily)."""
        proposals = []
        context = EvaluationContext(event=event, user=user, base_points=base)
        on_error = self.on_error
        for compiled, local_day in admitted(self.candidates(event), event, user):
            reward = checked_reward(compiled, context, on_error)
            if reward is not None:
                proposals.append((compiled, reward, local_day))
        return proposals

    def _apply(self, proposals, gate: Gate | None, grants: list[Grant],
               payable: Decimal | None) -> None:
        """Grant in priority order; a reward that does not fit is skipped, never cut down.

        Exclusivity comes first: an exclusive campaign that applied blocks every proposal
        of lower priority, multipliers included. Among what is left, a stacking group
        (points multipliers) grants only its highest-ranked member that fits, so a group is
        settled after the other proposals, when every exclusive that applies is known. An
        exclusive member settles its group at its own position instead, because its
        winning must block what follows it.

        `payable` is what is left of the payment for discounts (None for other events).
        """
        blocked_below = None  # priority of an exclusive campaign that applied
        settled_groups: set[str] = set()
        deferred = []  # group members waiting for the end
        granted: list[Grant] = []  # in priority order, group winners inserted in place
        for proposal in proposals:
            compiled, reward, local_day = proposal
            if blocked_below is not None and compiled.priority < blocked_below:
                break
            group = reward.stacking_group
            if group is not None:
                if group in settled_groups:
                    continue
                if not compiled.exclusive:
                    deferred.append(proposal)
                    continue
                members = [p for p in deferred if p[1].stacking_group == group] + [proposal]
                winner = settle_group(members, gate)
                if winner is not None:  # else the group is still open to lower members
                    settled_groups.add(group)
                    insert_in_priority_order(granted, *winner)
                    if winner[0].exclusive:
                        blocked_below = winner[0].priority
                continue
            if reward.kind == DISCOUNT:
                # Stacked discounts never take the payment below zero.
                if payable <= 0:
                    continue
                if reward.amount > payable:
                    reward = reward._replace(amount=payable)
                if gate is not None and not gate.reserve(compiled, reward, local_day):
                    continue
                payable -= reward.amount
            elif gate is not None and not gate.reserve(compiled, reward, local_day):
                continue
            granted.append(new(Grant, (reward, compiled.campaign, local_day, False)))
            if compiled.exclusive:
                blocked_below = compiled.priority
        for proposal in deferred:
            group = proposal[1].stacking_group
            if group in settled_groups:
                continue
            settled_groups.add(group)
            members = [p for p in deferred if p[1].stacking_group == group
                       and (blocked_below is None or p[0].priority >= blocked_below)]
            winner = settle_group(members, gate)
            if winner is not None:
                insert_in_priority_order(granted, *winner)
        grants += granted
