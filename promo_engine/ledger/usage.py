"""A campaign's spent budget and redemptions as events see them now: for people (`campaigns
list`, the portal) and for quotes.

Without Redis the database's usage rows are the guard itself, exact after every event. With
Redis the guard is Redis's counters (reservations.py), which also hold the reservations of
events still being recorded; the database's rows catch up only at reconciliation, every
PROMO_RECONCILE_SECONDS. So Redis answers first, and the rows answer for the campaigns it
has no counter for (none built yet) or when it cannot be reached.
"""
from __future__ import annotations

from typing import Iterable

import redis
from sqlalchemy import select

from promo_engine.ledger.models import CampaignUsage


def current_usage(session, campaign_ids: Iterable[str],
                  reservations=None) -> dict[str, tuple[int, int]]:
    """(spent, redemptions) per campaign: minor units or points, and grants counted."""
    ids = list(dict.fromkeys(campaign_ids))
    usage: dict[str, tuple[int, int]] = {}
    if reservations is not None and ids:
        try:
            counted = reservations.counters(ids)
        except redis.RedisError:  # shown or quoted, not enforced: the last reconciled rows do
            counted = {}
        usage = {campaign_id: value for campaign_id, value in counted.items()
                 if value is not None}
    missing = [campaign_id for campaign_id in ids if campaign_id not in usage]
    if missing:
        rows = session.execute(
            select(CampaignUsage.campaign_id, CampaignUsage.spent, CampaignUsage.redemptions)
            .where(CampaignUsage.campaign_id.in_(missing))).all()
        stored = {campaign_id: (spent, redemptions) for campaign_id, spent, redemptions in rows}
        for campaign_id in missing:
            usage[campaign_id] = stored.get(campaign_id, (0, 0))
    return {campaign_id: usage[campaign_id] for campaign_id in ids}
