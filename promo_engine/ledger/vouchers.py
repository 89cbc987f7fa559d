"""Vouchers used on payments: which codes a payment may use and what each takes off it,
then their state as the payment, its refunds and the cancel of a redemption change it.

A voucher belongs to one user, and every event of a user holds that user's lock until it
commits (`recorder.py`), so a voucher is used at most once however many payments race for
it, on any number of processes and hosts: the second payment waits, then finds it used.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import select, update

from promo_engine.core import money
from promo_engine.core.event import Event
from promo_engine.ledger.models import Voucher
from promo_engine.ledger.outcomes import LedgerError

MAX_VOUCHERS = 5  # per payment (the API refuses more)


class VoucherUse(NamedTuple):
    voucher: Voucher
    discount: Decimal  # what it takes off this payment


def vouchers_for_payment(session, event: Event, *, payable: Decimal,
                         lock: bool = True) -> list[VoucherUse]:
    """Each code of the payment with its discount, in the order given: the voucher's amount
    or what is left of `payable` after the vouchers before it, whichever is less. Any code
    that cannot be used refuses the whole payment (`voucher_unavailable`, every reason).

    `lock=False` for quotes: the same answer from the rows as committed, with no row lock
    (a quote must not hold up the payment it prepares)."""
    codes = list(event.vouchers)
    query = select(Voucher).where(Voucher.code.in_(codes))
    if lock:
        query = query.with_for_update()
    found = {voucher.code: voucher for voucher in session.execute(query).scalars()}
    uses, problems = [], []
    for code in codes:
        voucher = found.get(code)
        why = _unusable(voucher, event)
        if why is None:
            amount = money.from_minor(voucher.amount_minor, voucher.currency)
            discount = min(amount, payable)
            if discount <= 0:
                why = "nothing of the payment is left for it to discount"
            else:
                payable -= discount
                uses.append(VoucherUse(voucher, discount))
        if why is not None:
            problems.append(f"{code}: {why}")
    if problems:
        raise LedgerError("voucher_unavailable",
                          "a voucher cannot be used on this payment: " + "; ".join(problems),
                          fields={"vouchers": problems})
    return uses


def _unusable(voucher: Voucher | None, event: Event) -> str | None:
    if voucher is None or voucher.user_id != event.user_id:
        # The same answer for a code of another user: codes are not to be probed.
        return "no such voucher for this user"
    if voucher.voided_at is not None:
        return "voided"
    if voucher.used_by_event_pk is not None:
        return "already used"
    if event.occurred_at >= voucher.expires_at:
        return "expired"
    if event.occurred_at < voucher.issued_at:
        return "not valid before it was issued"
    if voucher.min_amount_minor is not None and \
            money.to_minor(event.amount, voucher.currency) < voucher.min_amount_minor:
        least = money.format_amount(money.from_minor(voucher.min_amount_minor, voucher.currency),
                                    voucher.currency)
        return f"needs a payment of at least {least} {voucher.currency}"
    return None


def mark_used(uses: list[VoucherUse], event_pk: int) -> None:
    for use in uses:
        use.voucher.used_by_event_pk = event_pk


def free_after_full_refund(session, payment_pk: int) -> None:
    """A payment refunded in full gives its vouchers back, usable until their own expiry."""
    session.execute(update(Voucher).where(Voucher.used_by_event_pk == payment_pk)
                    .values(used_by_event_pk=None).execution_options(synchronize_session=False))


def void_unused(session, reward_pks: list[int], now: datetime) -> None:
    """Void the vouchers a fully refunded payment earned, unless already used (a voucher
    used on another payment stays used; its grant is reversed like any reward)."""
    if reward_pks:
        session.execute(update(Voucher).where(Voucher.reward_pk.in_(reward_pks),
                                              Voucher.used_by_event_pk.is_(None),
                                              Voucher.voided_at.is_(None))
                        .values(voided_at=now).execution_options(synchronize_session=False))


def void_issued(session, reward_pks: list[int], now: datetime) -> None:
    """Void the vouchers a cancelled redemption gave; one already used refuses the cancel."""
    if not reward_pks:
        return
    vouchers = session.execute(select(Voucher).where(Voucher.reward_pk.in_(reward_pks))
                               .with_for_update()).scalars().all()
    used = [voucher.code for voucher in vouchers if voucher.used_by_event_pk is not None]
    if used:
        raise LedgerError("voucher_used",
                          f"voucher {', '.join(used)} of this redemption was already used",
                          field="original_event_id")
    for voucher in vouchers:
        voucher.voided_at = now
