"""The bank's view of its points exchanges (campaigns of type points_exchange): what is left
of each one's stock and budget, how often it was redeemed and the points customers spent.

Stock and budget come from `current_usage`, the counters every redemption is checked
against (Redis's when it holds them), so "left" is what the next redemption can still
take. Points spent are the ledger's rows with reason 'spent' and the exchange's id, net of
the 'returned' rows of cancels: the price customers paid, which no budget counts.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from merchant_portal.budgets import budget_view
from merchant_portal.voucher_results import VoucherResults, voucher_results_for
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import RETURNED, SPENT, CampaignRecord, RewardRecord
from promo_engine.ledger.usage import current_usage
from promo_engine.service import promo_service

POINTS_EXCHANGE = "points_exchange"


@dataclass(frozen=True)
class Exchange:
    campaign: CampaignRecord
    cost_points: int | None
    redemptions: int
    max_redemptions: int | None
    points_spent: int
    budget: dict  # budgets.budget_view
    vouchers: VoucherResults | None  # None: the exchange gives cashback

    @property
    def stock_left(self) -> int | None:
        """None: no stock limit."""
        if self.max_redemptions is None:
            return None
        return max(self.max_redemptions - self.redemptions, 0)


def points_spent(campaign_ids: list[str]) -> dict[str, int]:
    """Points spent on each exchange, net of what cancels gave back (a positive number)."""
    if not campaign_ids:
        return {}
    rows = db.session.execute(
        select(RewardRecord.campaign_id, func.coalesce(func.sum(RewardRecord.points), 0))
        .where(RewardRecord.campaign_id.in_(campaign_ids),
               RewardRecord.reason.in_((SPENT, RETURNED)))
        .group_by(RewardRecord.campaign_id)).all()
    # PostgreSQL's SUM of BIGINT is NUMERIC: back to int.
    return {campaign_id: -int(total) for campaign_id, total in rows}


def exchanges(campaigns: list[CampaignRecord], currency: str) -> list[Exchange]:
    """The points exchanges among `campaigns`, in their order."""
    found = [c for c in campaigns if c.type == POINTS_EXCHANGE]
    ids = [c.id for c in found]
    usage = current_usage(db.session, ids, promo_service().reservations)
    spent_points = points_spent(ids)
    result = []
    for campaign in found:
        spec = campaign.spec or {}
        params = spec.get("params") or {}
        spent, redemptions = usage[campaign.id]
        max_redemptions = (spec.get("limits") or {}).get("max_redemptions")
        result.append(Exchange(
            campaign=campaign, cost_points=params.get("cost_points"),
            redemptions=redemptions,
            max_redemptions=int(max_redemptions) if max_redemptions is not None else None,
            points_spent=spent_points.get(campaign.id, 0),
            budget=budget_view(spec, spent, currency),
            vouchers=voucher_results_for(campaign.id) if "voucher" in params else None))
    return result
