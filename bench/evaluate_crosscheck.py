"""The engine as benchmarked, and the proof that it and the floor do the same work.

`compile_engine` builds the `RulesEngine` from the built-in plugins as the service would;
`cross_check` runs every event through the engine and the floor once, before anything is
timed, and raises `Mismatch` unless their rewards agree event by event and in total. Apart
from the timing so that a benchmark, a profile and the smoke test all use the same check.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from bench.evaluate_data import CURRENCY, POINTS_PER_UNIT
from bench.evaluate_floor import Floor
from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision, RulesEngine
from promo_engine.core.event import Event
from promo_engine.core.registry import build_registry, get_plugin_manager


def engine_outcome(decision: Decision):
    """The engine's decision in the floor's shape."""
    return decision.base_points, tuple(
        (g.reward.campaign_id, g.reward.kind,
         g.reward.points if g.reward.points is not None else g.reward.amount)
        for g in decision.grants if g.campaign is not None)


@dataclass
class Totals:
    events: int = 0
    grants: int = 0
    discount: Decimal = Decimal(0)
    points: int = 0  # base points included

    def add(self, outcome) -> None:
        base, grants = outcome
        self.events += 1
        self.points += base
        for _, kind, value in grants:
            self.grants += 1
            if kind == "discount":
                self.discount += value
            else:
                self.points += value


class Mismatch(AssertionError):
    pass


def compile_engine(campaigns: Sequence[Campaign]) -> RulesEngine:
    registry = build_registry(get_plugin_manager(load_entry_points=False))

    def fail(campaign, exc):  # a benchmark campaign that does not compile is a bug here
        raise exc

    return RulesEngine.compile(campaigns, registry, currency=CURRENCY,
                               points_per_unit=POINTS_PER_UNIT, on_error=fail)


def cross_check(engine: RulesEngine, floor: Floor, events: Sequence[Event],
                user: UserState) -> tuple[Totals, Totals]:
    """Every event's rewards must be the same from both; returns the totals of each."""
    engine_totals, floor_totals = Totals(), Totals()
    for event in events:
        mine = engine_outcome(engine.evaluate(event, user))
        theirs = floor.evaluate(event)
        engine_totals.add(mine)
        floor_totals.add(theirs)
        if mine != theirs:
            raise Mismatch(f"event {event.event_id}: engine {mine} != floor {theirs}")
    if engine_totals != floor_totals:
        raise Mismatch(f"totals differ: engine {engine_totals} != floor {floor_totals}")
    return engine_totals, floor_totals
