"""Why payments did not get an offer: the campaigns that outranked it, read from the ledger.

A merchant sees its offer's redemptions but not the payments at its shop that got nothing
from it. Most often a campaign that comes first in the engine's order took them, and the
merchant can do something about that (dates, another kind of offer), so the results page
names those campaigns.

The engine is not run again: the ledger does not keep every field of an event. A payment
counts when it was at one of the offer's merchants inside the offer's dates, the offer
granted nothing on it, and a campaign granted a reward on it that outranks the offer by the
engine's rules (`promo_engine/core/engine.py`, named as in `core/explain.py`):

* `blocked_by_exclusive`: an exclusive campaign of higher priority applied; the first such
  one in priority order (the engine's blocker) is named;
* `beaten_by_multiplier`: otherwise, a campaign of the offer's stacking group won it.

Payments refunded in full are left out: they cost nobody anything, as the results leave
out redemptions refunded in full. From the ledger alone it cannot be known whether the
offer's own conditions (minimum payment, days, hours, limits) held on those payments, so a
line says the other campaign came first, not that the offer would have applied otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_, exists, select

from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, EventRecord, RewardRecord
from promo_engine.plugins.points_multiplier import STACKING_GROUP

BLOCKED_BY_EXCLUSIVE = "blocked_by_exclusive"
BEATEN_BY_MULTIPLIER = "beaten_by_multiplier"

# Campaign type -> the stacking group its rewards carry (only multipliers have one).
_GROUPS = {"points_multiplier": STACKING_GROUP}


@dataclass(frozen=True)
class Outranked:
    campaign_id: str
    name: str
    by_portal: bool        # another merchant offer, not one of the bank's campaigns
    reason: str            # BLOCKED_BY_EXCLUSIVE | BEATEN_BY_MULTIPLIER
    payments: int
    mine: str = ""         # beaten_by_multiplier: the offer's multiplier ("2")
    theirs: str = ""       # and the winner's ("3")

    @property
    def higher(self) -> bool:
        """The winner's multiplier is higher than the offer's (else equal, and first)."""
        try:
            return Decimal(self.theirs) > Decimal(self.mine)
        except (InvalidOperation, TypeError):
            return True


@dataclass(frozen=True)
class _Rank:
    campaign_id: str
    name: str
    source: str
    type: str
    priority: int
    exclusive: bool
    multiplier: str = ""

    @property
    def sort_key(self) -> tuple:
        return -self.priority, self.campaign_id  # the engine's priority order


def _rank(record: CampaignRecord) -> _Rank:
    spec = record.spec or {}
    return _Rank(record.id, record.name, record.source, record.type,
                 int(spec.get("priority", 0) or 0), bool(spec.get("exclusive", False)),
                 str((spec.get("params") or {}).get("multiplier", "")))


def payments_without_the_offer(offer: CampaignRecord):
    """Ids of payments at the offer's merchants in its dates, not refunded in full, on which
    the offer granted nothing."""
    merchants = list((offer.spec or {}).get("merchants") or [])
    granted = exists().where(RewardRecord.event_pk == EventRecord.id,
                             RewardRecord.campaign_id == offer.id,
                             RewardRecord.reason.is_(None), RewardRecord.reverses_id.is_(None))
    return (select(EventRecord.id)
            .where(EventRecord.type == "payment", EventRecord.merchant_id.in_(merchants),
                   EventRecord.occurred_at >= offer.starts_at,
                   EventRecord.occurred_at < offer.ends_at,
                   EventRecord.amount_minor.is_not(None),
                   EventRecord.refunded_minor < EventRecord.amount_minor,
                   ~granted))


def _winner(offer: _Rank, granted: list[_Rank]) -> tuple[_Rank, str] | None:
    """The campaign that outranked the offer on one payment, as the engine decided it."""
    ordered = sorted(granted, key=lambda r: r.sort_key)
    blocker = next((r for r in ordered if r.exclusive), None)
    if blocker is not None and offer.priority < blocker.priority:
        return blocker, BLOCKED_BY_EXCLUSIVE
    group = _GROUPS.get(offer.type)
    if group is not None:
        member = next((r for r in ordered if _GROUPS.get(r.type) == group), None)
        if member is not None:
            return member, BEATEN_BY_MULTIPLIER
    return None


def outranked_events(record: CampaignRecord) -> dict[int, tuple[_Rank, str]]:
    """The payments another campaign took from the offer: event pk -> (winner, reason)."""
    offer = _rank(record)
    events = payments_without_the_offer(record).subquery()
    rows = db.session.execute(
        select(RewardRecord.event_pk, CampaignRecord)
        .join(CampaignRecord, CampaignRecord.id == RewardRecord.campaign_id)
        .where(and_(RewardRecord.event_pk.in_(select(events.c.id)),
                    RewardRecord.campaign_id.is_not(None), RewardRecord.reason.is_(None),
                    RewardRecord.reverses_id.is_(None), RewardRecord.campaign_id != record.id))
    ).all()
    granted: dict[int, dict[str, _Rank]] = {}
    for event_pk, campaign in rows:
        granted.setdefault(event_pk, {})[campaign.id] = _rank(campaign)
    found = {pk: _winner(offer, list(campaigns.values())) for pk, campaigns in granted.items()}
    return {pk: winner for pk, winner in found.items() if winner is not None}


def outranked_for(campaign_id: str | None) -> list[Outranked]:
    """One entry per campaign that outranked the offer, most payments first."""
    if campaign_id is None:
        return []
    record = db.session.get(CampaignRecord, campaign_id)
    if record is None:
        return []
    offer = _rank(record)
    counts: dict[tuple[str, str], int] = {}
    ranks: dict[str, _Rank] = {}
    for winner, reason in outranked_events(record).values():
        ranks[winner.campaign_id] = winner
        counts[winner.campaign_id, reason] = counts.get((winner.campaign_id, reason), 0) + 1
    return sorted((Outranked(cid, ranks[cid].name, ranks[cid].source == "portal", reason, n,
                             offer.multiplier, ranks[cid].multiplier)
                   for (cid, reason), n in counts.items()),
                  key=lambda o: (-o.payments, o.campaign_id, o.reason))
