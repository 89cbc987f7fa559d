"""Campaign status transitions: guarded, audited, fenced.

A campaign is `scheduled`, `open`, `paused`, `closed` or `retired`; only `open` ones give
rewards. Every change goes through `transition`, a guarded UPDATE (WHERE status IN the
states it may leave), so a duplicate attempt (a second scheduler, a retried job) changes
nothing and writes no second audit row. Scheduler transitions also carry the leader's
lease token, checked against the highest token that has acted: a deposed leader cannot act.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .models import CampaignAudit, CampaignRecord, ProgramState

SCHEDULED, OPEN, PAUSED, CLOSED, RETIRED = "scheduled", "open", "paused", "closed", "retired"
STATUSES = (SCHEDULED, OPEN, PAUSED, CLOSED, RETIRED)

# What each transition may leave from. Pausing keeps the schedule; resuming goes back to
# whatever the schedule says now; retiring is final until the campaign is applied again.
MAY_LEAVE = {
    OPEN: (SCHEDULED,),
    CLOSED: (SCHEDULED, OPEN),
    PAUSED: (SCHEDULED, OPEN),
    RETIRED: (SCHEDULED, OPEN, PAUSED, CLOSED),
}


class Deposed(Exception):
    """A scheduler whose lease token is older than one that has already acted."""


@dataclass(frozen=True)
class Transition:
    campaign_id: str
    from_status: str
    to_status: str
    at: datetime


def status_at(starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    """Where the schedule puts a campaign at `now` (ends_at exclusive)."""
    if now < starts_at:
        return SCHEDULED
    return OPEN if now < ends_at else CLOSED


def ensure_program_state(session) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(ProgramState).values(id=1, campaigns_revision=0, scheduler_fence=0)
                    .on_conflict_do_nothing(index_elements=["id"]))


def bump_revision(session) -> None:
    """Tell every API worker to reload its campaigns (they poll this number)."""
    ensure_program_state(session)
    session.execute(update(ProgramState).where(ProgramState.id == 1)
                    .values(campaigns_revision=ProgramState.campaigns_revision + 1)
                    .execution_options(synchronize_session=False))


def check_fence(session, token: int) -> None:
    """Record `token` as the newest that acted, or raise Deposed if a newer one has.

    Runs inside the transaction of the transitions it guards, and locks the row, so a
    deposed leader's transaction either commits before the new leader's first act or
    fails."""
    ensure_program_state(session)
    result = session.execute(update(ProgramState)
                             .where(ProgramState.id == 1, ProgramState.scheduler_fence <= token)
                             .values(scheduler_fence=token)
                             .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Deposed(f"lease token {token} is older than one that has already acted")


def record_audit(session, campaign_id: str, from_status: str | None, to_status: str, *,
                 actor: str, reason: str, now: datetime) -> None:
    session.add(CampaignAudit(campaign_id=campaign_id, from_status=from_status,
                              to_status=to_status, actor=actor, reason=reason, at=now))


def transition(session, campaign_id: str, to_status: str, *, actor: str, reason: str,
               now: datetime, may_leave: tuple[str, ...] | None = None,
               bump: bool = True) -> Transition | None:
    """Move one campaign to `to_status` if it is in a state that may leave for it.

    Returns the transition made, or None when the campaign was not in such a state (it was
    already moved, by this or another process). Does not commit: the caller's transaction
    holds the change, its audit row and the revision bump together (a caller making many
    transitions at once passes bump=False and bumps once)."""
    leaving = may_leave if may_leave is not None else MAY_LEAVE[to_status]
    current = session.execute(
        select(CampaignRecord.status).where(CampaignRecord.id == campaign_id)).scalar_one_or_none()
    if current is None or current not in leaving:
        return None
    result = session.execute(
        update(CampaignRecord)
        .where(CampaignRecord.id == campaign_id, CampaignRecord.status == current)
        .values(status=to_status, updated_at=now)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:  # moved meanwhile by someone else
        return None
    record_audit(session, campaign_id, current, to_status, actor=actor, reason=reason, now=now)
    if bump:
        bump_revision(session)
    return Transition(campaign_id, current, to_status, now)


def resume(session, campaign_id: str, *, actor: str, reason: str, now: datetime) -> Transition | None:
    """A paused campaign goes back to where its schedule puts it now."""
    record = session.get(CampaignRecord, campaign_id)
    if record is None or record.status != PAUSED:
        return None
    target = status_at(record.starts_at, record.ends_at, now)
    return transition(session, campaign_id, target, actor=actor, reason=reason, now=now,
                      may_leave=(PAUSED,))


def due_transitions(session, now: datetime) -> list[tuple[str, str]]:
    """(campaign id, target status) for every campaign whose schedule has moved past it:
    scheduled ones whose start has come open (or close, if their end has passed too),
    open ones whose end has come close."""
    rows = session.execute(
        select(CampaignRecord.id, CampaignRecord.status, CampaignRecord.starts_at,
               CampaignRecord.ends_at)
        .where(or_(and_(CampaignRecord.status == SCHEDULED, CampaignRecord.starts_at <= now),
                   and_(CampaignRecord.status == OPEN, CampaignRecord.ends_at <= now)))
        .order_by(CampaignRecord.id)).all()
    return [(campaign_id, status_at(starts_at, ends_at, now))
            for campaign_id, _status, starts_at, ends_at in rows]
