"""What differs between a reused event_id's new body and the event recorded under it: the
explanation of a 409 `idempotency_conflict`.

The ledger keeps only the canonical body's hash, not the body, so the comparison is of the
columns it keeps of the event (type, user, merchant, amount, currency, occurred_at, device,
the original event of a refund or cancel). Read only when a conflict has been found, so the
recording of an event costs nothing more.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from promo_engine.core import money
from promo_engine.core.event import CANCEL, REFUND, Event
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord
from promo_engine.ledger.responses import iso


def _shown_amount(minor: int | None, currency: str | None, fallback: str) -> str | None:
    if minor is None:
        return None
    return money.format_amount(money.from_minor(minor, currency or fallback), currency or fallback)


def _recorded(client_id: str, event_id: str) -> tuple[EventRecord, str | None] | None:
    """The recorded event and the event_id of the payment or redemption it refunds or
    cancels (kept as a row id)."""
    original = aliased(EventRecord)
    cancelled = aliased(EventRecord)
    row = db.session.execute(
        select(EventRecord, original.event_id, cancelled.event_id)
        .outerjoin(original, original.id == EventRecord.original_event_id)
        .outerjoin(cancelled, cancelled.cancelled_by_pk == EventRecord.id)
        .where(EventRecord.client_id == client_id, EventRecord.event_id == event_id)
        .limit(1)).first()
    if row is None:
        return None
    record, refunded, cancelled_id = row
    return record, refunded or cancelled_id


def recorded_differences(client_id: str, event: Event, *,
                         currency: str) -> dict[str, tuple[str | None, str | None]] | None:
    """{field: (recorded value, this request's value)} for each kept column that differs,
    in the body's terms (amounts with the currency's digits, times in UTC with Z); empty
    when every kept column matches (another field differs, or a value is written
    differently), None when the event is no longer in the ledger."""
    found = _recorded(client_id, event.event_id)
    if found is None:
        return None
    record, original_event_id = found
    pairs = {"type": (record.type, event.type), "user_id": (record.user_id, event.user_id),
             "occurred_at": (iso(record.occurred_at), iso(event.occurred_at))}
    if record.type == event.type:
        if event.type != CANCEL:  # a cancel keeps neither merchant nor amount
            event_currency = event.currency or currency
            pairs["merchant_id"] = (record.merchant_id, event.merchant_id)
            pairs["amount"] = (
                _shown_amount(record.amount_minor, record.currency, currency),
                None if event.amount is None
                else money.format_amount(event.amount, event_currency))
            pairs["currency"] = (record.currency, event.currency)
        if event.type in (REFUND, CANCEL) and original_event_id is not None:
            pairs["original_event_id"] = (original_event_id, event.original_event_id)
    if record.device_id is not None:  # else it may have been purged (retention)
        pairs["device_id"] = (record.device_id, event.device_id)
    return {name: pair for name, pair in pairs.items() if pair[0] != pair[1]}
