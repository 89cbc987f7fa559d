"""What can happen to an offer, each in one transaction: drafting, submitting, the bank's
approval (which makes or updates its campaign) or rejection, pausing and resuming.

Rule for edits: saving an offer always leaves it a draft to be submitted again; an approved
offer's campaign keeps running its approved version, unchanged, until the edited version is
approved too (approval then updates the campaign in place, keeping its usage).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import select

from merchant_portal.models import APPROVED, DRAFT, PENDING, REJECTED, MerchantOffer, PortalLogin
from promo_engine.campaigns.lifecycle import (OPEN, PAUSED, RETIRED, SCHEDULED, bump_revision,
                                              record_audit, resume, status_at, transition)
from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.schema_errors import CampaignInvalid, flatten_messages
from promo_engine.campaigns.spec import canonical_spec, spec_hash
from promo_engine.campaigns.store import ApplyError, _refuse_unit_change
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, CampaignUsage, utcnow
from promo_engine.service import promo_service

SOURCE_PORTAL = "portal"
PAUSABLE = (SCHEDULED, OPEN)


class OfferRefused(Exception):
    """An action that does not apply to the offer as it stands; the message says why."""


@dataclass
class Invalid:
    """The schema's problems as (field path, message) pairs."""
    pairs: list[tuple[tuple, str]]


def campaign_id_for(merchant_id: str, offer_id: int) -> str:
    """m-<merchant, as a lowercase slug>-<offer id>: unique, and a valid campaign id."""
    slug = re.sub(r"[^a-z0-9]+", "-", merchant_id.lower()).strip("-") or "merchant"
    suffix = f"-{offer_id}"
    return ("m-" + slug)[:64 - len(suffix)].rstrip("-") + suffix


def validate(document: dict):
    service = promo_service()
    return load_campaign(document, registry=service.registry, currency=service.settings.currency,
                         default_timezone=service.settings.timezone)


def check_document(document: dict) -> Invalid | None:
    try:
        validate(document)
    except CampaignInvalid as exc:
        return Invalid(flatten_messages(exc.messages))
    return None


def _store(document: dict) -> dict:
    return canonical_spec(document, promo_service().settings.timezone)


def create_offer(user: PortalLogin, build) -> tuple[MerchantOffer | None, Invalid | None]:
    """A new draft; `build(campaign_id)` makes its document once the id is known."""
    session = db.session
    # Validate first with a placeholder id (the real one needs the row's id).
    problems = check_document(build(campaign_id_for(user.merchant_id, 0)))
    if problems:
        return None, problems

    def work():
        now = utcnow()
        offer = MerchantOffer(merchant_id=user.merchant_id, spec={}, state=DRAFT,
                              created_at=now, updated_at=now)
        session.add(offer)
        session.flush()
        offer.spec = _store(build(campaign_id_for(user.merchant_id, offer.id)))
        return offer

    return run_in_transaction(session, work), None


def update_offer(offer: MerchantOffer, document: dict) -> Invalid | None:
    document = {**document, "id": offer.spec["id"], "merchants": [offer.merchant_id]}
    problems = check_document(document)
    if problems:
        return problems
    offer_id = offer.id

    def work():
        row = _locked(offer_id)
        row.spec = _store(document)
        row.state = DRAFT
        row.rejection_reason = None
        row.updated_at = utcnow()

    run_in_transaction(db.session, work)
    return None


def duplicate_offer(user: PortalLogin, offer: MerchantOffer) -> MerchantOffer:
    source = dict(offer.spec)
    name = source.get("name") or source["id"]
    copy_name = f"{name} (copy)"[:200]

    def build(campaign_id):
        return {**source, "id": campaign_id, "name": copy_name, "merchants": [user.merchant_id]}

    created, _problems = create_offer(user, build)
    if created is None:  # the source no longer validates (its dates, say): copy it as is
        def work():
            now = utcnow()
            row = MerchantOffer(merchant_id=user.merchant_id, spec={}, state=DRAFT,
                                created_at=now, updated_at=now)
            db.session.add(row)
            db.session.flush()
            row.spec = build(campaign_id_for(user.merchant_id, row.id))
            return row
        created = run_in_transaction(db.session, work)
    return created


def _locked(offer_id: int) -> MerchantOffer:
    return db.session.scalar(select(MerchantOffer).where(MerchantOffer.id == offer_id)
                             .with_for_update().execution_options(populate_existing=True))


def submit_offer(user: PortalLogin, offer: MerchantOffer) -> None:
    offer_id = offer.id

    def work():
        row = _locked(offer_id)
        if row.state not in (DRAFT, REJECTED):
            raise OfferRefused(_("only a draft or rejected offer can be sent for approval"))
        try:
            validate(row.spec)
        except CampaignInvalid:
            raise OfferRefused(_("The offer has problems to fix first: edit it to see them.")) \
                from None
        now = utcnow()
        record_audit(db.session, row.spec["id"], row.state, PENDING, actor=user.actor,
                     reason="offer sent for approval", now=now)
        row.state, row.submitted_at, row.updated_at = PENDING, now, now
        row.rejection_reason = None

    run_in_transaction(db.session, work)


def approve_offer(admin: PortalLogin, offer_id: int, *, now: datetime | None = None) -> str:
    """Make (or update) the offer's campaign from its pending version; returns its id."""
    session = db.session

    def work():
        when = now or utcnow()
        row = _locked(offer_id)
        if row is None:
            raise OfferRefused(_("no such offer"))
        if row.state != PENDING:
            raise OfferRefused(_("only a pending offer can be approved"))
        try:
            campaign = validate(row.spec)
        except CampaignInvalid:
            raise OfferRefused(_("The offer has problems (its dates, say): the merchant must "
                                 "edit it and send it again.")) from None
        if campaign.merchants != frozenset({row.merchant_id}):
            raise OfferRefused(_("the offer is not scoped to its own merchant"))
        digest = spec_hash(row.spec)
        record = session.scalar(select(CampaignRecord).where(CampaignRecord.id == campaign.id)
                                .with_for_update())
        reason = f"offer {row.id} approved"
        if record is None:
            status = status_at(campaign.starts_at, campaign.ends_at, when)
            session.add(CampaignRecord(
                id=campaign.id, type=campaign.type, name=campaign.name, source=SOURCE_PORTAL,
                spec=row.spec, spec_hash=digest, starts_at=campaign.starts_at,
                ends_at=campaign.ends_at, created_at=when, updated_at=when, status=status))
            session.add(CampaignUsage(campaign_id=campaign.id, spent=0, redemptions=0))
            record_audit(session, campaign.id, None, status, actor=admin.actor, reason=reason,
                         now=when)
        else:
            if record.source != SOURCE_PORTAL:
                raise OfferRefused(_("campaign %(id)s is managed in code", id=campaign.id))
            try:
                _refuse_unit_change(session, record, campaign)
            except ApplyError as exc:
                raise OfferRefused(str(exc)) from None
            before = record.status
            rescheduled = (record.starts_at, record.ends_at) != (campaign.starts_at,
                                                                 campaign.ends_at)
            if before == RETIRED or (rescheduled and before != PAUSED):
                record.status = status_at(campaign.starts_at, campaign.ends_at, when)
            record.type, record.name, record.spec = campaign.type, campaign.name, row.spec
            record.spec_hash, record.updated_at = digest, when
            record.starts_at, record.ends_at = campaign.starts_at, campaign.ends_at
            record_audit(session, campaign.id, before, record.status, actor=admin.actor,
                         reason=reason + " (new version)", now=when)
        row.state, row.campaign_id = APPROVED, campaign.id
        row.decided_at, row.decided_by, row.updated_at = when, admin.email, when
        row.rejection_reason = None
        bump_revision(session)
        return campaign.id

    campaign_id = run_in_transaction(session, work)
    promo_service().invalidate()
    return campaign_id


def reject_offer(admin: PortalLogin, offer_id: int, reason: str) -> None:
    reason = reason.strip()
    if not reason:
        raise OfferRefused(_("give a reason: the merchant sees it"))

    def work():
        when = utcnow()
        row = _locked(offer_id)
        if row is None:
            raise OfferRefused(_("no such offer"))
        if row.state != PENDING:
            raise OfferRefused(_("only a pending offer can be rejected"))
        record_audit(db.session, row.spec["id"], PENDING, REJECTED, actor=admin.actor,
                     reason=reason, now=when)
        row.state, row.rejection_reason = REJECTED, reason
        row.decided_at, row.decided_by, row.updated_at = when, admin.email, when

    run_in_transaction(db.session, work)


def live_campaign(offer: MerchantOffer) -> CampaignRecord | None:
    if offer.campaign_id is None:
        return None
    return db.session.get(CampaignRecord, offer.campaign_id)


def pause_campaign(user: PortalLogin, campaign_id: str, reason: str) -> None:
    def work():
        record = db.session.get(CampaignRecord, campaign_id)
        if record is None or record.source != SOURCE_PORTAL:
            raise OfferRefused(_("campaigns managed in code are paused with the command line"))
        done = transition(db.session, campaign_id, PAUSED, actor=user.actor,
                          reason=reason or "paused in the portal", now=utcnow())
        if done is None:
            raise OfferRefused(_("only a scheduled or open campaign can be paused"))

    run_in_transaction(db.session, work)
    promo_service().invalidate()


def resume_campaign(user: PortalLogin, campaign_id: str, reason: str = "") -> None:
    def work():
        record = db.session.get(CampaignRecord, campaign_id)
        if record is None or record.source != SOURCE_PORTAL:
            raise OfferRefused(_("campaigns managed in code are resumed with the command line"))
        done = resume(db.session, campaign_id, actor=user.actor,
                      reason=reason or "resumed in the portal", now=utcnow())
        if done is None:
            raise OfferRefused(_("only a paused campaign can be resumed"))

    run_in_transaction(db.session, work)
    promo_service().invalidate()
