"""The write path: one transaction per event holding the idempotency record, the user
lock, the shared-limit reservations, the reward rows and the stored response.

Order of locks, the same for every event: the event row (unique per client), the user row
(FOR UPDATE: serialises one user's events, so per-user limits and "first ever" are exact),
then campaign usage rows through guarded UPDATEs (budget and redemptions can never be
exceeded, whatever runs concurrently). PostgreSQL may still report a deadlock between two
users' campaign updates; `run_in_transaction` retries the whole event.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from . import money
from .campaign_type import UserState
from .database import run_in_transaction
from .engine import CompiledCampaign, Decision, RulesEngine
from .event import ACTIVATION, PAYMENT, REFUND, Event
from .extensions import db
from .models import (CampaignUsage, EventRecord, RewardRecord, UserCampaignDailyUsage,
                     UserCampaignUsage, UserRecord, utcnow)
from .rewards import POINTS, VOUCHER, Reward

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


def new_reward_id() -> str:
    return "rw_" + secrets.token_hex(10)


def new_voucher_code() -> str:
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(12))


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _upsert(model, values: dict, keys: list[str], counter: str, delta: int):
    """INSERT ... ON CONFLICT DO UPDATE counter = counter + delta (SQLite and PostgreSQL)."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values, **{counter: delta})
    column = getattr(model, counter)
    return statement.on_conflict_do_update(index_elements=keys, set_={counter: column + delta})


class DatabaseGate:
    """Reserves budget and redemptions with one guarded UPDATE: never check-then-act."""

    def __init__(self, minor_digits: int):
        self.minor_digits = minor_digits

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        cost = reward.budget_cost(self.minor_digits)
        conditions = [CampaignUsage.campaign_id == compiled.id]
        if compiled.budget_limit is not None:
            conditions.append(CampaignUsage.spent + cost <= compiled.budget_limit)
        if compiled.max_redemptions is not None:
            conditions.append(CampaignUsage.redemptions + 1 <= compiled.max_redemptions)
        result = db.session.execute(
            update(CampaignUsage).where(and_(*conditions))
            .values(spent=CampaignUsage.spent + cost, redemptions=CampaignUsage.redemptions + 1)
            .execution_options(synchronize_session=False))
        return result.rowcount == 1


class ReadOnlyGate:
    """For quotes: answers from the current counters and changes nothing."""

    def __init__(self, minor_digits: int):
        self.minor_digits = minor_digits

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        usage = db.session.get(CampaignUsage, compiled.id)
        spent, redemptions = (usage.spent, usage.redemptions) if usage else (0, 0)
        if compiled.budget_limit is not None and \
                spent + reward.budget_cost(self.minor_digits) > compiled.budget_limit:
            return False
        return compiled.max_redemptions is None or redemptions + 1 <= compiled.max_redemptions


def load_user_state(user_id: str, occurred_at: datetime, *, lock: bool) -> tuple[UserState, UserRecord | None]:
    """The user's counters before this event. With `lock`, the row is created and locked."""
    if lock:
        dialect = db.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        db.session.execute(insert(UserRecord).values(
            user_id=user_id, activations=0, payments=0, points_balance=0, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["user_id"]))
        user = db.session.execute(
            select(UserRecord).where(UserRecord.user_id == user_id).with_for_update()
        ).scalar_one()
    else:
        user = db.session.get(UserRecord, user_id)
        if user is None:
            return UserState(user_id=user_id), None
    uses = dict(db.session.execute(
        select(UserCampaignUsage.campaign_id, UserCampaignUsage.uses)
        .where(UserCampaignUsage.user_id == user_id)).all())
    # The event's local day in any zone is within a day of its UTC date.
    utc_day = occurred_at.date()
    daily = {(campaign_id, day): count for campaign_id, day, count in db.session.execute(
        select(UserCampaignDailyUsage.campaign_id, UserCampaignDailyUsage.day,
               UserCampaignDailyUsage.uses)
        .where(UserCampaignDailyUsage.user_id == user_id,
               UserCampaignDailyUsage.day.between(utc_day - timedelta(days=1),
                                                  utc_day + timedelta(days=1)))).all()}
    state = UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                      points_balance=user.points_balance, campaign_uses=uses, daily_uses=daily)
    return state, user


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


class Ledger:
    def __init__(self, *, currency: str):
        self.currency = currency
        self.minor_digits = money.minor_digits(currency)

    # -- idempotency ---------------------------------------------------------------

    def _replay(self, client_id: str, event_id: str, request_hash: str) -> Recorded | None:
        existing = db.session.execute(
            select(EventRecord.request_hash, EventRecord.response)
            .where(EventRecord.client_id == client_id, EventRecord.event_id == event_id)
        ).first()
        if existing is None:
            return None
        if existing.request_hash != request_hash:
            raise IdempotencyConflict()
        return Recorded(status=200, body=existing.response, replayed=True)

    def record(self, *, client_id: str, event: Event, request_hash: str,
               engine: RulesEngine) -> Recorded:
        """Record the event once; a replay returns the first response exactly."""
        def attempt() -> Recorded:
            replay = self._replay(client_id, event.event_id, request_hash)
            if replay is not None:
                return replay
            try:
                return self._record_new(client_id, event, request_hash, engine)
            except IntegrityError:
                # A concurrent copy of this event committed first: answer as a replay.
                db.session.rollback()
                replay = self._replay(client_id, event.event_id, request_hash)
                if replay is None:
                    raise
                return replay
        return run_in_transaction(db.session, attempt)

    # -- new events ----------------------------------------------------------------

    def _record_new(self, client_id: str, event: Event, request_hash: str,
                    engine: RulesEngine) -> Recorded:
        record = EventRecord(
            client_id=client_id, event_id=event.event_id, type=event.type,
            user_id=event.user_id, merchant_id=event.merchant_id,
            amount_minor=money.to_minor(event.amount, self.currency) if event.amount is not None else None,
            currency=event.currency, occurred_at=event.occurred_at, refunded_minor=0,
            request_hash=request_hash, response="", created_at=utcnow())
        db.session.add(record)
        db.session.flush()  # takes the (client_id, event_id) unique slot now
        state, user = load_user_state(event.user_id, event.occurred_at, lock=True)
        if event.type == REFUND:
            rewards, decision = self._reverse(record, event, user), None
        else:
            decision = engine.evaluate(event, state, DatabaseGate(self.minor_digits))
            rewards = self._write_grants(record, event, decision)
            if event.type == ACTIVATION:
                user.activations += 1
            elif event.type == PAYMENT:
                user.payments += 1
        user.points_balance += sum(r.points for r in rewards if r.points is not None)
        body = {"event_id": event.event_id,
                "rewards": [self._reward_body(r) for r in rewards],
                "points_balance": user.points_balance}
        record.response = dumps(body)
        db.session.flush()
        return Recorded(status=201, body=record.response, replayed=False, decision=decision)

    def _write_grants(self, record: EventRecord, event: Event, decision: Decision) -> list[RewardRecord]:
        rows = []
        now = utcnow()
        for grant in decision.grants:
            reward = grant.reward
            row = RewardRecord(
                reward_id=new_reward_id(), event_pk=record.id, user_id=event.user_id,
                campaign_id=reward.campaign_id, kind=reward.kind, points=reward.points,
                amount_minor=money.to_minor(reward.amount, reward.currency) if reward.is_money else None,
                currency=reward.currency, local_day=grant.local_day, created_at=now)
            if reward.kind == VOUCHER:
                row.voucher_code = new_voucher_code()
                row.voucher_expires_at = event.occurred_at + timedelta(days=reward.voucher_valid_days)
            rows.append(row)
            if grant.campaign is not None:
                db.session.execute(_upsert(UserCampaignUsage,
                                           {"campaign_id": reward.campaign_id, "user_id": event.user_id},
                                           ["campaign_id", "user_id"], "uses", 1))
                db.session.execute(_upsert(UserCampaignDailyUsage,
                                           {"campaign_id": reward.campaign_id, "user_id": event.user_id,
                                            "day": grant.local_day},
                                           ["campaign_id", "user_id", "day"], "uses", 1))
        db.session.add_all(rows)
        db.session.flush()
        return rows

    # -- refunds -------------------------------------------------------------------

    def _reverse(self, refund: EventRecord, event: Event, user: UserRecord) -> list[RewardRecord]:
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
            raise LedgerError("unknown_payment",
                              f"no payment {event.original_event_id} of user {event.user_id}",
                              field="original_event_id")
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
                if original.campaign_id is not None:
                    # Reversed money (or points) goes back to the campaign's budget.
                    db.session.execute(
                        update(CampaignUsage).where(CampaignUsage.campaign_id == original.campaign_id)
                        .values(spent=CampaignUsage.spent - delta)
                        .execution_options(synchronize_session=False))
            if fully_refunded and original.campaign_id is not None:
                self._free_limits(original, event.user_id)
        db.session.add_all(rows)
        db.session.flush()
        return rows

    def _free_limits(self, original: RewardRecord, user_id: str) -> None:
        """A fully refunded payment no longer counts against the campaign's limits."""
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
        state, _ = load_user_state(event.user_id, event.occurred_at, lock=False)
        decision = engine.evaluate(event, state, ReadOnlyGate(self.minor_digits))
        db.session.rollback()
        rewards = []
        for grant in decision.grants:
            reward = grant.reward
            expires = (event.occurred_at + timedelta(days=reward.voucher_valid_days)
                       if reward.kind == VOUCHER else None)
            rewards.append(reward_json(reward, voucher_expires_at=expires))
        return {"event_id": event.event_id, "rewards": rewards,
                "points_balance": state.points_balance + decision.points, "dry_run": True}
