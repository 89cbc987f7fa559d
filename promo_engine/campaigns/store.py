"""Validated campaigns into the database and back out; called inside an app context.

`apply_campaigns` writes a set of YAML campaigns in one transaction (all or nothing); the
campaigns revision in `ProgramState` goes up whenever anything changed, which is how
workers learn to reload. Status is scheduled -> open -> closed by time; `paused` is a
person's decision that an apply leaves alone; `retired` means removed from the files.

The risk policy document, when given, is stored with the campaigns in the same transaction
(one row, id 1) and goes up the same revision, so every worker reloads both together.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from sqlalchemy import select

from promo_engine.campaigns.files import LoadedCampaign
from promo_engine.campaigns.lifecycle import (OPEN, PAUSED, RETIRED, bump_revision, record_audit,
                                              status_at)
from promo_engine.campaigns.risk_policy import LoadedRiskPolicy, load_risk_policy
from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.spec import spec_hash
from promo_engine.core.campaign import Campaign
from promo_engine.core.risk import RiskPolicy
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, CampaignUsage, ProgramState, utcnow
from promo_engine.ledger.program_state import lock_program_state
from promo_engine.ledger.risk_models import RiskPolicyRecord

log = logging.getLogger(__name__)

SOURCE_YAML = "yaml"
POLICY_ROW = 1
# What became of the stored risk policy (`ApplyReport.risk_policy`); None: not touched.
CREATED, UPDATED, UNCHANGED, REMOVED = "created", "updated", "unchanged", "removed"


class ApplyError(Exception):
    """Campaigns that cannot be applied as a whole; nothing was written."""


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    risk_policy: str | None = None  # CREATED, UPDATED, UNCHANGED, REMOVED or None

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.retired) or \
            self.risk_policy in (CREATED, UPDATED, REMOVED)


def apply_campaigns(loaded: Sequence[LoadedCampaign], *, prune: bool = False,
                    dry_run: bool = False, now: datetime | None = None,
                    actor: str = "cli",
                    risk_policy: LoadedRiskPolicy | None = None) -> ApplyReport:
    """Create or update each campaign by id in one transaction; `prune` retires the YAML
    campaigns that are not given (and removes the stored risk policy when `risk_policy` is
    None); `dry_run` reports what would happen and writes nothing."""
    ids = [item.campaign.id for item in loaded]
    if len(set(ids)) != len(ids):
        raise ApplyError("the same campaign id is given twice")
    now = now or utcnow()
    session = db.session

    def work():
        return _apply(session, loaded, prune, now, actor, risk_policy)

    if dry_run:
        try:
            return work()
        finally:
            session.rollback()
    return run_in_transaction(session, work)


def _apply(session, loaded: Sequence[LoadedCampaign], prune: bool, now: datetime,
           actor: str, risk_policy: LoadedRiskPolicy | None) -> ApplyReport:
    lock_program_state(session)
    ids = [item.campaign.id for item in loaded]
    # Locked, so that a pause from the portal meanwhile is seen rather than overwritten.
    existing = {record.id: record for record in session.scalars(
        select(CampaignRecord).where(CampaignRecord.id.in_(ids)).with_for_update())} \
        if ids else {}
    foreign = sorted(i for i, record in existing.items() if record.source != SOURCE_YAML)
    if foreign:
        which = (f"campaign {foreign[0]} is" if len(foreign) == 1
                 else f"campaigns {', '.join(foreign)} are")
        raise ApplyError(f"{which} managed in the portal, not in YAML files; give the YAML "
                         "campaign another id")

    report = ApplyReport()
    for item in loaded:
        campaign, spec = item.campaign, item.spec
        digest = spec_hash(spec)
        record = existing.get(campaign.id)
        if record is None:
            status = status_at(campaign.starts_at, campaign.ends_at, now)
            session.add(CampaignRecord(
                id=campaign.id, type=campaign.type, name=campaign.name, source=SOURCE_YAML,
                spec=spec, spec_hash=digest, starts_at=campaign.starts_at,
                ends_at=campaign.ends_at, created_at=now, updated_at=now, status=status))
            record_audit(session, campaign.id, None, status, actor=actor,
                         reason=f"created from {item.path}", now=now)
            session.add(CampaignUsage(campaign_id=campaign.id, spent=0, redemptions=0))
            report.created.append(campaign.id)
        elif record.spec_hash == digest and record.status != RETIRED:
            report.unchanged.append(campaign.id)
        else:
            _refuse_unit_change(session, record, campaign)
            before = record.status
            _update(record, campaign, spec, digest, now)
            if record.status != before:
                record_audit(session, campaign.id, before, record.status, actor=actor,
                             reason=f"updated from {item.path}", now=now)
            report.updated.append(campaign.id)

    if prune:
        stale = session.scalars(
            select(CampaignRecord)
            .where(CampaignRecord.source == SOURCE_YAML, CampaignRecord.status != RETIRED,
                   CampaignRecord.id.not_in(ids))
            .order_by(CampaignRecord.id))
        for record in stale:
            record_audit(session, record.id, record.status, RETIRED, actor=actor,
                         reason="no longer in the campaign files (--prune)", now=now)
            record.status = RETIRED
            record.updated_at = now
            report.retired.append(record.id)

    report.risk_policy = _apply_policy(session, risk_policy, prune, now)
    if report.changed:
        bump_revision(session)
    session.flush()
    return report


def _apply_policy(session, loaded: LoadedRiskPolicy | None, prune: bool,
                  now: datetime) -> str | None:
    """Store the policy document in its one row (under the program state's lock, taken
    first); without one, `prune` removes the stored policy and otherwise it stays."""
    record = session.get(RiskPolicyRecord, POLICY_ROW, with_for_update=True)
    if loaded is None:
        if not prune or record is None:
            return None
        session.delete(record)
        return REMOVED
    digest = loaded.spec_hash
    if record is None:
        session.add(RiskPolicyRecord(id=POLICY_ROW, spec=loaded.spec, spec_hash=digest,
                                     updated_at=now))
        return CREATED
    if record.spec_hash == digest:
        return UNCHANGED
    record.spec = loaded.spec
    record.spec_hash = digest
    record.updated_at = now
    return UPDATED


def stored_risk_policy(*, currency: str) -> RiskPolicy | None:
    """The risk policy in force, or None. One that no longer loads (the currency was
    changed to one with fewer decimals, say) is logged and not enforced, as a campaign
    whose stored spec does not load is skipped; `campaigns validate` on its file says why."""
    spec = db.session.scalar(select(RiskPolicyRecord.spec)
                             .where(RiskPolicyRecord.id == POLICY_ROW))
    if spec is None:
        return None
    try:
        return load_risk_policy(spec, currency=currency)
    except Exception as exc:
        log.error("the stored risk policy does not load (%s); no risk policy is enforced "
                  "until it is applied again", exc)
        return None


def _budget_unit(spec: dict) -> str | None:
    budget = spec.get("budget") or {}
    return "points" if "points" in budget else ("money" if "amount" in budget else None)


def _refuse_unit_change(session, record: CampaignRecord, campaign: Campaign) -> None:
    """Usage is counted in the unit of the campaign's rewards (points or minor units), so
    once it has granted anything its type and budget unit are fixed."""
    usage = session.get(CampaignUsage, record.id)
    if usage is None or (usage.spent == 0 and usage.redemptions == 0):
        return
    new_unit = campaign.budget.unit if campaign.budget is not None else None
    if record.type != campaign.type or (_budget_unit(record.spec) or new_unit) != \
            (new_unit or _budget_unit(record.spec)):
        raise ApplyError(f"campaign {record.id} has already granted rewards, so its type and "
                         "budget unit cannot change; give the changed campaign a new id")


def _update(record: CampaignRecord, campaign: Campaign, spec: dict, digest: str,
            now: datetime) -> None:
    rescheduled = (record.starts_at, record.ends_at) != (campaign.starts_at, campaign.ends_at)
    if record.status == RETIRED or (rescheduled and record.status != PAUSED):
        record.status = status_at(campaign.starts_at, campaign.ends_at, now)
    record.type = campaign.type
    record.name = campaign.name
    record.spec = spec
    record.spec_hash = digest
    record.starts_at = campaign.starts_at
    record.ends_at = campaign.ends_at
    record.updated_at = now


def campaigns_revision() -> int:
    revision = db.session.scalar(select(ProgramState.campaigns_revision)
                                 .where(ProgramState.id == 1))
    return revision or 0


def load_open_campaigns(*, registry, currency: str, default_timezone: str,
                        on_error=None) -> list[Campaign]:
    """The open campaigns rebuilt from their stored specs; one that no longer loads (its
    plugin was uninstalled, say) is logged, reported to `on_error(id, type, exc)` and skipped."""
    campaigns = []
    records = db.session.execute(select(CampaignRecord.id, CampaignRecord.type, CampaignRecord.spec)
                                 .where(CampaignRecord.status == OPEN)
                                 .order_by(CampaignRecord.id)).all()
    for campaign_id, campaign_type, spec in records:
        try:
            campaign = load_campaign(spec, registry=registry, currency=currency,
                                     default_timezone=default_timezone)
        except Exception as exc:  # one bad campaign must not take the others down
            log.error("campaign %s is open but its stored spec does not load (%s); skipped",
                      campaign_id, exc)
            if on_error is not None:
                on_error(campaign_id, campaign_type, exc)
            continue
        if campaign.id != campaign_id:
            log.error("campaign %s has a stored spec for %s; skipped", campaign_id, campaign.id)
            continue
        campaigns.append(campaign)
    return campaigns
