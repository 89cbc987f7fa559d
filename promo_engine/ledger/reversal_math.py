"""The arithmetic of a refund, apart from the database: how much of the payment is refunded
in all, and how much of each of its rewards this refund reverses.

Pure (no session, no Redis), so that the ledger (`refunds.py`) and the back-test
(`promo_engine/backtest/simulator.py`) reverse rewards with one implementation and cannot
drift apart by a rounding.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from promo_engine.core import money
from promo_engine.ledger.outcomes import LedgerError


class RefundShare(NamedTuple):
    refunded: int  # minor units of the payment refunded in all, this refund included
    full: bool  # the payment is now refunded in full
    share: Decimal  # refunded / amount: the part of every reward reversed in all


def refund_share(amount_minor: int, refunded_before: int, refund_minor: int,
                 currency: str) -> RefundShare:
    """The payment's refunded share after this refund; LedgerError `refund_exceeds_payment`
    when the refunds together would exceed it."""
    refunded = refunded_before + refund_minor
    if refunded > amount_minor:
        left = money.from_minor(amount_minor - refunded_before, currency)
        raise LedgerError("refund_exceeds_payment",
                          f"refunds would exceed the payment; at most {left} is left to refund",
                          field="amount")
    return RefundShare(refunded, refunded == amount_minor,
                       Decimal(refunded) / Decimal(amount_minor))


def reversal_delta(value: int, share: Decimal, reversed_so_far: int) -> int:
    """What this refund reverses of a reward of `value` (points, or money in minor units;
    negative for points a payment spent): the rounded cumulative share less what earlier
    refunds reversed (`reversed_so_far`, the sum of the earlier reversal rows, of the
    opposite sign). Rounding the cumulative share, rather than each refund's, is what
    makes refunds of the whole payment reverse every reward to exactly zero."""
    target = int((Decimal(value) * share).to_integral_value(ROUND_HALF_UP))
    return target + reversed_so_far


def is_campaign_grant(campaign_id: str | None, reason: str | None) -> bool:
    """A campaign's own reward (not base points, not a spend or a voucher used): reversing
    it gives its budget back, and a full refund frees the user's count of it."""
    return campaign_id is not None and reason is None
