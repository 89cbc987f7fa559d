"""The pure rules core: an event, the compiled open campaigns and the user's counters in,
a decision out. No Flask, no SQLAlchemy: the API, quotes and back-tests share this code.

Campaign-wide limits (budget, max_redemptions) are shared between users, so the engine
cannot know whether they have room; it asks a `Gate`, which the ledger implements with a
guarded update inside its transaction and a quote implements read-only. The engine keeps
the order of the questions (priority, exclusivity, highest multiplier) in one place.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Callable, Iterable, Protocol
from zoneinfo import ZoneInfo

from .campaign import Campaign
from .campaign_type import EvaluationContext, Evaluator, UserState
from .event import PAYMENT, Event
from .registry import Registry
from .rewards import DISCOUNT, Reward, points_reward

log = logging.getLogger(__name__)


class Gate(Protocol):
    def reserve(self, campaign: "CompiledCampaign", reward: Reward, local_day: date) -> bool:
        """Take the reward from the campaign's budget and redemptions; False if it does not fit."""


@dataclass(frozen=True, slots=True)
class Grant:
    reward: Reward
    campaign: Campaign | None  # None for base points
    local_day: date | None  # the event's calendar day in the campaign's timezone


@dataclass(frozen=True, slots=True)
class Decision:
    grants: tuple[Grant, ...]
    base_points: int

    @property
    def points(self) -> int:
        return sum(g.reward.points for g in self.grants if g.reward.points is not None)


class CompiledCampaign:
    """A campaign prepared once for the hot path: plain attributes, no lookups per event."""

    __slots__ = ("campaign", "id", "evaluate", "triggers", "starts_at", "ends_at", "zone",
                 "windows", "min_amount", "mcc", "channels", "attributes", "per_user",
                 "per_user_daily", "priority", "exclusive", "sort_key", "budget_limit",
                 "max_redemptions")

    def __init__(self, campaign: Campaign, evaluate: Evaluator, triggers: frozenset[str],
                 minor_digits: int):
        self.campaign = campaign
        self.id = campaign.id
        self.evaluate = evaluate
        self.triggers = triggers
        self.starts_at = campaign.starts_at
        self.ends_at = campaign.ends_at
        self.zone = ZoneInfo(campaign.timezone)
        self.windows = campaign.windows
        conditions = campaign.conditions
        self.min_amount = conditions.min_amount
        self.mcc = conditions.mcc
        self.channels = conditions.channels
        self.attributes = tuple(conditions.attributes.items())
        self.per_user = campaign.limits.per_user
        self.per_user_daily = campaign.limits.per_user_daily
        self.max_redemptions = campaign.limits.max_redemptions
        budget = campaign.budget
        if budget is None:
            self.budget_limit = None
        elif budget.points is not None:
            self.budget_limit = budget.points
        else:
            self.budget_limit = int(budget.amount.scaleb(minor_digits))
        self.priority = campaign.priority
        self.exclusive = campaign.exclusive
        self.sort_key = (-campaign.priority, campaign.id)

    def conditions_hold(self, event: Event) -> bool:
        if self.min_amount is not None and (event.amount is None or event.amount < self.min_amount):
            return False
        if self.mcc is not None and event.mcc not in self.mcc:
            return False
        if self.channels is not None and event.channel not in self.channels:
            return False
        for name, accepted in self.attributes:
            if name not in event.attributes or attribute_text(event.attributes[name]) not in accepted:
                return False
        return True


def attribute_text(value) -> str:
    """How an event attribute compares with the strings a campaign lists."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral_value() else str(value)
    return str(value)


ErrorHook = Callable[[Campaign, BaseException], None]


def _log_error(campaign: Campaign, exc: BaseException) -> None:
    log.error("campaign %s (type %s) raised %r; skipped", campaign.id, campaign.type, exc,
              exc_info=exc)


class RulesEngine:
    """Compiled open campaigns indexed by trigger and merchant.

    The cost of an event follows the campaigns that could apply to it (its merchant's and
    the bank-wide ones for its type), not the number of campaigns that exist.
    """

    def __init__(self, campaigns: Iterable[CompiledCampaign], *, currency: str,
                 points_per_unit: Decimal, minor_digits: int = 2,
                 on_error: ErrorHook = _log_error):
        self.currency = currency
        self.points_per_unit = points_per_unit
        self.minor_digits = minor_digits
        self.on_error = on_error
        self.campaigns: dict[str, CompiledCampaign] = {}
        by_merchant: dict[str, dict[str, list[CompiledCampaign]]] = {}
        bank_wide: dict[str, list[CompiledCampaign]] = {}
        for compiled in campaigns:
            self.campaigns[compiled.id] = compiled
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
        self._by_merchant = {t: {m: tuple(sorted(cs, key=order)) for m, cs in per.items()}
                             for t, per in by_merchant.items()}

    @classmethod
    def compile(cls, campaigns: Iterable[Campaign], registry: Registry, *, currency: str,
                points_per_unit: Decimal, minor_digits: int = 2,
                on_error: ErrorHook = _log_error) -> "RulesEngine":
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
            except Exception as exc:  # a plugin bug must not take the other campaigns down
                on_error(campaign, exc)
                continue
            compiled.append(CompiledCampaign(campaign, evaluate, triggers, minor_digits))
        return cls(compiled, currency=currency, points_per_unit=points_per_unit,
                   minor_digits=minor_digits, on_error=on_error)

    def __len__(self) -> int:
        return len(self.campaigns)

    def candidates(self, event: Event) -> tuple[CompiledCampaign, ...]:
        """The campaigns whose trigger and merchant scope admit the event, in priority order."""
        bank_wide = self._bank_wide.get(event.type, ())
        per_merchant = self._by_merchant.get(event.type)
        scoped = per_merchant.get(event.merchant_id, ()) if per_merchant and event.merchant_id else ()
        if not scoped:
            return bank_wide
        if not bank_wide:
            return scoped
        return tuple(sorted(scoped + bank_wide, key=lambda c: c.sort_key))

    def base_points(self, event: Event) -> int:
        if event.type != PAYMENT or not self.points_per_unit:
            return 0
        return int((event.amount * self.points_per_unit).to_integral_value(ROUND_FLOOR))

    def evaluate(self, event: Event, user: UserState, gate: Gate | None = None) -> Decision:
        base = self.base_points(event)
        context = EvaluationContext(event=event, user=user, base_points=base)
        proposals = self._proposals(event, user, context)
        grants: list[Grant] = [Grant(points_reward(base), None, None)] if base else []
        if proposals:
            self._apply(event, proposals, gate, grants)
        return Decision(grants=tuple(grants), base_points=base)

    def _proposals(self, event: Event, user: UserState, context: EvaluationContext):
        """Every (campaign, reward, local day) that matches, before limits shared with others."""
        proposals = []
        occurred_at = event.occurred_at
        local_times: dict[ZoneInfo, datetime] = {}
        for compiled in self.candidates(event):
            if not (compiled.starts_at <= occurred_at < compiled.ends_at):
                continue
            local = local_times.get(compiled.zone)
            if local is None:
                local = local_times[compiled.zone] = occurred_at.astimezone(compiled.zone)
            if compiled.windows:
                weekday, time_of_day = local.weekday(), local.time()
                if not any(w.contains(weekday, time_of_day) for w in compiled.windows):
                    continue
            if not compiled.conditions_hold(event):
                continue
            local_day = local.date()
            if compiled.per_user is not None and \
                    user.campaign_uses.get(compiled.id, 0) >= compiled.per_user:
                continue
            if compiled.per_user_daily is not None and \
                    user.daily_uses.get((compiled.id, local_day), 0) >= compiled.per_user_daily:
                continue
            try:
                reward = compiled.evaluate(context)
            except Exception as exc:  # one broken plugin skips its campaign, never the event
                self.on_error(compiled.campaign, exc)
                continue
            if reward is not None:
                proposals.append((compiled, reward, local_day))
        return proposals

    def _apply(self, event: Event, proposals, gate: Gate | None, grants: list[Grant]) -> None:
        """Grant in priority order; a reward that does not fit is skipped, never cut down."""
        payable = event.amount
        blocked_below = None  # priority of an exclusive campaign that applied
        settled_groups: set[str] = set()
        for index, (compiled, reward, local_day) in enumerate(proposals):
            if blocked_below is not None and compiled.priority < blocked_below:
                break
            group = reward.stacking_group
            if group is not None:
                if group in settled_groups:
                    continue
                settled_groups.add(group)
                # The group takes the slot of its highest-priority member and grants the
                # member with the highest rank that fits.
                members = sorted(
                    (p for p in proposals[index:]
                     if p[1].stacking_group == group
                     and (blocked_below is None or p[0].priority >= blocked_below)),
                    key=lambda p: (-p[1].rank, p[0].sort_key))
                for member, member_reward, member_day in members:
                    if gate is None or gate.reserve(member, member_reward, member_day):
                        grants.append(Grant(member_reward, member.campaign, member_day))
                        if member.exclusive:
                            blocked_below = member.priority
                        break
                continue
            if reward.kind == DISCOUNT:
                # Stacked discounts never take the payment below zero.
                if payable <= 0:
                    continue
                if reward.amount > payable:
                    reward = Reward(kind=DISCOUNT, campaign_id=reward.campaign_id,
                                    amount=payable, currency=reward.currency)
            if gate is not None and not gate.reserve(compiled, reward, local_day):
                continue
            if reward.kind == DISCOUNT:
                payable -= reward.amount
            grants.append(Grant(reward, compiled.campaign, local_day))
            if compiled.exclusive:
                blocked_below = compiled.priority
