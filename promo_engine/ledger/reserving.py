"""Room in the campaign-wide limits when Redis holds them: one reservation per event, made
in one round trip after evaluation, and the counters it needs built from the ledger when
Redis has none.

The recorder gives a reservation back if its transaction fails and confirms it once the
transaction committed; this module makes it, and refuses to commit on one past its deadline.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from promo_engine.coordination.reservations import NotReady, Reservation, Reservations
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision, RulesEngine
from promo_engine.core.event import Event
from promo_engine.ledger.extensions import db
from promo_engine.ledger.gates import CollectingGate
from promo_engine.ledger.usage import ledger_usage
from promo_engine.ledger.webhook_outbox import Reached, thresholds_reached, used_up

BUILD_WAIT_SECONDS, BUILD_WAIT_STEPS = 0.02, 50  # for another worker's counter build: 1 s


class ReservationExpired(NotReady):
    """The transaction outlived its reservation's deadline, so it must not commit: after the
    deadline reconciliation may already have given that budget back."""

    def __init__(self):
        super().__init__(retry_after_ms=1000)


def refuse_expired(held: list[Reservation]) -> None:
    """Called just before the commit: after its deadline a reservation may already have
    been given back by reconciliation, so the event must not commit on it."""
    if any(reservation.expired() for reservation in held):
        raise ReservationExpired()


class Ahead(NamedTuple):
    """An event evaluated before its turn (a batch's, `EventBatch.reserve_ahead`): what it
    was evaluated with, the decision, and the reservation made for it (None when it asked
    for none)."""
    event: Event
    state: UserState
    engine: RulesEngine
    decision: Decision
    reservation: Reservation | None

    def stands_for(self, event: Event, state: UserState, engine: RulesEngine) -> bool:
        """Whether evaluating `event` on `state` with `engine` gives this decision: it is
        a function of the three (the gate lets every reward in on the first round)."""
        return self.engine is engine and self.event == event and self.state == state


def evaluate_reserving(reservations: Reservations, minor_digits: int, event: Event,
                       state: UserState, engine: RulesEngine,
                       held: list[Reservation], discounted=0,
                       reached: list[Reached] | None = None,
                       ahead: Ahead | None = None) -> Decision:
    """Evaluate as if every limited reward fitted, then reserve them all in one round
    trip. A campaign without room is evaluated again as full, which may let others in
    (a lower-priority campaign after a full exclusive one, the next multiplier of a
    group): each round marks at least one more campaign full, so this ends.

    `ahead`: the event evaluated and reserved for before (a batch's). Where it stands for
    this evaluation, its decision and reservation are this one's; where not (the denylist
    changed meanwhile, say), its reservation is given back and the event evaluated again."""
    if ahead is not None and not discounted:
        if ahead.stands_for(event, state, engine):
            if ahead.reservation is not None:
                held.append(ahead.reservation)
            return ahead.decision
        if ahead.reservation is not None:
            reservations.release(ahead.reservation)
    full: set[str] = set()
    built_counters = False
    while True:
        gate = CollectingGate(minor_digits, full)
        decision = (engine.evaluate(event, state, gate, discounted=discounted) if discounted
                    else engine.evaluate(event, state, gate))
        if not gate.requests:
            return decision
        outcome = reservations.reserve(gate.requests)
        if outcome.reservation is not None:
            held.append(outcome.reservation)
            return decision
        if outcome.missing:
            if built_counters:  # built and gone again: Redis is restarting
                raise NotReady(reservations.settle_ms)
            built_counters = build_missing_counters(reservations, outcome.missing)
            continue
        full |= outcome.full
        if reached is not None:  # a reward refused: its campaign's limit is used up
            for request in gate.requests:
                if request.campaign_id in outcome.full:
                    reached += used_up(
                        db.engine, request.campaign_id, request.budget_limit,
                        request.max_redemptions,
                        lambda: reservations.counters([request.campaign_id])[request.campaign_id]
                        or (0, 0))


def thresholds_of(held: list[Reservation]) -> list[Reached]:
    """The budget thresholds the counters were at or past once the event's reservations
    were made (`webhook_outbox.py` announces each once)."""
    reached = []
    for reservation in held:
        for request, (spent, redemptions) in zip(reservation.requests, reservation.after):
            reached += thresholds_reached(request.campaign_id, spent, redemptions,
                                          request.budget_limit, request.max_redemptions)
    return reached


def build_missing_counters(reservations: Reservations, campaign_ids) -> bool:
    """Counters for campaigns Redis has none for (new, or Redis lost its data). False
    when another worker was building: its build takes milliseconds, so this one waits
    a little and tries the reservation again rather than answer 503."""
    token = reservations.try_build()
    if token is None:
        for _ in range(BUILD_WAIT_STEPS):
            time.sleep(BUILD_WAIT_SECONDS)
            if not reservations.building():
                return False
        raise NotReady(1000, "counters_building")  # a long build (a large ledger)
    try:
        t0 = reservations.clock_ms()
        if reservations.rebuild(t0, ledger_usage(campaign_ids), only_missing=True) < 0:
            # the ledger read took too long to be used safely
            raise NotReady(1000, "counters_building")
    finally:
        reservations.built(token)
    return True
