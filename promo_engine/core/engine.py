"""The pure rules core: an event, the compiled open campaigns and the user's counters in,
a decision out. No Flask, no SQLAlchemy: the API, quotes and back-tests share this code.

Campaign-wide limits (budget, max_redemptions) are shared between users, so the engine
cannot know whether they have room; it asks a `Gate`, which the ledger implements with a
guarded update inside its transaction and a quote implements read-only. The engine keeps
the order of the questions (priority, exclusivity, highest multiplier) in one place.
"""
from __future__ import annotations

import logging
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import Callable, Iterable, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import EvaluationContext, Evaluator, UserState
from promo_engine.core.event import PAYMENT, Event
from promo_engine.core.registry import Registry
from promo_engine.core.rewards import DISCOUNT, Reward, points_reward

log = logging.getLogger(__name__)


class Gate(Protocol):
    def reserve(self, campaign: "CompiledCampaign", reward: Reward, local_day: date) -> bool:
        """Take the reward from the campaign's budget and redemptions; False if it does not fit."""


_new = tuple.__new__  # builds the NamedTuples below without keyword handling (hot path)


class Grant(NamedTuple):
    reward: Reward
    campaign: Campaign | None  # None for base points
    local_day: date | None  # the event's calendar day in the campaign's timezone


class Decision(NamedTuple):
    grants: tuple[Grant, ...]
    base_points: int

    @property
    def points(self) -> int:
        return sum(g.reward.points for g in self.grants if g.reward.points is not None)


class CompiledCampaign:
    """A campaign prepared once for the hot path: plain attributes, no lookups per event."""

    __slots__ = ("campaign", "id", "evaluate", "triggers", "starts_at", "ends_at", "zone",
                 "windows", "window_spans", "min_amount", "mcc", "channels", "attributes",
                 "has_conditions", "user_limited", "per_user", "per_user_daily", "priority", "exclusive",
                 "sort_key", "budget_limit", "max_redemptions")

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
        # The same test as Window.contains, as plain tuples the hot loop reads without a
        # method call per window.
        self.window_spans = tuple((w.days, w.start, w.end) for w in campaign.windows)
        conditions = campaign.conditions
        self.min_amount = conditions.min_amount
        self.mcc = conditions.mcc
        self.channels = conditions.channels
        self.attributes = tuple(conditions.attributes.items())
        # Most campaigns have no conditions; they skip the call to conditions_hold.
        self.has_conditions = (self.min_amount is not None or self.mcc is not None
                               or self.channels is not None or bool(self.attributes))
        self.per_user = campaign.limits.per_user
        self.per_user_daily = campaign.limits.per_user_daily
        self.user_limited = self.per_user is not None or self.per_user_daily is not None
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
        return self.attributes_hold(event)

    def attributes_hold(self, event: Event) -> bool:
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
        # 2.50 from JSON matches "2.5", 1E+2 matches "100", -0 matches "0".
        return f"{(value + 0).normalize():f}"
    return str(value)


ErrorHook = Callable[[Campaign, BaseException], None]


def _by_rank(proposal) -> tuple:
    """Order of a stacking group's members: highest rank first, then priority order."""
    compiled, reward, _ = proposal
    return -reward.rank, compiled.sort_key


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
        # Each merchant's tuple already holds the bank-wide campaigns of its trigger, merged
        # in priority order once here rather than sorted again for every event.
        self._by_merchant = {
            t: {m: tuple(sorted(cs + list(self._bank_wide.get(t, ())), key=order))
                for m, cs in per.items()}
            for t, per in by_merchant.items()}
        # Decisions and base-points grants are immutable and depend only on the base
        # points, so the common ones are built once and shared (see _plain_decision).
        self._plain_decisions: dict[int, Decision] = {}
        self._base_grants: dict[int, Grant] = {}

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
        merchant_id = event.merchant_id
        if merchant_id:
            per_merchant = self._by_merchant.get(event.type)
            if per_merchant:
                return per_merchant.get(merchant_id, bank_wide)
        return bank_wide

    def base_points(self, event: Event) -> int:
        if event.type != PAYMENT or not self.points_per_unit:
            return 0
        return int((event.amount * self.points_per_unit).to_integral_value(ROUND_FLOOR))

    def evaluate(self, event: Event, user: UserState, gate: Gate | None = None) -> Decision:
        base = self.base_points(event)
        proposals = self._proposals(event, user, base)
        if not proposals:
            return self._plain_decision(base)
        grants: list[Grant] = [self._base_grant(base)] if base else []
        self._apply(event, proposals, gate, grants)
        return _new(Decision, (tuple(grants), base))

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
        """Every (campaign, reward, local day) that matches, before limits shared with others."""
        proposals = []
        append = proposals.append
        occurred_at, amount = event.occurred_at, event.amount
        # The event's local weekday, time and day per zone, worked out once per zone:
        # astimezone costs more than the rest of a candidate's checks.
        local_by_zone: dict = {}
        context = None  # built for the first campaign that gets as far as its evaluator
        for compiled in self.candidates(event):
            if not (compiled.starts_at <= occurred_at < compiled.ends_at):
                continue
            # Conditions before windows (both are plain filters, so the order does not
            # change the outcome): a campaign they reject needs no local time. The common
            # ones are inlined: this loop runs for every candidate of every event.
            if compiled.has_conditions:
                if compiled.min_amount is not None and \
                        (amount is None or amount < compiled.min_amount):
                    continue
                if compiled.mcc is not None and event.mcc not in compiled.mcc:
                    continue
                if compiled.channels is not None and event.channel not in compiled.channels:
                    continue
                if compiled.attributes and not compiled.attributes_hold(event):
                    continue
            local = local_by_zone.get(compiled.zone)
            if local is None:
                at = occurred_at.astimezone(compiled.zone)
                local = local_by_zone[compiled.zone] = (at.weekday(), at.time(), at.date())
            weekday, time_of_day, local_day = local
            if compiled.window_spans:
                for days, start, end in compiled.window_spans:  # Window.contains, inlined
                    if weekday in days and start <= time_of_day and \
                            (end is None or time_of_day < end):
                        break
                else:
                    continue
            if compiled.user_limited:
                if compiled.per_user is not None and \
                        user.campaign_uses.get(compiled.id, 0) >= compiled.per_user:
                    continue
                if compiled.per_user_daily is not None and \
                        user.daily_uses.get((compiled.id, local_day), 0) >= compiled.per_user_daily:
                    continue
            if context is None:
                context = EvaluationContext(event=event, user=user, base_points=base)
            try:
                reward = compiled.evaluate(context)
            except Exception as exc:  # one broken plugin skips its campaign, never the event
                self.on_error(compiled.campaign, exc)
                continue
            if reward is not None:
                append((compiled, reward, local_day))
        return proposals

    def _apply(self, event: Event, proposals, gate: Gate | None, grants: list[Grant]) -> None:
        """Grant in priority order; a reward that does not fit is skipped, never cut down.

        Exclusivity comes first: an exclusive campaign that applied blocks every proposal
        of lower priority, multipliers included. Among what is left, a stacking group
        (points multipliers) grants only its highest-ranked member that fits, so a group is
        settled after the other proposals, when every exclusive that applies is known. An
        exclusive member settles its group at its own position instead, because its
        winning must block what follows it.
        """
        payable = event.amount
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
                winner = _settle_group(members, gate)
                if winner is not None:  # else the group is still open to lower members
                    settled_groups.add(group)
                    _insert_in_priority_order(granted, *winner)
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
            granted.append(_new(Grant, (reward, compiled.campaign, local_day)))
            if compiled.exclusive:
                blocked_below = compiled.priority
        for proposal in deferred:
            group = proposal[1].stacking_group
            if group in settled_groups:
                continue
            settled_groups.add(group)
            members = [p for p in deferred if p[1].stacking_group == group
                       and (blocked_below is None or p[0].priority >= blocked_below)]
            winner = _settle_group(members, gate)
            if winner is not None:
                _insert_in_priority_order(granted, *winner)
        grants += granted


def _insert_in_priority_order(granted: list[Grant], compiled: CompiledCampaign,
                              grant: Grant) -> None:
    """`granted` is in priority order but for group winners decided late; a few grants at
    most, so a scan beats sorting."""
    key = compiled.sort_key
    for position, other in enumerate(granted):
        if key < (-other.campaign.priority, other.campaign.id):
            granted.insert(position, grant)
            return
    granted.append(grant)


def _settle_group(members, gate: Gate | None):
    """The member with the highest rank (then priority) whose reward fits, or None."""
    if len(members) > 1:
        members = sorted(members, key=_by_rank)
    for member, reward, local_day in members:
        if gate is None or gate.reserve(member, reward, local_day):
            return member, _new(Grant, (reward, member.campaign, local_day))
    return None
