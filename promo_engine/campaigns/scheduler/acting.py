"""What the leader does to the database: transitions in fenced transactions, reconciliation.

`make_transitions` makes the transitions due at an instant in one transaction that first
proves the right to act (the lease token against the database's fence, or the program
state lock when acting alone), and reads back what the hooks and the plan need;
`run_reconcile` is the periodic reconciliation of Redis counters with the ledger;
`run_points_sweep` expires and matures points lots; `run_retention` purges what
PROMO_RETENTION_DAYS no longer allows keeping. Apart
from the scheduler because this is the part that writes: the scheduler decides when to
act and for which campaigns, and keeps its leadership and plan in step with the result.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import NamedTuple, Sequence

from sqlalchemy import select

from promo_engine.campaigns.lifecycle import Deposed, Transition, advance_schedule, check_fence
from promo_engine.campaigns.scheduler.hooks import HookRow
from promo_engine.campaigns.store import campaigns_revision
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, ProgramState
from promo_engine.ledger.program_state import lock_program_state

log = logging.getLogger(__name__)

BATCH_SIZE = 1000  # campaigns per transaction (and per IN list when reading them back)


class Made(NamedTuple):
    """The transitions one transaction made, the records of their campaigns for the hooks
    (empty unless asked for), and the campaigns revision before and after it."""
    transitions: list[Transition]
    rows: dict[str, HookRow]
    revision_before: int
    revision_after: int


def make_transitions(app, token: int | None, now: datetime, campaign_ids: list[str] | None,
                     *, with_rows: bool) -> Made:
    """Make the transitions due at `now` for `campaign_ids` (or every campaign) in one
    transaction, fenced with the lease `token` (None: acting alone, under the program state
    lock). Raises `lifecycle.Deposed` when a newer token has acted."""
    with app.app_context():
        session = db.session

        def work() -> Made:
            if token is None:
                lock_program_state(session)
            else:
                check_fence(session, token)
            # The revision cannot move under us now (its row is locked): if it is the one
            # the jobs were planned at, our own bump leaves them current.
            before = campaigns_revision()
            made = advance_schedule(session, now, campaign_ids=campaign_ids,
                                    actor="scheduler", reason="schedule")
            after = campaigns_revision() if made else before
            return Made(made, hook_rows(session, made) if with_rows and made else {},
                        before, after)

        return run_in_transaction(session, work)


def hook_rows(session, made: Sequence[Transition]) -> dict[str, HookRow]:
    """The records of the campaigns `made` moved, by id, as the hooks get them."""
    ids = sorted({t.campaign_id for t in made})
    rows: dict[str, HookRow] = {}
    for start in range(0, len(ids), BATCH_SIZE):
        for row in session.execute(
                select(CampaignRecord.id, CampaignRecord.type, CampaignRecord.name,
                       CampaignRecord.spec, CampaignRecord.starts_at, CampaignRecord.ends_at)
                .where(CampaignRecord.id.in_(ids[start:start + BATCH_SIZE]))):
            rows[row.id] = HookRow(row.id, row.type, row.name, row.spec, row.starts_at,
                                   row.ends_at)
    return rows


def describe(made: Sequence[Transition]) -> str:
    """One log line for the transitions made (the first 20 by name)."""
    return ("; ".join(f"{t.campaign_id} {t.from_status} -> {t.to_status}" for t in made[:20])
            + (f"; and {len(made) - 20} more" if len(made) > 20 else ""))


def read_fence(app) -> int:
    """The highest lease token that has acted (the floor for the next one)."""
    with app.app_context():
        value = db.session.scalar(select(ProgramState.scheduler_fence)
                                  .where(ProgramState.id == 1))
        db.session.rollback()
    return int(value or 0)


def run_reconcile(app, reservations, retry_seconds: float):
    """Reconcile the Redis counters of `reservations` with the ledger (reconcile.py); a
    failure is logged and left to the next run. Returns what was done, or None."""
    # Imported here: both bring in the Redis client, which a scheduler without Redis (and
    # so without reconciliation) never needs.
    from promo_engine.campaigns.reconcile import reconcile
    from promo_engine.coordination.reservations import NotReady
    with app.app_context():
        try:
            done = reconcile(reservations)
        except NotReady as exc:  # settling after a data loss, or another program's prefix
            log.warning("reconciliation postponed: %s", exc)
            return None
        except Exception:  # Redis or the database away: the next run tries again
            log.exception("reconciliation failed; trying again in %d s", retry_seconds)
            return None
    log.info("reconciled %d campaigns (%d Redis counters)", done.campaigns, done.counters)
    return done


def run_points_sweep(app, token: int | None, now: datetime, *,
                     should_stop=lambda: False) -> tuple[int, int] | None:
    """Expire and mature the points lots due at `now` (ledger/lot_expiry.py), each batch
    fenced with the lease `token` like a transition. Returns (expired, matured), or None
    when it could not run (deposed, or the database away: the next sweep tries again)."""
    from promo_engine.ledger.lot_expiry import sweep_points

    def fence(session) -> None:
        if token is not None:
            check_fence(session, token)

    with app.app_context():
        try:
            done = sweep_points(db.session, now, fence=fence, should_stop=should_stop)
        except Deposed:
            log.info("points sweep stopped: a newer scheduler leads")
            return None
        except Exception:
            log.exception("points sweep failed; the next one tries again")
            return None
    if any(done):
        log.info("points: %d lots expired, %d matured", *done)
    return done


def run_retention(app, token: int | None, now: datetime, settings, *,
                  should_stop=lambda: False):
    """Purge what PROMO_RETENTION_DAYS no longer allows keeping (ledger/retention.py), each
    batch fenced with the lease `token`. Returns what was purged, or None when it could not
    run (deposed, or the database away: the next run tries again)."""
    from promo_engine.ledger.retention import purge_expired

    def fence(session) -> None:
        if token is not None:
            check_fence(session, token)

    with app.app_context():
        try:
            done = purge_expired(db.session, now, days=settings.retention_days,
                                 timezone=settings.timezone, fence=fence,
                                 should_stop=should_stop)
        except Deposed:
            log.info("retention purge stopped: a newer scheduler leads")
            return None
        except Exception:
            log.exception("retention purge failed; the next one tries again")
            return None
    if done.total():
        log.info("retention (%d days): purged %s", settings.retention_days, done.describe())
    return done
