"""A campaign's spent budget and redemptions, two ways.

`current_usage`: as events see them now, for people (`campaigns list`, the portal) and for
quotes. Without Redis the database's usage rows are the guard itself, exact after every event. With
Redis the guard is Redis's counters (reservations.py), which also hold the reservations of
events still being recorded; the database's rows catch up only at reconciliation, every
PROMO_RECONCILE_SECONDS. So Redis answers first, and the rows answer for the campaigns it
has no counter for (none built yet) or when it cannot be reached.

`ledger_usage`: summed from the reward rows themselves, the truth the counters are built
from (Redis's, when it has none) and reconciled against; slower, and right only once
nothing is in flight.
"""
from __future__ import annotations

from typing import Iterable

import redis
from sqlalchemy import select

from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignUsage, EventRecord, RewardRecord
from promo_engine.ledger.refunds import voided_rewards


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


def ledger_usage(campaign_ids) -> dict[str, tuple[int, int]]:
    """(spent, redemptions) per campaign from the reward rows themselves: what the usage
    counters must hold once every committed event is counted and nothing is in flight."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    value = db.func.coalesce(RewardRecord.points, RewardRecord.amount_minor)
    spent = dict(db.session.execute(
        select(RewardRecord.campaign_id, db.func.coalesce(db.func.sum(value), 0))
        .where(RewardRecord.campaign_id.in_(ids), RewardRecord.reason.is_(None))
        .group_by(RewardRecord.campaign_id)).all())
    # A grant stops counting as a redemption once its payment is refunded in full, its
    # redemption cancelled, or it is voided (a held reward, holds.py).
    redemptions = dict(db.session.execute(
        select(RewardRecord.campaign_id, db.func.count())
        .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
        .where(RewardRecord.campaign_id.in_(ids), RewardRecord.reverses_id.is_(None),
               RewardRecord.reason.is_(None), EventRecord.cancelled_by_pk.is_(None),
               RewardRecord.id.not_in(voided_rewards()),
               db.or_(EventRecord.amount_minor.is_(None),
                      EventRecord.refunded_minor < EventRecord.amount_minor))
        .group_by(RewardRecord.campaign_id)).all())
    # PostgreSQL's SUM of BIGINT is NUMERIC: back to int.
    return {c: (int(spent.get(c, 0)), int(redemptions.get(c, 0))) for c in ids}
