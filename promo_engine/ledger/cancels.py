"""Cancels: a redemption undone whole.

The points it spent go back to the lots they came from (a lot past its expiry gets them
too, and the scheduler expires them again), the voucher it gave is voided (one already used
refuses the cancel) or its cashback reversed, and the exchange campaign's budget, stock and
the user's and the redemption's device's limits are freed, as a full refund frees a
payment's. Like a refund it goes through the ORM session: the redemption's rows are read
back under the user's lock.
"""
from __future__ import annotations

from sqlalchemy import select, update

from promo_engine.coordination.reservations import Request, Reservation, Reservations
from promo_engine.core.event import REDEMPTION, Event
from promo_engine.core.rewards import POINTS
from promo_engine.ledger import lots, vouchers
from promo_engine.ledger.abuse_counts import lock_device
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import (CampaignUsage, EventRecord, RewardRecord,
                                        UserRecord, utcnow)
from promo_engine.ledger.outcomes import LedgerError
from promo_engine.ledger.refunds import (close_holds, free_limits, reverse_points,
                                         reversal_row, stored_reward_json)
from promo_engine.ledger.responses import dumps


def record_cancel(client_id: str, event: Event, request_hash: str, *,
                  reservations: Reservations | None, held: list[Reservation], now=None) -> str:
    """Write the cancel and its reversals (not committed); its response text."""
    now = now or utcnow()
    record = EventRecord(client_id=client_id, event_id=event.event_id, type=event.type,
                         user_id=event.user_id, occurred_at=event.occurred_at,
                         refunded_minor=0, request_hash=request_hash, response="",
                         created_at=now, device_id=event.device_id)
    db.session.add(record)
    db.session.flush()  # takes the (client_id, event_id) unique slot now
    user = db.session.execute(select(UserRecord).where(UserRecord.user_id == event.user_id)
                              .with_for_update()).scalar_one_or_none()
    redemption = db.session.execute(
        select(EventRecord).where(EventRecord.client_id == client_id,
                                  EventRecord.event_id == event.original_event_id,
                                  EventRecord.type == REDEMPTION)
        .with_for_update()).scalar_one_or_none()
    if user is None or redemption is None or redemption.user_id != event.user_id:
        raise LedgerError("unknown_redemption",
                          f"no redemption {event.original_event_id} of user {event.user_id}",
                          field="original_event_id")
    if redemption.cancelled_by_pk is not None:
        raise LedgerError("already_cancelled",
                          f"redemption {event.original_event_id} was already cancelled",
                          field="original_event_id")
    redemption.cancelled_by_pk = record.id
    if redemption.device_id is not None:
        # The redemption's device, locked before any usage row as every event locks it
        # (`abuse_counts.py`): its uses of the exchange are freed below.
        lock_device(db.session.connection(), redemption.device_id, now)
    # What came due goes first (expired lots leave, pending ones become available), so the
    # answer's points_balance is the user's at this instant. Points given back below to a
    # lot already past its expiry stay until the next sweep expires them again.
    lots.catch_up(db.session, user, now)
    given = db.session.execute(
        select(RewardRecord).where(RewardRecord.event_pk == redemption.id,
                                   RewardRecord.reverses_id.is_(None))
        .order_by(RewardRecord.id)).scalars().all()
    vouchers.void_issued(db.session, [r.id for r in given if r.kind == "voucher"], now)
    rows, returns = [], []
    for original in given:
        value = original.points if original.kind == POINTS else original.amount_minor
        row = reversal_row(original, -value, event_pk=record.id, now=now)
        rows.append(row)
        if original.kind == POINTS:
            reverse_points(original, row, user, now)
        if original.campaign_id is not None and original.reason is None:
            # the exchange's reward: free what it took
            free_limits(original, event.user_id, reservations,
                        device_id=redemption.device_id)
            if reservations is None:
                db.session.execute(
                    update(CampaignUsage).where(CampaignUsage.campaign_id == original.campaign_id)
                    .values(spent=CampaignUsage.spent - value)
                    .execution_options(synchronize_session=False))
            returns.append(Request(original.campaign_id, -value, -1, None, None))
    close_holds([r.id for r in given], by=f"cancel:{event.event_id}", now=now)
    if returns and reservations is not None:
        held.append(reservations.intend_refund(returns))
    record.response = dumps({"event_id": event.event_id,
                             "rewards": [stored_reward_json(r) for r in rows],
                             "points_balance": user.points_balance})
    db.session.flush()
    return record.response
