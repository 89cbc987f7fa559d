"""Rewards the risk policy held for review (`hold.cashback_above`), and an admin's decision
on each: release it (the wallet pays it) or void it (it is undone as a refund would undo it).

A held reward was written as any reward is, its budget, limits and counters taken, with a
`reward_holds` row saying `held`. Deciding is done once, under the user's lock (the lock every
event of the user takes), so a decision and the user's events are serialised:

- release: the hold becomes `released`; webhook `reward.released` with the reward.
- void: a reversal row for what is left of the reward (a refund may already have taken back
  part of it), shaped as a refund's reversal of a campaign grant, so every sum of the
  campaign's budget counts it as given back; the campaign's redemption and the user's (and
  device's) uses are freed unless a full refund already freed them; webhook `reward.voided`
  with the reversal as a refund's response shows it. With Redis the budget and redemption go
  back to its counters as a refund's do: as an intent, applied once the void committed.

Both are audited on the hold row (decided_by, decided_at, note).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import func, select, update

from promo_engine.coordination.reservations import Request, Reservation, Reservations
from promo_engine.core.event import REDEMPTION
from promo_engine.ledger.abuse_counts import lock_device
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.models import (CampaignUsage, EventRecord, RewardRecord, UserRecord,
                                        utcnow)
from promo_engine.ledger.refunds import free_limits, reversal_row, stored_reward_json
from promo_engine.ledger.reserving import refuse_expired
from promo_engine.ledger.risk_models import RewardHold
from promo_engine.ledger.webhook_outbox import REWARD_RELEASED, REWARD_VOIDED, announce, message

HELD, RELEASED, VOIDED = "held", "released", "voided"
REVERSED = "reversed"  # a full refund or a cancel took it back before a decision
STATUSES = (HELD, RELEASED, VOIDED, REVERSED)
MAX_NOTE = 1000


class HoldError(ValueError):
    """A decision that cannot be made; the message says why, in one line. `code`:
    `not_found`, `not_held`, `invalid_note`, or `exchange` (a redemption's reward is not
    voided: its redemption is cancelled)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HeldReward:
    """A held reward as the queue shows it (amount in minor units of `currency`)."""
    reward_pk: int
    reward_id: str
    user_id: str
    campaign_id: str | None
    kind: str
    amount_minor: int | None
    points: int | None
    currency: str | None
    event_id: str | None  # the wallet's id of the event that earned it
    event_pk: int | None
    held_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    note: str


def _query():
    return (select(RewardHold, RewardRecord, EventRecord.event_id)
            .join(RewardRecord, RewardRecord.id == RewardHold.reward_pk)
            .outerjoin(EventRecord, EventRecord.id == RewardRecord.event_pk))


def _held(hold: RewardHold, reward: RewardRecord, event_id: str | None) -> HeldReward:
    return HeldReward(reward.id, reward.reward_id, reward.user_id, reward.campaign_id,
                      reward.kind, reward.amount_minor, reward.points, reward.currency,
                      event_id, reward.event_pk, hold.held_at, hold.status, hold.decided_by,
                      hold.decided_at, hold.note or "")


def held_rewards(session, status: str | None = HELD) -> list[HeldReward]:
    """The rewards in `status` (None: every held reward ever, decided ones included), the
    longest waiting first."""
    query = _query().order_by(RewardHold.held_at, RewardHold.reward_pk)
    if status is not None:
        query = query.where(RewardHold.status == status)
    return [_held(*row) for row in session.execute(query).all()]


def find(session, reward_id: str) -> HeldReward | None:
    row = session.execute(_query().where(RewardRecord.reward_id == reward_id)).first()
    return None if row is None else _held(*row)


def _lock(session, reward_id: str, verb: str):
    """(hold, reward, event) locked in the event path's order: the user's row, then the
    event's; HoldError when the reward was never held or is decided already."""
    found = session.execute(select(RewardRecord.user_id).join(
        RewardHold, RewardHold.reward_pk == RewardRecord.id).where(
        RewardRecord.reward_id == reward_id)).first()
    if found is None:
        raise HoldError("not_found", f"no held reward {reward_id}")
    session.execute(select(UserRecord.user_id).where(UserRecord.user_id == found.user_id)
                    .with_for_update())
    reward = session.execute(select(RewardRecord).where(RewardRecord.reward_id == reward_id)
                             ).scalar_one()
    event = session.execute(select(EventRecord).where(EventRecord.id == reward.event_pk)
                            .with_for_update()).scalar_one()
    hold = session.execute(select(RewardHold).where(RewardHold.reward_pk == reward.id)
                           .with_for_update()
                           .execution_options(populate_existing=True)).scalar_one()
    if hold.status != HELD:
        raise HoldError("not_held", f"reward {reward_id} was {hold.status} already "
                                    f"(by {hold.decided_by}); only held rewards can be {verb}")
    return hold, reward, event


def _note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE or "\x00" in note:
        raise HoldError("invalid_note", f"the note must be at most {MAX_NOTE} characters of text")
    return note


def _decide(hold: RewardHold, status: str, actor: str, note: str, now: datetime) -> None:
    hold.status, hold.decided_by, hold.decided_at, hold.note = status, actor, now, note


def release(session, reward_id: str, *, actor: str, note: str | None = None,
            now: datetime | None = None) -> HeldReward:
    """Release a held reward (not committed): the wallet may pay it now."""
    now, note = now or utcnow(), _note(note)
    hold, reward, event = _lock(session, reward_id, "released")
    _decide(hold, RELEASED, actor, note, now)
    announce(session, [message(REWARD_RELEASED, {
        "event_id": event.event_id, "user_id": reward.user_id,
        "reward": stored_reward_json(reward)}, now)], now)
    session.flush()
    return _held(hold, reward, event.event_id)


def void(session, reward_id: str, *, actor: str, note: str | None = None,
         reservations: Reservations | None, held: list[Reservation],
         now: datetime | None = None) -> tuple[HeldReward, dict | None]:
    """Void a held reward (not committed): what is left of it reversed, its budget and
    limits given back. Returns the decision and the reversal as the API shows it (None when
    refunds had already taken the whole reward back). With Redis, the counters' give-back is
    added to `held`, for the caller to confirm once committed (`void_committed`)."""
    now, note = now or utcnow(), _note(note)
    hold, reward, event = _lock(session, reward_id, "voided")
    if event.type == REDEMPTION:
        # Points paid for it: voiding would keep them. Undoing an exchange is a cancel,
        # which gives the points back too.
        raise HoldError("exchange", f"reward {reward_id} was bought with points: cancel its "
                                    f"redemption {event.event_id} instead (a cancel event)")
    if event.device_id is not None:  # the device's lock before any usage row, as events
        lock_device(session.connection(), event.device_id, now)
    value = reward.points if reward.amount_minor is None else reward.amount_minor
    reversed_so_far = int(session.execute(
        select(func.coalesce(func.sum(func.coalesce(RewardRecord.amount_minor,
                                                    RewardRecord.points)), 0))
        .where(RewardRecord.reverses_id == reward.id)).scalar())
    left = value + reversed_so_far  # reversals are negative
    reversal = None
    if left:
        row = reversal_row(reward, -left, event_pk=reward.event_pk, now=now)
        reversal = stored_reward_json(row)
        if reservations is None:
            session.execute(update(CampaignUsage)
                            .where(CampaignUsage.campaign_id == reward.campaign_id)
                            .values(spent=CampaignUsage.spent - left)
                            .execution_options(synchronize_session=False))
    # A full refund (or a cancel) of the event freed its limits already.
    freed = event.cancelled_by_pk is None and (
        event.amount_minor is None or event.refunded_minor < event.amount_minor)
    if freed:
        free_limits(reward, reward.user_id, reservations, device_id=event.device_id)
    if reservations is not None and (left or freed):
        held.append(reservations.intend_refund(
            [Request(reward.campaign_id, -left, -int(freed), None, None)]))
    _decide(hold, VOIDED, actor, note, now)
    announce(session, [message(REWARD_VOIDED, {
        "event_id": event.event_id, "user_id": reward.user_id, "reward": reversal}, now)], now)
    session.flush()
    return _held(hold, reward, event.event_id), reversal


# -- one decision, committed -----------------------------------------------------------

def release_committed(session, reward_id: str, *, actor: str, note: str | None = None,
                      now: datetime | None = None) -> HeldReward:
    """`release` in a transaction of its own, committed (retried on a conflict)."""
    return run_in_transaction(session, lambda: release(session, reward_id, actor=actor,
                                                       note=note, now=now))


def void_committed(session, reward_id: str, *, actor: str, note: str | None = None,
                   reservations: Reservations | None,
                   now: datetime | None = None) -> tuple[HeldReward, dict | None]:
    """`void` in a transaction of its own, committed (retried on a conflict); with Redis,
    the give-back is applied to the counters once committed, as a refund's is."""
    held: list[Reservation] = []

    def work():
        _forget(reservations, held)  # an attempt rolled back: its intent is void too
        result = void(session, reward_id, actor=actor, note=note, reservations=reservations,
                      held=held, now=now)
        refuse_expired(held)
        return result

    try:
        result = run_in_transaction(session, work)
    except BaseException:
        _forget(reservations, held)
        raise
    for reservation in held:
        try:
            reservations.confirm(reservation)
        except redis.RedisError:
            pass  # committed: reconciliation rebuilds the counters from the ledger
    return result


def _forget(reservations: Reservations | None, held: list[Reservation]) -> None:
    for reservation in held:
        try:
            reservations.release(reservation)
        except redis.RedisError:
            pass  # an intent left in flight is dropped at its deadline
    held.clear()
