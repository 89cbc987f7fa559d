"""A campaign compiled for the hot path, and the checks of its own rules (dates aside).

The engine builds one per open campaign when the campaigns are loaded; everything an event
is checked against is a plain attribute here, so the engine's loop does no lookups.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import EvaluationContext, Evaluator, Stacking, UserState
from promo_engine.core.event import Event
from promo_engine.core.targeting import held_out, history_matches

# Why a campaign does not apply to an event now, as the API's messages say it (the ledger's
# offer_unavailable, for a redemption of an exchange).
NOT_IN_DATES = "outside the campaign's dates"
NOT_IN_HOURS = "outside the campaign's hours"
CONDITIONS_NOT_MET = "the campaign's conditions are not met"
USER_HISTORY_NOT_MATCHED = "the user's history does not match the campaign's conditions"
HELD_OUT = "the user is held out of this campaign (its control group)"
USER_LIMIT_REACHED = "the user's limit for this campaign is reached"
DEVICE_LIMIT_REACHED = "the device's limit for this campaign is reached"
DENIED = "the user or the device is on the denylist"
NO_REWARD_NOW = "the campaign gives no reward for this event"


class CompiledCampaign:
    """A campaign prepared once for the hot path: plain attributes, no lookups per event."""

    # Slots are laid out in this order: what the hot loop reads for every candidate comes
    # first, in the order it reads it, so that a candidate out of the CPU caches costs two
    # cache lines rather than four.
    __slots__ = ("priority", "starts_at", "ends_at", "has_conditions", "min_amount", "mcc",
                 "channels", "attributes", "zone", "window_spans", "user_checked", "stacking",
                 "exclusive", "evaluate", "campaign", "sort_key", "id",
                 "per_user", "per_user_daily", "per_device", "per_device_daily", "targeted",
                 "triggers", "windows", "budget_limit", "max_redemptions", "cost_points",
                 "user_conditions", "holdout", "stacking_key")

    def __init__(self, campaign: Campaign, evaluate: Evaluator, triggers: frozenset[str],
                 minor_digits: int, cost_points: int | None = None,
                 stacking: Stacking | None = None):
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
        self.per_device = campaign.limits.per_device
        self.per_device_daily = campaign.limits.per_device_daily
        self.user_conditions = conditions.user  # None: the user's history does not matter
        self.holdout = campaign.holdout
        self.targeted = self.user_conditions is not None or self.holdout > 0
        # One test in the hot loop for everything about the user (limits, history, holdout):
        # a campaign with none of them pays nothing for them.
        self.user_checked = (self.per_user is not None or self.per_user_daily is not None
                             or self.per_device is not None
                             or self.per_device_daily is not None or self.targeted)
        self.max_redemptions = campaign.limits.max_redemptions
        self.cost_points = cost_points  # a number: an exchange (see CampaignType.cost_points)
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
        # (group, rank) its type declares for every reward (CampaignType.stacking), or None
        self.stacking = stacking
        # Its order among its group's members: highest rank first, then priority order
        self.stacking_key = None if stacking is None else (-stacking[1], self.sort_key)

    @property
    def is_exchange(self) -> bool:
        return self.cost_points is not None

    def unavailable_reason(self, context: EvaluationContext) -> str | None:
        """Why this campaign gives the event no reward (the trigger and merchant scope
        aside), or None when only its budget and redemptions can still refuse it.

        The same questions as the engine's hot loop, asked one by one and slowly, to
        explain a refusal; the loop stays the single place that decides."""
        event, user = context.event, context.user
        if not (self.starts_at <= event.occurred_at < self.ends_at):
            return NOT_IN_DATES
        local = event.occurred_at.astimezone(self.zone)
        weekday, time_of_day, local_day = local.weekday(), local.time(), local.date()
        if self.windows and not any(w.contains(weekday, time_of_day) for w in self.windows):
            return NOT_IN_HOURS
        if not self.conditions_hold(event):
            return CONDITIONS_NOT_MET
        if not self.history_matches(user, event.occurred_at):
            return USER_HISTORY_NOT_MATCHED
        if self.holds_out(user.user_id):
            return HELD_OUT
        if self.user_limit_reached(user, local_day):
            return USER_LIMIT_REACHED
        if event.device_id is not None and self.device_limit_reached(user, local_day):
            return DEVICE_LIMIT_REACHED
        try:
            reward = self.evaluate(context)
        except Exception:  # the engine reports a raising evaluator; this only explains
            reward = None
        return NO_REWARD_NOW if reward is None else None

    def targets(self, user: UserState, occurred_at) -> bool:
        """Whether the user's history matches `conditions.user` and the user is not held
        out (`core/targeting.py`); True for a campaign without either."""
        return self.history_matches(user, occurred_at) and not self.holds_out(user.user_id)

    def history_matches(self, user: UserState, occurred_at) -> bool:
        conditions = self.user_conditions
        return conditions is None or history_matches(conditions, user.payments,
                                                     user.last_payment_at, occurred_at)

    def holds_out(self, user_id: str) -> bool:
        """Whether the user is in this campaign's control group (`holdout`)."""
        return held_out(self.id, user_id, self.holdout)

    def user_limit_reached(self, user: UserState, local_day: date) -> bool:
        """Whether the user's per_user or per_user_daily limit leaves no room."""
        if self.per_user is not None and user.campaign_uses.get(self.id, 0) >= self.per_user:
            return True
        return self.per_user_daily is not None and \
            user.daily_uses.get((self.id, local_day), 0) >= self.per_user_daily

    def device_limit_reached(self, user: UserState, local_day: date) -> bool:
        """Whether the event's device has no room left in per_device or per_device_daily
        (asked only of an event with a device_id: one without is not limited by them)."""
        if self.per_device is not None and \
                user.device_uses.get(self.id, 0) >= self.per_device:
            return True
        return self.per_device_daily is not None and \
            user.device_daily_uses.get((self.id, local_day), 0) >= self.per_device_daily

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


def admitted(candidates, event: Event, user: UserState):
    """(campaign, the event's local day in its zone) for each candidate whose own rules
    (dates, conditions, hours, the user's and device's limits, history, holdout) admit the
    event, in the candidates' (priority) order: every question but the type's evaluator.

    The filter of the full evaluation that explanations use (`RulesEngine._proposals`).
    `core/lazy.py` asks the same questions inlined, in the same order, because its loop
    must stop at an exclusive grant between two candidates; tests/test_engine_lazy.py
    holds the two to the same decisions."""
    occurred_at, amount = event.occurred_at, event.amount
    # The event's local weekday, time and day per zone, worked out once per zone:
    # astimezone costs more than the rest of a candidate's checks.
    local_by_zone: dict = {}
    for compiled in candidates:
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
        if compiled.user_checked:  # limits, history, holdout: all about the user
            if compiled.per_user is not None and \
                    user.campaign_uses.get(compiled.id, 0) >= compiled.per_user:
                continue
            if compiled.per_user_daily is not None and \
                    user.daily_uses.get((compiled.id, local_day), 0) >= compiled.per_user_daily:
                continue
            if event.device_id is not None and \
                    (compiled.per_device is not None or compiled.per_device_daily is not None) \
                    and compiled.device_limit_reached(user, local_day):
                continue
            # Last: the holdout hashes. A campaign that targets a user it does not
            # reward is skipped as one whose conditions fail: lower ones still apply.
            if compiled.targeted and not compiled.targets(user, occurred_at):
                continue
        yield compiled, local_day


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
