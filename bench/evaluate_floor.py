"""`Floor`: the hand-written evaluator the engine's events/s is measured against.

A plain evaluator of exactly the rules the benchmark's campaigns use, written with no
framework: campaigns in a dict by merchant with the bank-wide ones merged in, `Decimal`
money, `zoneinfo` for windows, rewards as tuples. What a careful programmer would write for
these three kinds of campaign, and nothing more: it refuses any other campaign (limits,
budgets, attribute conditions, another currency), so it cannot silently differ from the
engine. When the engine's rules change, change `Floor.evaluate` with them: the cross-check
(evaluate_crosscheck.py) says so.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Iterable
from zoneinfo import ZoneInfo

from bench.evaluate_data import CURRENCY, POINTS_PER_UNIT
from promo_engine.core.campaign import Campaign
from promo_engine.core.event import Event

PERCENT, AMOUNT_OFF, MULTIPLIER = range(3)
CENT = Decimal("0.01")


class FloorCampaign:
    """One campaign as plain attributes; only what the three payment rules need."""

    __slots__ = ("id", "priority", "exclusive", "starts_at", "ends_at", "zone", "windows",
                 "min_amount", "mcc", "channels", "kind", "rate", "cap", "amount_off",
                 "multiplier")

    def __init__(self, c: Campaign):
        if c.type not in ("holiday_discount", "points_multiplier") or c.conditions.attributes \
                or c.budget is not None or c.limits.per_user is not None \
                or c.limits.per_user_daily is not None or c.limits.max_redemptions is not None \
                or c.currency != CURRENCY:
            raise ValueError(f"the floor does not evaluate campaign {c.id}")
        self.id = c.id
        self.priority = c.priority
        self.exclusive = c.exclusive
        self.starts_at = c.starts_at
        self.ends_at = c.ends_at
        self.zone = ZoneInfo(c.timezone)
        self.windows = tuple((w.days, w.start, w.end) for w in c.windows)
        self.min_amount = c.conditions.min_amount
        self.mcc = c.conditions.mcc
        self.channels = c.conditions.channels
        self.rate = self.cap = self.amount_off = self.multiplier = None
        if "multiplier" in c.params:
            self.kind = MULTIPLIER
            self.multiplier = c.params["multiplier"]
        elif "amount_off" in c.params:
            self.kind = AMOUNT_OFF
            self.amount_off = c.params["amount_off"]
        else:
            self.kind = PERCENT
            self.rate = c.params["percent"] / 100
            self.cap = c.params.get("max_discount")


def highest_multiplier(multipliers):
    """The highest multiplier; of equal ones the first (they come in priority order)."""
    best = multipliers[0]
    for m in multipliers[1:]:
        if m[0].multiplier > best[0].multiplier:
            best = m
    return best


class Floor:
    """A plain evaluator of payments: campaigns in a dict by merchant, Decimal money.

    evaluate(event) -> (base points, ((campaign id, "discount" | "points", value), ...)).
    Rules (CONTRACT section 2): inside [starts_at, ends_at) and one window in the campaign's
    timezone, every condition holds; in priority order (then id); an exclusive campaign that
    applies stops every lower-priority one; discounts never take the payment below zero;
    of the points multipliers not blocked only the highest is granted (an exclusive one is
    settled where it stands, against those above it);
    base points floor(amount x points per unit); money half-up to the cent; rewards listed
    in priority order.
    """

    def __init__(self, campaigns: Iterable[Campaign], points_per_unit: Decimal = POINTS_PER_UNIT):
        self.points_per_unit = points_per_unit
        bank_wide: list[FloorCampaign] = []
        scoped: dict[str, list[FloorCampaign]] = {}
        for c in campaigns:
            fc = FloorCampaign(c)
            if c.merchants is None:
                bank_wide.append(fc)
            else:
                for merchant in c.merchants:
                    scoped.setdefault(merchant, []).append(fc)
        order = lambda c: (-c.priority, c.id)  # noqa: E731
        self.bank_wide = sorted(bank_wide, key=order)
        # Each merchant's list already holds the bank-wide campaigns, in priority order.
        self.by_merchant = {m: sorted(cs + bank_wide, key=order) for m, cs in scoped.items()}

    def evaluate(self, event: Event):
        amount = event.amount
        base = int((amount * self.points_per_unit).to_integral_value(ROUND_FLOOR))
        at = event.occurred_at
        local_by_zone = {}
        matched = []
        for c in self.by_merchant.get(event.merchant_id, self.bank_wide):
            if not (c.starts_at <= at < c.ends_at):
                continue
            if c.windows:
                local = local_by_zone.get(c.zone)
                if local is None:
                    local = local_by_zone[c.zone] = at.astimezone(c.zone)
                weekday, clock = local.weekday(), local.time()
                for days, start, end in c.windows:
                    if weekday in days and start <= clock and (end is None or clock < end):
                        break
                else:
                    continue
            if c.min_amount is not None and amount < c.min_amount:
                continue
            if c.mcc is not None and event.mcc not in c.mcc:
                continue
            if c.channels is not None and event.channel not in c.channels:
                continue
            if c.kind == PERCENT:
                value = (amount * c.rate).quantize(CENT, ROUND_HALF_UP)
                if c.cap is not None and value > c.cap:
                    value = c.cap
                if value:
                    matched.append((c, value))
            elif c.kind == AMOUNT_OFF:
                matched.append((c, c.amount_off if c.amount_off < amount else amount))
            else:
                extra = int((base * c.multiplier).to_integral_value(ROUND_FLOOR)) - base
                if extra > 0:
                    matched.append((c, extra))

        granted = []  # (campaign, kind, value)
        payable = amount
        blocked_below = None  # priority of an exclusive campaign that applied
        multipliers = []  # the highest of these is granted at the end
        multiplier_done = False
        for c, value in matched:
            if blocked_below is not None and c.priority < blocked_below:
                break
            if c.kind == MULTIPLIER:
                if multiplier_done:
                    continue
                if not c.exclusive:
                    multipliers.append((c, value))
                    continue
                # An exclusive multiplier decides now, against the higher ones seen so far:
                # if it wins, nothing below it applies.
                best, best_value = highest_multiplier(multipliers + [(c, value)])
                granted.append((best, "points", best_value))
                multiplier_done = True
                if best.exclusive:
                    blocked_below = best.priority
                continue
            if payable <= 0:
                continue
            if value > payable:
                value = payable
            payable -= value
            granted.append((c, "discount", value))
            if c.exclusive:
                blocked_below = c.priority
        if not multiplier_done:
            multipliers = [m for m in multipliers
                           if blocked_below is None or m[0].priority >= blocked_below]
            if multipliers:
                best, best_value = highest_multiplier(multipliers)
                granted.append((best, "points", best_value))
        if len(granted) > 1:  # listed in priority order
            granted.sort(key=lambda g: (-g[0].priority, g[0].id))
        grants = [(c.id, kind, value) for c, kind, value in granted]
        return base, tuple(grants)
