"""The write path: one transaction per event holding the idempotency record, the user
lock, the shared-limit reservations, the reward rows and the stored response.

Order of locks, the same for every event: the event row (unique per client), the user row
(FOR UPDATE: serialises one user's events, so per-user limits and "first ever" are exact),
for an event that names a device the device's row (`abuse_counts.py`: serialises the device's
events, so per-device limits and the risk policy's device caps are exact in every mode),
then the campaign-wide limits. Those are held in one of two places:

- without Redis, in campaign usage rows through guarded UPDATEs (budget and redemptions can
  never be exceeded, whatever runs concurrently). PostgreSQL may still report a deadlock
  between two users' campaign updates; the whole event is retried (`database.retrying`).
- with Redis (`reservations.py`), in counters reserved for the whole event in one script.
  The event is evaluated as if every limited reward fitted, the rewards are reserved all or
  none, and a campaign found full is evaluated again as full; the reservation is given back
  if the transaction fails and confirmed once it committed. Campaign usage rows are then
  rebuilt from the reward rows by reconciliation, so no hot row is locked per event.

This module holds `Ledger`, which records an event exactly once: the replay cache and the
stored copy (idempotency), the transaction and its retries, and the reservations' fate
around the commit. What each kind of event writes lives apart: `grants.py` (payments,
activations, plugin events), `spending.py` (redemptions, payments with points or
vouchers), `refunds.py`, `cancels.py`; how a reward gets room in a limit lives in
`gates.py` and `reserving.py`; quotes in `quotes.py`.
"""
from __future__ import annotations

import json
import logging
from datetime import timezone, tzinfo

import redis
from sqlalchemy.exc import IntegrityError

from promo_engine.coordination.confirmations import GroupSender
from promo_engine.coordination.replay_cache import ReplayCache
from promo_engine.coordination.reservations import EpochMissing, Reservation, Reservations
from promo_engine.coordination.throttled_log import ThrottledWarning
from promo_engine.core import money
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision, RulesEngine
from promo_engine.core.event import CANCEL, REFUND, Event
from promo_engine.ledger.cancels import record_cancel
from promo_engine.ledger.event_writes import (AlreadyRecorded, EventWrites, StoredEvent,
                                              event_writes_for, finds_replays_itself,
                                              needs_session)
from promo_engine.ledger.extensions import db
from promo_engine.ledger.gates import DatabaseGate
from promo_engine.ledger.grants import grant_rows
from promo_engine.ledger.lots import LotPolicy
from promo_engine.ledger.models import utcnow
from promo_engine.ledger.outcomes import IdempotencyConflict, Recorded
from promo_engine.ledger.quotes import quote_event
from promo_engine.ledger.refunds import record_refund
from promo_engine.ledger.spending import record_spending
from promo_engine.ledger.reserving import (Ahead, build_missing_counters, evaluate_reserving,
                                           refuse_expired, thresholds_of)
from promo_engine.ledger.webhook_outbox import announce, announced_thresholds, event_messages
from promo_engine.ledger.webhook_outbox import directory as webhook_endpoints

log = logging.getLogger(__name__)
redis_trouble = ThrottledWarning(log)


class Ledger:
    """Records events for one currency, with or without Redis (reservations, replay cache)."""

    def __init__(self, *, currency: str, reservations: Reservations | None = None,
                 replays: ReplayCache | None = None, policy: LotPolicy = LotPolicy(),
                 clock=utcnow, zone: tzinfo = timezone.utc):
        self.currency = currency
        self.zone = zone  # the program's timezone: the days and months of the risk counters
        self.clock = clock  # "now" of every record: lots, expiry and vouchers go by it
        self.policy = policy  # when points become available and expire
        self.minor_digits = money.minor_digits(currency)
        self.reservations = reservations
        self.replays = replays
        # What is told Redis after commit, by every thread of the process through one.
        client = (reservations or replays).client if (reservations or replays) else None
        self._sender = GroupSender(client) if client is not None else None

    # -- idempotency ---------------------------------------------------------------

    @staticmethod
    def _replayed(stored: StoredEvent | None, request_hash: str) -> Recorded | None:
        """The first answer to an event recorded before, or None for a new event."""
        if stored is None:
            return None
        if stored.request_hash != request_hash:
            raise IdempotencyConflict()
        return Recorded(status=200, body=stored.response, replayed=True)

    def record(self, *, client_id: str, event: Event, request_hash: str,
               engine: RulesEngine) -> Recorded:
        """Record the event once; a replay returns the first response exactly.

        Redis's replay cache is asked first only where the database would cost a round trip
        of its own to ask: on PostgreSQL a payment or activation finds its stored copy in the
        user lock's round trip, which it makes anyway, so a round trip to Redis before every
        new event (retries are rare) would cost more than it saves. The profile of a loaded
        worker put that lookup at 0.17 ms of 3.77 per event (docs/performance.md)."""
        if self.replays is not None and not finds_replays_itself(db, event):
            cached = self.replays.get(client_id, event.event_id)
            if cached is not None:
                return self._replayed(StoredEvent(*cached), request_hash)
        if self.reservations is None:
            return self._record(client_id, event, request_hash, engine)
        self.reservations.load_program_id()  # once per process, before any transaction
        try:
            return self._record(client_id, event, request_hash, engine)
        except EpochMissing:
            # New, or Redis lost its data: begin the epoch outside the event's transaction
            # (the judge writes), then record once more.
            self.reservations.begin_epoch()
            return self._record(client_id, event, request_hash, engine)

    def _record(self, client_id: str, event: Event, request_hash: str,
                engine: RulesEngine) -> Recorded:
        held: list[Reservation] = []  # Redis reservations of the attempt that commits
        writes = event_writes_for(db, event)
        writes.endpoints = webhook_endpoints.endpoints(db.engine)

        def attempt() -> Recorded:
            held.clear()
            writes.reached.clear()
            try:
                # With the replay cache in front, a new event is by far the likelier here,
                # so it skips this lookup: a copy is still found at the event's INSERT.
                # Without it, PostgreSQL's writes look in the user lock's round trip.
                if self.replays is None and not writes.finds_stored_event:
                    replay = self._replayed(writes.find_stored(client_id, event.event_id),
                                            request_hash)
                    if replay is not None:
                        return replay
                try:
                    if event.type == REFUND:
                        return self._record_refund(client_id, event, request_hash, held)
                    if event.type == CANCEL:
                        return self._record_cancel(client_id, event, request_hash, held)
                    if needs_session(event):
                        return self._record_spending(client_id, event, request_hash, engine,
                                                     held, writes)
                    return self._record_grants(client_id, event, request_hash, engine, held,
                                               writes)
                except (IntegrityError, AlreadyRecorded):
                    # A copy of this event committed first: answer as a replay.
                    self._release(held)
                    writes.rollback()
                    replay = self._replayed(writes.find_stored(client_id, event.event_id),
                                            request_hash)
                    if replay is None:
                        raise
                    return replay
            except BaseException:
                if not writes.commit_in_doubt:  # else they settle at their deadline
                    self._release(held)
                raise
            finally:
                writes.close()
        recorded = writes.run(attempt)
        if not recorded.replayed:
            announced_thresholds.remember(db.engine, writes.reached)
        self._after_commit(client_id, event.event_id, request_hash, recorded, held,
                           cache=not writes.finds_stored_event)
        return recorded

    def _release(self, held: list[Reservation]) -> None:
        """Give back the reservations of a transaction that will not commit. If Redis cannot
        be reached they stay in flight until their deadline: an under-spend, never over."""
        for reservation in held:
            try:
                self.reservations.release(reservation)
            except redis.RedisError as exc:
                redis_trouble.warning("could not release a reservation (it settles at its "
                                      "deadline): %s", exc)
        held.clear()

    def _after_commit(self, client_id: str, event_id: str, request_hash: str,
                      recorded: Recorded, held: list[Reservation], cache: bool = True) -> None:
        """Confirm the reservations and remember the answer for replays, in one round trip.
        The event is committed whatever happens here, so a Redis error is only logged.
        `cache`: False for an event whose replays the database answers (`record`): nothing
        would read its answer from Redis, and one without reservations then sends nothing."""
        cache = cache and self.replays is not None
        if not held and not cache:
            return

        def add(pipe) -> None:
            for reservation in held:
                self.reservations.confirm(reservation, pipeline=pipe)
            if cache:
                self.replays.put(pipe, client_id, event_id, request_hash, recorded.body)

        def retry() -> None:  # Redis restarted: scripts load again
            for reservation in held:
                self.reservations.confirm(reservation)
        try:
            # With other threads' confirmations in one pipeline (`confirmations.py`).
            self._sender.send(add, retry)
        except redis.RedisError as exc:
            redis_trouble.warning("an event committed, but Redis could not be told (its "
                                  "reservations settle at their deadline; replays are answered "
                                  "by the database): %s", exc)

    # -- the kinds of event --------------------------------------------------------

    def _record_grants(self, client_id: str, event: Event, request_hash: str,
                       engine: RulesEngine, held: list[Reservation],
                       writes: EventWrites) -> Recorded:
        """A payment, activation or plugin event: lock the user and read its counters,
        evaluate, then write every row at once (`event_writes.py`: one round trip each
        on PostgreSQL, then the commit).

        The event's row is written after evaluation, with its response, so a copy of the
        event racing this one is found by the unique index at that INSERT; both hold the
        same user's lock, so the copy waits for this one's commit and then replays it."""
        now = self.clock()
        state, stored, pending = writes.lock_user(
            user_id=event.user_id, occurred_at=event.occurred_at, now=now, client_id=client_id,
            event_id=event.event_id,
            find_stored=self.replays is None or writes.finds_stored_event,
            mature=self.policy.pending_days > 0, device_id=event.device_id, zone=self.zone,
            with_risk=engine.risk is not None)
        replay = self._replayed(stored, request_hash)
        if replay is not None:
            return replay
        if self.reservations is None:
            decision = engine.evaluate(event, state, DatabaseGate(self.minor_digits, writes))
        else:
            decision = self._evaluate_reserving(event, state, engine, held, writes.reached,
                                                ahead=writes.reserved_ahead)
            writes.reached += thresholds_of(held)
        rows = grant_rows(client_id, event, request_hash, decision, state,
                          currency=self.currency, now=now, policy=self.policy,
                          pending=pending, zone=self.zone)
        refuse_expired(held)
        writes.write(rows)
        return Recorded(status=201, body=rows.event["response"], replayed=False,
                        decision=decision)

    def _record_spending(self, client_id: str, event: Event, request_hash: str,
                         engine: RulesEngine, held: list[Reservation],
                         writes: EventWrites) -> Recorded:
        """A redemption, or a payment paid partly with points or vouchers (`spending.py`)."""
        def evaluate(event, state, discounted):
            if self.reservations is None:
                return engine.evaluate(event, state, DatabaseGate(self.minor_digits, writes),
                                       discounted=discounted)
            decision = evaluate_reserving(self.reservations, self.minor_digits, event, state,
                                          engine, held, discounted, writes.reached)
            writes.reached += thresholds_of(held)
            return decision

        recorded = record_spending(client_id, event, request_hash, engine=engine,
                                   writes=writes, policy=self.policy, currency=self.currency,
                                   evaluate=evaluate, now=self.clock(), zone=self.zone)
        refuse_expired(held)
        return recorded

    def _record_cancel(self, client_id: str, event: Event, request_hash: str,
                       held: list[Reservation]) -> Recorded:
        now = self.clock()
        response = record_cancel(client_id, event, request_hash,
                                 reservations=self.reservations, held=held, now=now)
        self._announce(event, response, now)
        refuse_expired(held)
        return Recorded(status=201, body=response, replayed=False)

    def _record_refund(self, client_id: str, event: Event, request_hash: str,
                       held: list[Reservation]) -> Recorded:
        now = self.clock()
        response = record_refund(client_id, event, request_hash, currency=self.currency,
                                 reservations=self.reservations, held=held, now=now)
        self._announce(event, response, now)
        refuse_expired(held)
        return Recorded(status=201, body=response, replayed=False)

    @staticmethod
    def _announce(event: Event, response: str, now) -> None:
        """The webhooks of a refund or cancel, in its transaction: each of its rewards as
        its response shows them (payments and redemptions write theirs with their rows)."""
        rewards = json.loads(response)["rewards"]
        if rewards:
            announce(db.session, event_messages(event.event_id, event.user_id, rewards, now),
                     now)

    # -- room in the campaign-wide limits, with Redis -------------------------------

    def _evaluate_reserving(self, event: Event, state: UserState, engine: RulesEngine,
                            held: list[Reservation], reached: list | None = None,
                            ahead: Ahead | None = None) -> Decision:
        """`reached`: gets the budget thresholds of campaigns found without room; `ahead`:
        the event as evaluated and reserved for before its turn (a batch's), if it was."""
        return evaluate_reserving(self.reservations, self.minor_digits, event, state, engine,
                                  held, reached=reached, ahead=ahead)

    def build_counters(self, campaign_ids) -> bool:
        """Redis's counters for campaigns it has none for (`reserving.py`); the service's
        readiness check builds them too, before any event needs them."""
        return build_missing_counters(self.reservations, campaign_ids)

    # -- reads -----------------------------------------------------------------------

    def quote(self, event: Event, engine: RulesEngine, *, explain: bool = False) -> dict:
        """The rewards the event would get now; reserves, records and counts nothing.
        `explain`: with why each candidate campaign did or did not apply."""
        return quote_event(event, engine, self.minor_digits, self.reservations,
                           policy=self.policy, now=self.clock(), explain=explain)
