"""Reconciliation: campaign counters rebuilt from the ledger.

With Redis, events count budgets and redemptions only in Redis (reservations.py), so the
database's campaign usage rows, which `campaigns list` and the portal show, are rebuilt
here, and Redis's counters are brought back to the ledger: a reservation whose transaction
died with its worker stays counted until its deadline has passed, an under-spend that the
next run after the deadline gives back. The leading scheduler runs this every
PROMO_RECONCILE_SECONDS; `promo-engine reconcile` runs it once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from promo_engine.campaigns.lifecycle import RETIRED
from promo_engine.coordination.reservations import EpochMissing
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, CampaignUsage
from promo_engine.ledger.usage import ledger_usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    campaigns: int  # database usage rows rebuilt
    counters: int  # Redis counters rebuilt (0 without Redis)


def reconcile(reservations=None, *, offline: bool = False) -> Reconciled:
    """Rebuild the counters of every campaign not retired; needs an app context.

    Without Redis the usage rows are the guard itself, kept exact by every event, and are
    rebuilt only when `offline` says no worker is running (after a period with Redis)."""
    try:
        return _reconcile(reservations, offline)
    except EpochMissing:  # a new prefix begins at once; after a data loss this settles
        reservations.begin_epoch()
        return _reconcile(reservations, offline)


def _reconcile(reservations, offline: bool) -> Reconciled:
    ids = list(db.session.execute(
        select(CampaignRecord.id).where(CampaignRecord.status != RETIRED)).scalars())
    db.session.rollback()
    if not ids:
        return Reconciled(0, 0)
    # Redis's clock first, then the ledger: see reservations.py for why this order is safe.
    t0 = reservations.clock_ms() if reservations is not None else None
    sums = ledger_usage(ids)
    db.session.rollback()
    counters = 0
    if reservations is not None:
        counters = reservations.rebuild(t0, sums)
        if counters < 0:
            log.warning("reconciliation: reading the ledger took too long; Redis counters "
                        "left as they were")
            counters = 0
    if reservations is None and not offline:
        return Reconciled(0, 0)
    run_in_transaction(db.session, lambda: db.session.execute(
        update(CampaignUsage),
        [{"campaign_id": c, "spent": spent, "redemptions": redemptions}
         for c, (spent, redemptions) in sums.items()]))
    return Reconciled(len(sums), counters)
