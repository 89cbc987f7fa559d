"""An offer's results: SQL aggregates over its rewards, per campaign-local day.

A reward counts as a redemption unless refunds have reversed all of it; cost is the money
granted (discount, cashback, vouchers) net of reversals, points the points granted net of
reversals. Days are the campaign-local day each reward was granted on (`local_day`).

Only the campaign's grants count: rows with a `reason` carry a campaign id too but are no
grant of it (points spent on an exchange and their return, a voucher's discount on the
payment that used it, which the voucher's grant already counted), so they would count twice.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, distinct, func, select

from merchant_portal.voucher_results import VoucherDay, VoucherResults
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import RewardRecord


@dataclass(frozen=True)
class DayResult:
    day: date
    redemptions: int
    customers: int
    cost_minor: int
    points: int


@dataclass(frozen=True)
class Results:
    redemptions: int
    customers: int
    cost_minor: int
    points: int
    days: list[DayResult]


EMPTY = Results(0, 0, 0, 0, [])


def _net_rows(campaign_id: str):
    """Each granted reward of the campaign with what refunds left of it (net)."""
    reversed_ = (select(RewardRecord.reverses_id.label("reward_pk"),
                        func.sum(func.coalesce(RewardRecord.amount_minor, 0)).label("back_money"),
                        func.sum(func.coalesce(RewardRecord.points, 0)).label("back_points"))
                 .where(RewardRecord.campaign_id == campaign_id,
                        RewardRecord.reverses_id.is_not(None), RewardRecord.reason.is_(None))
                 .group_by(RewardRecord.reverses_id).subquery())
    money = (func.coalesce(RewardRecord.amount_minor, 0)
             + func.coalesce(reversed_.c.back_money, 0))
    points = func.coalesce(RewardRecord.points, 0) + func.coalesce(reversed_.c.back_points, 0)
    return (select(RewardRecord.local_day.label("day"), RewardRecord.user_id.label("user_id"),
                   money.label("money"), points.label("points"))
            .select_from(RewardRecord)
            .outerjoin(reversed_, reversed_.c.reward_pk == RewardRecord.id)
            .where(RewardRecord.campaign_id == campaign_id, RewardRecord.reverses_id.is_(None),
                   RewardRecord.reason.is_(None))
            .subquery())


def results_for(campaign_id: str | None) -> Results:
    if campaign_id is None:
        return EMPTY
    net = _net_rows(campaign_id)
    counts = net.c.money + net.c.points != 0
    redeemed_user = case((counts, net.c.user_id), else_=None)
    columns = (func.coalesce(func.sum(case((counts, 1), else_=0)), 0),
               func.count(distinct(redeemed_user)),
               func.coalesce(func.sum(net.c.money), 0),
               func.coalesce(func.sum(net.c.points), 0))
    total = db.session.execute(select(*columns)).one()
    days = db.session.execute(select(net.c.day, *columns).group_by(net.c.day)
                              .order_by(net.c.day)).all()
    return Results(
        redemptions=int(total[0]), customers=int(total[1]), cost_minor=int(total[2]),
        points=int(total[3]),
        days=[DayResult(day, int(r), int(c), int(m), int(p)) for day, r, c, m, p in days
              if day is not None])


def csv_text(results: Results, vouchers: VoucherResults | None, format_minor) -> str:
    """One line per day; with `vouchers` (a campaign that gives them) the vouchers issued
    that day, how many of them were used and the discount they gave."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = ["day", "redemptions", "customers", "cost", "points"]
    if vouchers is not None:
        header += ["vouchers_issued", "vouchers_used", "voucher_discount"]
    writer.writerow(header)
    voucher_days = {day.day: day for day in vouchers.days} if vouchers is not None else {}
    for day in results.days:
        row = [day.day.isoformat(), day.redemptions, day.customers,
               format_minor(day.cost_minor), day.points]
        if vouchers is not None:
            issued = voucher_days.get(day.day, VoucherDay(day.day, 0, 0, 0))
            row += [issued.issued, issued.used, format_minor(issued.discount_minor)]
        writer.writerow(row)
    return out.getvalue()
