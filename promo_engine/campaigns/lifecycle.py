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

from sqlalchemy import and_, insert, select, update

from promo_engine.coordination.broadcast import mark_changed
from promo_engine.ledger.models import CampaignAudit, CampaignRecord, ProgramState
from promo_engine.ledger.program_state import ensure_program_state
from promo_engine.ledger.webhook_outbox import announce, campaign_message

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


def bump_revision(session) -> None:
    """Tell every API worker to reload its campaigns: they poll this number, and with Redis
    it is also broadcast once the transaction commits."""
    mark_changed(session)
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
    """The audit row of a status change, and its webhook (`campaign.opened` or
    `campaign.closed`) in the same transaction: every status change writes its audit row."""
    session.add(CampaignAudit(campaign_id=campaign_id, from_status=from_status,
                              to_status=to_status, actor=actor, reason=reason, at=now))
    announce(session, [campaign_message(campaign_id, from_status, to_status, now)], now)


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


def advance_schedule(session, now: datetime, *, campaign_ids=None, actor: str = "scheduler",
                     reason: str = "schedule") -> list[Transition]:
    """Make every transition the schedule calls for at `now`, for `campaign_ids` (or all).

    Scheduled campaigns whose start has come open (or close, if their end has passed too),
    open ones whose end has come close; paused, closed and retired ones are left alone.
    Each move is one guarded UPDATE that re-checks status and times in the database, so a
    stale caller (a job planned before the campaign was edited or paused) and a duplicate
    run change nothing. Audits every move, bumps the revision once if anything moved, and
    does not commit. Returns the transitions made, in (from, to, id) order."""
    moves = (
        (SCHEDULED, OPEN, and_(CampaignRecord.starts_at <= now, CampaignRecord.ends_at > now)),
        (SCHEDULED, CLOSED, CampaignRecord.ends_at <= now),
        (OPEN, CLOSED, CampaignRecord.ends_at <= now),
    )
    ids = None if campaign_ids is None else sorted(set(campaign_ids))
    if ids == []:
        return []
    made: list[Transition] = []
    for from_status, to_status, due in moves:
        statement = update(CampaignRecord).where(CampaignRecord.status == from_status, due)
        if ids is not None:
            statement = statement.where(CampaignRecord.id.in_(ids))
        moved = session.execute(statement.values(status=to_status, updated_at=now)
                                .returning(CampaignRecord.id)
                                .execution_options(synchronize_session=False)).scalars().all()
        made.extend(Transition(campaign_id, from_status, to_status, now)
                    for campaign_id in sorted(moved))
    if made:
        # One multi-row INSERT for the audit rows (a midnight may open thousands at once).
        session.execute(insert(CampaignAudit), [
            {"campaign_id": t.campaign_id, "from_status": t.from_status,
             "to_status": t.to_status, "actor": actor, "reason": reason, "at": now}
            for t in made])
        announce(session, [campaign_message(t.campaign_id, t.from_status, t.to_status, now)
                           for t in made], now)
        bump_revision(session)
    return made
