"""A campaign's vouchers in its results: issued, used, the discount they gave and the share
used, per campaign-local day of issue.

Counted from the voucher grants, their `vouchers` rows and the discount rows of the
payments that used them (reason 'voucher', carrying the issuing campaign's id, and their
refund reversals, which keep that reason). A voided voucher (its redemption cancelled) was
never issued; one whose payment was refunded in full is free again, so not used, and its
discount nets to zero. A day is the one the vouchers were issued on (their grant's
`local_day`, as for the other results), so a day's rate is the share of that day's
vouchers used so far and never more than all of them.

Both queries start from the campaign's reward rows (indexed by campaign), not from the
`vouchers` table, which has no index by campaign.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from promo_engine.core.rewards import VOUCHER
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import VOUCHER_USED, RewardRecord, Voucher


def used_rate(used: int, issued: int) -> Decimal | None:
    """The share of vouchers used (0 to 1); None when none were issued."""
    return Decimal(used) / Decimal(issued) if issued else None


@dataclass(frozen=True)
class VoucherDay:
    day: date
    issued: int
    used: int
    discount_minor: int

    @property
    def rate(self) -> Decimal | None:
        return used_rate(self.used, self.issued)


@dataclass(frozen=True)
class VoucherResults:
    issued: int
    used: int
    discount_minor: int
    days: list[VoucherDay]

    @property
    def rate(self) -> Decimal | None:
        return used_rate(self.used, self.issued)


NO_VOUCHERS = VoucherResults(0, 0, 0, [])


def voucher_results_for(campaign_id: str | None) -> VoucherResults:
    if campaign_id is None:
        return NO_VOUCHERS
    grant = aliased(RewardRecord)
    issued = db.session.execute(
        select(grant.local_day, func.count(), func.count(Voucher.used_by_event_pk))
        .select_from(grant).join(Voucher, Voucher.reward_pk == grant.id)
        .where(grant.campaign_id == campaign_id, grant.kind == VOUCHER,
               grant.reverses_id.is_(None), grant.reason.is_(None),
               Voucher.voided_at.is_(None))
        .group_by(grant.local_day)).all()
    discount = aliased(RewardRecord)
    # PostgreSQL's SUM of BIGINT is NUMERIC: back to int.
    discounts = {day: int(total) for day, total in db.session.execute(
        select(grant.local_day, func.coalesce(func.sum(discount.amount_minor), 0))
        .select_from(discount).join(Voucher, Voucher.code == discount.voucher_code)
        .join(grant, grant.id == Voucher.reward_pk)
        .where(discount.campaign_id == campaign_id, discount.reason == VOUCHER_USED)
        .group_by(grant.local_day)).all()}
    counts = {day: (int(n), int(used)) for day, n, used in issued}
    per_day = {day: VoucherDay(day, *counts.get(day, (0, 0)), discounts.get(day, 0))
               for day in counts.keys() | discounts.keys()}
    return VoucherResults(
        issued=sum(d.issued for d in per_day.values()),
        used=sum(d.used for d in per_day.values()),
        discount_minor=sum(d.discount_minor for d in per_day.values()),
        days=sorted((d for day, d in per_day.items() if day is not None), key=lambda d: d.day))


def issues_vouchers(spec: dict, vouchers: VoucherResults) -> bool:
    """Whether the results show vouchers: the campaign gives them (a `voucher` param, as
    every built-in type writes one), or some were issued (a plugin's own way)."""
    return "voucher" in (spec.get("params") or {}) or vouchers.issued > 0
