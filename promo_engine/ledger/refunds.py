"""Refunds: the payment's rewards reversed in proportion to what has been refunded in all,
the reversed budget given back to the campaigns, and, once the payment is refunded in full,
its grants no longer counted against any limit.

Apart from new events because a refund takes a different path through the database: no
evaluation and no new user, but the payment's row locked and its rewards read back, through
the ORM session in the recorder's transaction.
"""
from __future__ import annotations

from sqlalchemy import select, update

from promo_engine.coordination.reservations import Request, Reservation, Reservations
from promo_engine.core import money
from promo_engine.core.event import PAYMENT, Event
from promo_engine.core.rewards import POINTS, Reward
from promo_engine.ledger import lots, vouchers
from promo_engine.ledger.abuse_counts import lock_device, uncount_device_use
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import (RETURNED, SPENT, CampaignUsage, EventRecord,
                                        RewardRecord, UserCampaignDailyUsage,
                                        UserCampaignUsage, UserRecord, utcnow)
from promo_engine.ledger.outcomes import LedgerError
from promo_engine.ledger.responses import dumps, reward_json
from promo_engine.ledger.reversal_math import is_campaign_grant, refund_share, reversal_delta
from promo_engine.ledger.reward_ids import new_reward_id
from promo_engine.ledger.risk_models import RewardHold


def record_refund(client_id: str, event: Event, request_hash: str, *, currency: str,
                  reservations: Reservations | None, held: list[Reservation],
                  now=None) -> str:
    """Write the refund and its reversals (not committed); its response text.

    With Redis, what goes back to the campaigns' counters is added to `held`, for the
    recorder to confirm once committed."""
    record = EventRecord(
        client_id=client_id, event_id=event.event_id, type=event.type,
        user_id=event.user_id, merchant_id=event.merchant_id,
        amount_minor=money.to_minor(event.amount, currency),
        currency=event.currency, occurred_at=event.occurred_at, refunded_minor=0,
        request_hash=request_hash, response="", created_at=now or utcnow(),
        device_id=event.device_id)
    db.session.add(record)
    db.session.flush()  # takes the (client_id, event_id) unique slot now
    # The user's lock (refunds need neither a new user's row nor the campaign counters:
    # a user without a row has no payment to refund).
    user = db.session.execute(select(UserRecord).where(UserRecord.user_id == event.user_id)
                              .with_for_update()).scalar_one_or_none()
    if user is None:
        raise _unknown_payment(event)
    rewards = _reverse(record, event, currency, reservations, held, record.created_at)
    body = {"event_id": event.event_id,
            "rewards": [stored_reward_json(r) for r in rewards],
            "points_balance": user.points_balance}
    record.response = dumps(body)
    db.session.flush()
    return record.response


def _unknown_payment(event: Event) -> LedgerError:
    return LedgerError("unknown_payment",
                       f"no payment {event.original_event_id} of user {event.user_id}",
                       field="original_event_id")


def _reverse(refund: EventRecord, event: Event, currency: str,
             reservations: Reservations | None, held: list[Reservation],
             now) -> list[RewardRecord]:
    """Reverse the payment's rewards in proportion to what has been refunded in all.

    Each reversal is the rounded cumulative share minus what earlier refunds already
    reversed, so once the whole payment is refunded every reward sums to exactly zero. The
    arithmetic is `reversal_math.py`'s, which the back-test shares.
    """
    payment = db.session.execute(
        select(EventRecord).where(EventRecord.client_id == refund.client_id,
                                  EventRecord.event_id == event.original_event_id,
                                  EventRecord.type == PAYMENT)
        .with_for_update()).scalar_one_or_none()
    if payment is None or payment.user_id != event.user_id:
        raise _unknown_payment(event)
    if payment.currency != event.currency:
        raise LedgerError("validation_error",
                          f"the payment was in {payment.currency}", field="currency")
    refunded, fully_refunded, share = refund_share(
        payment.amount_minor, payment.refunded_minor, refund.amount_minor, currency)
    refund.original_event_id = payment.id
    payment.refunded_minor = refunded
    if fully_refunded and payment.device_id is not None:
        # The payment's device, locked before any usage row as every event locks it
        # (`abuse_counts.py`): its uses are freed below with the user's.
        lock_device(db.session.connection(), payment.device_id, now)

    granted = db.session.execute(
        select(RewardRecord).where(RewardRecord.event_pk == payment.id,
                                   RewardRecord.reverses_id.is_(None),
                                   RewardRecord.reason.is_distinct_from(RETURNED),
                                   # a held reward voided is undone already (holds.py)
                                   RewardRecord.id.not_in(voided_rewards()))
        .order_by(RewardRecord.id)).scalars().all()
    # PostgreSQL's SUM of BIGINT is NUMERIC: back to int before any arithmetic.
    reversed_so_far = {reward_pk: int(total) for reward_pk, total in db.session.execute(
        select(RewardRecord.reverses_id,
               db.func.coalesce(db.func.sum(RewardRecord.points), 0)
               + db.func.coalesce(db.func.sum(RewardRecord.amount_minor), 0))
        .where(RewardRecord.reverses_id.in_([r.id for r in granted]))
        .group_by(RewardRecord.reverses_id)).all()} if granted else {}

    rows = []
    returns: list[Request] = []  # to the campaigns' counters in Redis, once committed
    user = db.session.get(UserRecord, event.user_id)
    lots.catch_up(db.session, user, now)  # what is due goes first, as it would have
    for original in granted:
        value = original.points if original.kind == POINTS else original.amount_minor
        delta = reversal_delta(value, share, reversed_so_far.get(original.id, 0))
        campaign_grant = is_campaign_grant(original.campaign_id, original.reason)
        if delta:
            row = reversal_row(original, -delta, event_pk=refund.id, now=now)
            rows.append(row)
            if original.kind == POINTS:
                reverse_points(original, row, user, now)
            if campaign_grant and reservations is None:
                # Reversed money (or points) goes back to the campaign's budget.
                db.session.execute(
                    update(CampaignUsage).where(CampaignUsage.campaign_id == original.campaign_id)
                    .values(spent=CampaignUsage.spent - delta)
                    .execution_options(synchronize_session=False))
        if campaign_grant:
            freed = fully_refunded
            if freed:
                free_limits(original, event.user_id, reservations,
                            device_id=payment.device_id)
            if delta or freed:
                returns.append(Request(original.campaign_id, -delta, -int(freed), None, None))
    if fully_refunded:
        close_holds([r.id for r in granted], by=f"refund:{event.event_id}", now=now)
        vouchers.free_after_full_refund(db.session, payment.id)
        vouchers.void_unused(db.session, [r.id for r in granted if r.kind == "voucher"], now)
    if returns and reservations is not None:
        held.append(reservations.intend_refund(returns))
    db.session.flush()
    return rows


def reversal_row(original: RewardRecord, value: int, *, event_pk: int,
                 now) -> RewardRecord:
    """A row reversing `value` (negative for a grant, positive for a spend) of `original`,
    written at once: lot moves refer to it."""
    row = RewardRecord(
        reward_id=new_reward_id(), event_pk=event_pk, user_id=original.user_id,
        campaign_id=original.campaign_id, kind=original.kind,
        points=value if original.kind == POINTS else None,
        amount_minor=None if original.kind == POINTS else value,
        currency=original.currency, voucher_code=original.voucher_code,
        voucher_expires_at=original.voucher_expires_at, local_day=original.local_day,
        reverses_id=original.id, reason=RETURNED if original.reason == SPENT else original.reason,
        created_at=now)
    db.session.add(row)
    db.session.flush()
    return row


def reverse_points(original: RewardRecord, row: RewardRecord, user: UserRecord, now) -> None:
    """The points side of a reversal: a spend's points go back to its lots, a grant's come
    from its lot (`lots.py`). Points granted before lots existed come off the balance."""
    if original.reason == SPENT:
        lots.give_back(db.session, user, original, row.points, row)
        return
    lot = lots.lot_of(db.session, original)
    if lot is None:
        user.points_balance += row.points
        return

    def returned_entry(*, points: int, reverses_id: int) -> RewardRecord:
        entry = RewardRecord(reward_id=new_reward_id(), event_pk=row.event_pk,
                             user_id=user.user_id, campaign_id=None, kind=POINTS,
                             points=points, reverses_id=reverses_id, reason=RETURNED,
                             created_at=now)
        db.session.add(entry)
        db.session.flush()
        return entry

    lots.take_back(db.session, user, lot, -row.points, row, now, make_entry=returned_entry)


def free_limits(original: RewardRecord, user_id: str,
                reservations: Reservations | None, *, device_id: str | None) -> None:
    """A fully refunded payment no longer counts against the campaign's limits: its
    redemption, the user's uses and, when it named a device (`device_id`, the payment's,
    not the refund's), the device's uses (`limits.per_device`)."""
    if reservations is None:
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
    if device_id is not None:
        uncount_device_use(db.session.connection(), device_id, original.campaign_id,
                           original.local_day)


def stored_reward_json(row: RewardRecord) -> dict:
    """A reward row (here, a reversal) as the API shows it."""
    amount = (money.from_minor(row.amount_minor, row.currency)
              if row.amount_minor is not None else None)
    reward = Reward(kind=row.kind, campaign_id=row.campaign_id, points=row.points,
                    amount=amount, currency=row.currency)
    reverses = None
    if row.reverses_id is not None:
        reverses = db.session.get(RewardRecord, row.reverses_id).reward_id
    return reward_json(reward, reward_id=row.reward_id, voucher_code=row.voucher_code,
                       voucher_expires_at=row.voucher_expires_at, reverses=reverses)


def voided_rewards():
    """The ids of held rewards an admin voided (`holds.py`): no longer a grant to reverse,
    count or free."""
    return select(RewardHold.reward_pk).where(RewardHold.status == "voided")


def close_holds(reward_pks: list[int], *, by: str, now) -> None:
    """Holds of rewards a full refund or a cancel took back whole are closed as
    `reversed`: nothing is left for an admin to release or void, and the wallet heard of
    the reversal already (`reward.reversed`)."""
    if reward_pks:
        db.session.execute(
            update(RewardHold).where(RewardHold.reward_pk.in_(reward_pks),
                                     RewardHold.status == "held")
            .values(status="reversed", decided_by=by, decided_at=now)
            .execution_options(synchronize_session=False))
