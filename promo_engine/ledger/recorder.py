"""The write path: one transaction per event holding the idempotency record, the user
lock, the shared-limit reservations, the reward rows and the stored response.

Order of locks, the same for every event: the event row (unique per client), the user row
(FOR UPDATE: serialises one user's events, so per-user limits and "first ever" are exact),
then the campaign-wide limits. Those are held in one of two places:

- without Redis, in campaign usage rows through guarded UPDATEs (budget and redemptions can
  never be exceeded, whatever runs concurrently). PostgreSQL may still report a deadlock
  between two users' campaign updates; the whole event is retried (`database.retrying`).
- with Redis (`reservations.py`), in counters reserved for the whole event in one script.
  The event is evaluated as if every limited reward fitted, the rewards are reserved all or
  none, and a campaign found full is evaluated again as full; the reservation is given back
  if the transaction fails and confirmed once it committed. Campaign usage rows are then
  rebuilt from the reward rows by reconciliation, so no hot row is locked per event.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from promo_engine.coordination.replay_cache import ReplayCache
from promo_engine.coordination.reservations import (EpochMissing, NotReady, Request, Reservation,
                                                    Reservations)
from promo_engine.coordination.throttled_log import ThrottledWarning
from promo_engine.core import money
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import CompiledCampaign, Decision, RulesEngine
from promo_engine.core.event import ACTIVATION, PAYMENT, REFUND, Event
from promo_engine.core.rewards import POINTS, VOUCHER, Reward
from promo_engine.ledger.event_writes import (AlreadyRecorded, EventRows, EventWrites, StoredEvent,
                                              event_writes_for, read_campaign_uses)
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import (CampaignUsage, EventRecord, RewardRecord,
                                        UserCampaignDailyUsage, UserCampaignUsage, UserRecord,
                                        utcnow)
from promo_engine.ledger.usage import current_usage

log = logging.getLogger(__name__)
redis_trouble = ThrottledWarning(log)

BUILD_WAIT_SECONDS, BUILD_WAIT_STEPS = 0.02, 50  # for another worker's counter build: 1 s

VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till


class LedgerError(Exception):
    """A business rule refused the event; nothing was written."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


@dataclass(frozen=True)
class Recorded:
    status: int  # 201 new, 200 replayed
    body: str  # the exact JSON text of the first response
    replayed: bool
    decision: Decision | None = None


class IdempotencyConflict(Exception):
    """The event_id was used before with a different body."""


class ReservationExpired(NotReady):
    """The transaction outlived its reservation's deadline, so it must not commit: after the
    deadline reconciliation may already have given that budget back."""

    def __init__(self):
        super().__init__(retry_after_ms=1000)


def new_reward_id() -> str:
    return "rw_" + secrets.token_hex(10)


def new_voucher_code() -> str:
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(12))


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


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


def load_user_state(user_id: str, occurred_at: datetime) -> UserState:
    """The user's counters as committed now, without locking (for quotes)."""
    user = db.session.get(UserRecord, user_id)
    if user is None:
        return UserState(user_id=user_id)
    uses, daily = read_campaign_uses(db.session, user_id, occurred_at)
    return UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                     points_balance=user.points_balance, campaign_uses=uses, daily_uses=daily)


def reward_json(reward: Reward, *,
                reward_id: str | None = None, voucher_code: str | None = None,
                voucher_expires_at: datetime | None = None,
                reverses: str | None = None) -> dict:
    """One reward as the API shows it (money with exactly the currency's minor digits)."""
    body: dict = {}
    if reward_id is not None:
        body["reward_id"] = reward_id
    body["campaign_id"] = reward.campaign_id
    body["kind"] = reward.kind
    if reward.kind == POINTS:
        body["points"] = reward.points
    elif reward.kind == VOUCHER:
        body["voucher"] = {"code": voucher_code,
                           "amount": money.format_amount(reward.amount, reward.currency),
                           "currency": reward.currency,
                           "expires_at": iso(voucher_expires_at) if voucher_expires_at else None}
    else:
        body["amount"] = money.format_amount(reward.amount, reward.currency)
        body["currency"] = reward.currency
    if reverses is not None:
        body["reverses"] = reverses
    return body


def dumps(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(", ", ": "))


def ledger_usage(campaign_ids) -> dict[str, tuple[int, int]]:
    """(spent, redemptions) per campaign from the reward rows themselves: what the usage
    counters must hold once every committed event is counted and nothing is in flight."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    value = db.func.coalesce(RewardRecord.points, RewardRecord.amount_minor)
    spent = dict(db.session.execute(
        select(RewardRecord.campaign_id, db.func.coalesce(db.func.sum(value), 0))
        .where(RewardRecord.campaign_id.in_(ids)).group_by(RewardRecord.campaign_id)).all())
    # A grant stops counting as a redemption once its payment is refunded in full.
    redemptions = dict(db.session.execute(
        select(RewardRecord.campaign_id, db.func.count())
        .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
        .where(RewardRecord.campaign_id.in_(ids), RewardRecord.reverses_id.is_(None),
               db.or_(EventRecord.amount_minor.is_(None),
                      EventRecord.refunded_minor < EventRecord.amount_minor))
        .group_by(RewardRecord.campaign_id)).all())
    # PostgreSQL's SUM of BIGINT is NUMERIC: back to int.
    return {c: (int(spent.get(c, 0)), int(redemptions.get(c, 0))) for c in ids}


class Ledger:
    def __init__(self, *, currency: str, reservations: Reservations | None = None,
                 replays: ReplayCache | None = None):
        self.currency = currency
        self.minor_digits = money.minor_digits(currency)
        self.reservations = reservations
        self.replays = replays

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
        """Record the event once; a replay returns the first response exactly."""
        if self.replays is not None:
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

        def attempt() -> Recorded:
            held.clear()
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
        self._after_commit(client_id, event.event_id, request_hash, recorded, held)
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
                      recorded: Recorded, held: list[Reservation]) -> None:
        """Confirm the reservations and remember the answer for replays, in one round trip.
        The event is committed whatever happens here, so a Redis error is only logged."""
        if self.reservations is None and self.replays is None:
            return
        client = (self.reservations or self.replays).client
        try:
            pipe = client.pipeline(transaction=False)
            for reservation in held:
                self.reservations.confirm(reservation, pipeline=pipe)
            if self.replays is not None:
                self.replays.put(pipe, client_id, event_id, request_hash, recorded.body)
            try:
                pipe.execute()
            except redis.exceptions.NoScriptError:  # Redis restarted: scripts load again
                for reservation in held:
                    self.reservations.confirm(reservation)
        except redis.RedisError as exc:
            redis_trouble.warning("an event committed, but Redis could not be told (its "
                                  "reservations settle at their deadline; replays are answered "
                                  "by the database): %s", exc)

    # -- new events ----------------------------------------------------------------

    @staticmethod
    def _refuse_expired(held: list[Reservation]) -> None:
        """Called just before the commit: after its deadline a reservation may already have
        been given back by reconciliation, so the event must not commit on it."""
        if any(reservation.expired() for reservation in held):
            raise ReservationExpired()

    def _record_grants(self, client_id: str, event: Event, request_hash: str,
                       engine: RulesEngine, held: list[Reservation],
                       writes: EventWrites) -> Recorded:
        """A payment, activation or plugin event: lock the user and read its counters,
        evaluate, then write every row at once (`event_writes.py`: one round trip each
        on PostgreSQL, where the write is pipelined with the commit).

        The event's row is written after evaluation, with its response, so a copy of the
        event racing this one is found by the unique index at that INSERT; both hold the
        same user's lock, so the copy waits for this one's commit and then replays it."""
        now = utcnow()
        state, stored = writes.lock_user(user_id=event.user_id, occurred_at=event.occurred_at,
                                         now=now, client_id=client_id, event_id=event.event_id,
                                         find_stored=self.replays is None)
        replay = self._replayed(stored, request_hash)
        if replay is not None:
            return replay
        if self.reservations is None:
            decision = engine.evaluate(event, state, DatabaseGate(self.minor_digits, writes))
        else:
            decision = self._evaluate_reserving(event, state, engine, held)
        rewards, bodies = [], []
        for grant in decision.grants:
            reward = grant.reward
            row = {"reward_id": new_reward_id(), "user_id": event.user_id,
                   "campaign_id": reward.campaign_id, "kind": reward.kind,
                   "points": reward.points, "currency": reward.currency,
                   "amount_minor": (money.to_minor(reward.amount, reward.currency)
                                    if reward.is_money else None),
                   "voucher_code": None, "voucher_expires_at": None,
                   "local_day": grant.local_day, "reverses_id": None, "created_at": now}
            if reward.kind == VOUCHER:
                row["voucher_code"] = new_voucher_code()
                row["voucher_expires_at"] = event.occurred_at + timedelta(days=reward.voucher_valid_days)
            rewards.append(row)
            bodies.append(reward_json(reward, reward_id=row["reward_id"],
                                      voucher_code=row["voucher_code"],
                                      voucher_expires_at=row["voucher_expires_at"]))
        balance = state.points_balance + decision.points
        response = dumps({"event_id": event.event_id, "rewards": bodies,
                          "points_balance": balance})
        event_row = {
            "client_id": client_id, "event_id": event.event_id, "type": event.type,
            "user_id": event.user_id, "merchant_id": event.merchant_id,
            "amount_minor": (money.to_minor(event.amount, self.currency)
                             if event.amount is not None else None),
            "currency": event.currency, "occurred_at": event.occurred_at, "refunded_minor": 0,
            "original_event_id": None, "request_hash": request_hash, "response": response,
            "created_at": now}
        uses = [(grant.reward.campaign_id, grant.local_day)
                for grant in decision.grants if grant.campaign is not None]
        self._refuse_expired(held)
        writes.write(EventRows(event=event_row, rewards=rewards, uses=uses,
                               activated=int(event.type == ACTIVATION),
                               paid=int(event.type == PAYMENT), balance=balance))
        return Recorded(status=201, body=response, replayed=False, decision=decision)

    def _record_refund(self, client_id: str, event: Event, request_hash: str,
                       held: list[Reservation]) -> Recorded:
        record = EventRecord(
            client_id=client_id, event_id=event.event_id, type=event.type,
            user_id=event.user_id, merchant_id=event.merchant_id,
            amount_minor=money.to_minor(event.amount, self.currency),
            currency=event.currency, occurred_at=event.occurred_at, refunded_minor=0,
            request_hash=request_hash, response="", created_at=utcnow())
        db.session.add(record)
        db.session.flush()  # takes the (client_id, event_id) unique slot now
        # The user's lock (refunds need neither a new user's row nor the campaign counters:
        # a user without a row has no payment to refund).
        user = db.session.execute(select(UserRecord).where(UserRecord.user_id == event.user_id)
                                  .with_for_update()).scalar_one_or_none()
        if user is None:
            raise self._unknown_payment(event)
        rewards = self._reverse(record, event, user, held)
        user.points_balance += sum(r.points for r in rewards if r.points is not None)
        body = {"event_id": event.event_id,
                "rewards": [self._reward_body(r) for r in rewards],
                "points_balance": user.points_balance}
        record.response = dumps(body)
        db.session.flush()
        self._refuse_expired(held)
        return Recorded(status=201, body=record.response, replayed=False)

    @staticmethod
    def _unknown_payment(event: Event) -> LedgerError:
        return LedgerError("unknown_payment",
                           f"no payment {event.original_event_id} of user {event.user_id}",
                           field="original_event_id")

    def _evaluate_reserving(self, event: Event, state: UserState, engine: RulesEngine,
                            held: list[Reservation]) -> Decision:
        """Evaluate as if every limited reward fitted, then reserve them all in one round
        trip. A campaign without room is evaluated again as full, which may let others in
        (a lower-priority campaign after a full exclusive one, the next multiplier of a
        group): each round marks at least one more campaign full, so this ends."""
        full: set[str] = set()
        built_counters = False
        while True:
            gate = CollectingGate(self.minor_digits, full)
            decision = engine.evaluate(event, state, gate)
            if not gate.requests:
                return decision
            outcome = self.reservations.reserve(gate.requests)
            if outcome.reservation is not None:
                held.append(outcome.reservation)
                return decision
            if outcome.missing:
                if built_counters:  # built and gone again: Redis is restarting
                    raise NotReady(self.reservations.settle_ms)
                built_counters = self.build_counters(outcome.missing)
                continue
            full |= outcome.full

    def build_counters(self, campaign_ids) -> bool:
        """Counters for campaigns Redis has none for (new, or Redis lost its data). False
        when another worker was building: its build takes milliseconds, so this one waits
        a little and tries the reservation again rather than answer 503."""
        token = self.reservations.try_build()
        if token is None:
            for _ in range(BUILD_WAIT_STEPS):
                time.sleep(BUILD_WAIT_SECONDS)
                if not self.reservations.building():
                    return False
            raise NotReady(1000, "counters_building")  # a long build (a large ledger)
        try:
            t0 = self.reservations.clock_ms()
            if self.reservations.rebuild(t0, ledger_usage(campaign_ids), only_missing=True) < 0:
                # the ledger read took too long to be used safely
                raise NotReady(1000, "counters_building")
        finally:
            self.reservations.built(token)
        return True

    # -- refunds -------------------------------------------------------------------

    def _reverse(self, refund: EventRecord, event: Event, user: UserRecord,
                 held: list[Reservation]) -> list[RewardRecord]:
        """Reverse the payment's rewards in proportion to what has been refunded in all.

        Each reversal is the rounded cumulative share minus what earlier refunds already
        reversed, so once the whole payment is refunded every reward sums to exactly zero.
        """
        payment = db.session.execute(
            select(EventRecord).where(EventRecord.client_id == refund.client_id,
                                      EventRecord.event_id == event.original_event_id,
                                      EventRecord.type == PAYMENT)
            .with_for_update()).scalar_one_or_none()
        if payment is None or payment.user_id != event.user_id:
            raise self._unknown_payment(event)
        if payment.currency != event.currency:
            raise LedgerError("validation_error",
                              f"the payment was in {payment.currency}", field="currency")
        refunded = payment.refunded_minor + refund.amount_minor
        if refunded > payment.amount_minor:
            left = money.from_minor(payment.amount_minor - payment.refunded_minor, self.currency)
            raise LedgerError("refund_exceeds_payment",
                              f"refunds would exceed the payment; at most {left} is left to refund",
                              field="amount")
        refund.original_event_id = payment.id
        payment.refunded_minor = refunded
        fully_refunded = refunded == payment.amount_minor
        share = Decimal(refunded) / Decimal(payment.amount_minor)

        granted = db.session.execute(
            select(RewardRecord).where(RewardRecord.event_pk == payment.id,
                                       RewardRecord.reverses_id.is_(None))
            .order_by(RewardRecord.id)).scalars().all()
        # PostgreSQL's SUM of BIGINT is NUMERIC: back to int before any arithmetic.
        reversed_so_far = {reward_pk: int(total) for reward_pk, total in db.session.execute(
            select(RewardRecord.reverses_id,
                   db.func.coalesce(db.func.sum(RewardRecord.points), 0)
                   + db.func.coalesce(db.func.sum(RewardRecord.amount_minor), 0))
            .where(RewardRecord.reverses_id.in_([r.id for r in granted]))
            .group_by(RewardRecord.reverses_id)).all()} if granted else {}

        rows, now = [], utcnow()
        returns: list[Request] = []  # to the campaigns' counters in Redis, once committed
        for original in granted:
            value = original.points if original.kind == POINTS else original.amount_minor
            target = int((Decimal(value) * share).to_integral_value(ROUND_HALF_UP))
            delta = target + reversed_so_far.get(original.id, 0)  # reversals are negative
            if delta:
                rows.append(RewardRecord(
                    reward_id=new_reward_id(), event_pk=refund.id, user_id=event.user_id,
                    campaign_id=original.campaign_id, kind=original.kind,
                    points=-delta if original.kind == POINTS else None,
                    amount_minor=None if original.kind == POINTS else -delta,
                    currency=original.currency, voucher_code=original.voucher_code,
                    voucher_expires_at=original.voucher_expires_at,
                    local_day=original.local_day, reverses_id=original.id, created_at=now))
                if original.campaign_id is not None and self.reservations is None:
                    # Reversed money (or points) goes back to the campaign's budget.
                    db.session.execute(
                        update(CampaignUsage).where(CampaignUsage.campaign_id == original.campaign_id)
                        .values(spent=CampaignUsage.spent - delta)
                        .execution_options(synchronize_session=False))
            if original.campaign_id is not None:
                freed = fully_refunded
                if freed:
                    self._free_limits(original, event.user_id)
                if delta or freed:
                    returns.append(Request(original.campaign_id, -delta, -int(freed), None, None))
        if returns and self.reservations is not None:
            held.append(self.reservations.intend_refund(returns))
        db.session.add_all(rows)
        db.session.flush()
        return rows

    def _free_limits(self, original: RewardRecord, user_id: str) -> None:
        """A fully refunded payment no longer counts against the campaign's limits."""
        if self.reservations is None:
            db.session.execute(update(CampaignUsage)
                               .where(CampaignUsage.campaign_id == original.campaign_id)
                               .values(redemptions=CampaignUsage.redemptions - 1)
                               .execution_options(synchronize_session=False))
        db.session.execute(update(UserCampaignUsage)
                           .where(UserCampaignUsage.campaign_id == original.campaign_id,
                                  UserCampaignUsage.user_id == user_id)
                           .values(uses=UserCampaignUsage.uses - 1)
                           .execution_options(synchronize_session=False))
        if original.local_day is not None:
            db.session.execute(update(UserCampaignDailyUsage)
                               .where(UserCampaignDailyUsage.campaign_id == original.campaign_id,
                                      UserCampaignDailyUsage.user_id == user_id,
                                      UserCampaignDailyUsage.day == original.local_day)
                               .values(uses=UserCampaignDailyUsage.uses - 1)
                               .execution_options(synchronize_session=False))

    def _reward_body(self, row: RewardRecord) -> dict:
        amount = money.from_minor(row.amount_minor, row.currency) if row.amount_minor is not None else None
        reward = Reward(kind=row.kind, campaign_id=row.campaign_id, points=row.points,
                        amount=amount, currency=row.currency)
        reverses = None
        if row.reverses_id is not None:
            reverses = db.session.get(RewardRecord, row.reverses_id).reward_id
        return reward_json(reward, reward_id=row.reward_id, voucher_code=row.voucher_code,
                           voucher_expires_at=row.voucher_expires_at, reverses=reverses)

    # -- reads -----------------------------------------------------------------------

    def quote(self, event: Event, engine: RulesEngine) -> dict:
        """The rewards the event would get now; reserves, records and counts nothing."""
        state = load_user_state(event.user_id, event.occurred_at)
        decision = engine.evaluate(event, state, ReadOnlyGate(self.minor_digits, self.reservations))
        db.session.rollback()
        rewards = []
        for grant in decision.grants:
            reward = grant.reward
            expires = (event.occurred_at + timedelta(days=reward.voucher_valid_days)
                       if reward.kind == VOUCHER else None)
            rewards.append(reward_json(reward, voucher_expires_at=expires))
        return {"event_id": event.event_id, "rewards": rewards,
                "points_balance": state.points_balance + decision.points, "dry_run": True}
