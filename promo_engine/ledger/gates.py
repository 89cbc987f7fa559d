"""The gates the rules engine asks, reward by reward, whether a campaign's budget and
redemptions still have room: `gate.reserve(compiled, reward, local_day) -> bool`.

One engine, three answers, depending on who holds the campaign-wide limits:

- `DatabaseGate` (no Redis): takes the room at once with a guarded UPDATE of the usage row.
- `CollectingGate` (Redis): takes nothing yet, only collects what it let through, which
  `reserving.py` then reserves for the whole event in one script.
- `ReadOnlyGate` (quotes): answers from the current counters and takes nothing.
"""
from __future__ import annotations

from datetime import date

from promo_engine.coordination.reservations import Request, Reservations
from promo_engine.core.engine import CompiledCampaign
from promo_engine.core.rewards import Reward
from promo_engine.ledger.event_writes import EventWrites
from promo_engine.ledger.extensions import db
from promo_engine.ledger.usage import current_usage


class DatabaseGate:
    """Reserves budget and redemptions with one guarded UPDATE: never check-then-act."""

    def __init__(self, minor_digits: int, writes: EventWrites):
        self.minor_digits = minor_digits
        self.writes = writes

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        return self.writes.take_from_campaign(
            compiled.id, reward.budget_cost(self.minor_digits), budget_limit=compiled.budget_limit,
            max_redemptions=compiled.max_redemptions)


class CollectingGate:
    """Optimistic: a reward fits unless its campaign is known to be full. What it let
    through is then reserved in Redis for the whole event at once. Campaigns without limits
    are counted too, so their counters are right the moment an edit gives them a budget."""

    def __init__(self, minor_digits: int, full: set[str]):
        self.minor_digits = minor_digits
        self.full = full
        self.requests: list[Request] = []

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        if compiled.id in self.full:
            return False
        self.requests.append(Request(compiled.id, reward.budget_cost(self.minor_digits), 1,
                                     compiled.budget_limit, compiled.max_redemptions))
        return True


class ReadOnlyGate:
    """For quotes: answers from the current counters and changes nothing."""

    def __init__(self, minor_digits: int, reservations: Reservations | None = None):
        self.minor_digits = minor_digits
        self.reservations = reservations

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        if compiled.budget_limit is None and compiled.max_redemptions is None:
            return True
        spent, redemptions = current_usage(db.session, [compiled.id],
                                           self.reservations)[compiled.id]
        if compiled.budget_limit is not None and \
                spent + reward.budget_cost(self.minor_digits) > compiled.budget_limit:
            return False
        return compiled.max_redemptions is None or redemptions + 1 <= compiled.max_redemptions
