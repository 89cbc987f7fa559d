"""The bank's held-rewards queue (/portal/admin/holds): the rewards the risk policy held for
review, the longest waiting first, each released or voided by an admin after confirming
(`promo_engine/ledger/holds.py` does the work, as `promo-engine holds` does). Bank admins
only, like the other admin pages; every decision is audited as `portal:<email>`.
"""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from merchant_portal import bp
from merchant_portal.auth import login_required
from merchant_portal.models import ADMIN
from promo_engine.core import money
from promo_engine.ledger.extensions import db
from promo_engine.ledger.holds import (HELD, MAX_NOTE, RELEASED, REVERSED, VOIDED, HoldError,
                                       held_rewards, release_committed, void_committed)
from promo_engine.ledger.models import CampaignRecord
from promo_engine.service import promo_service

RECENT = 10  # decided rewards shown under the queue


def _actor(user) -> str:
    return f"portal:{user.email}"


def _amount(held):
    if held.amount_minor is None:
        return None
    return money.from_minor(held.amount_minor, held.currency)


@bp.get("/admin/holds")
@login_required(ADMIN)
def admin_holds(user):
    every = held_rewards(db.session, None)
    waiting = [h for h in every if h.status == HELD]
    decided = sorted((h for h in every if h.status != HELD),
                     key=lambda h: h.decided_at, reverse=True)[:RECENT]
    names = dict(db.session.execute(select(CampaignRecord.id, CampaignRecord.name).where(
        CampaignRecord.id.in_({h.campaign_id for h in every if h.campaign_id}))).all())
    settings = promo_service().settings
    return render_template(
        "admin/holds.html", waiting=waiting, decided=decided, names=names, amount=_amount,
        zone=settings.timezone, max_note=MAX_NOTE, decision_label=decision_label,
        events_page="portal.admin_events" in current_app.view_functions)


def decision_label(status: str) -> str:
    return {HELD: _("held"), RELEASED: _("released"), VOIDED: _("voided"),
            REVERSED: _("reversed before a decision")}.get(status, status)


@bp.post("/admin/holds/<reward_id>/release")
@login_required(ADMIN)
def admin_release_hold(user, reward_id: str):
    return _decide(lambda note: release_committed(db.session, reward_id, actor=_actor(user),
                                                  note=note),
                   _("Released: the wallet is told to pay reward %(id)s.", id=reward_id))


@bp.post("/admin/holds/<reward_id>/void")
@login_required(ADMIN)
def admin_void_hold(user, reward_id: str):
    return _decide(lambda note: void_committed(
        db.session, reward_id, actor=_actor(user), note=note,
        reservations=promo_service().reservations),
        _("Voided: reward %(id)s is reversed and its budget is back with the campaign.",
          id=reward_id))


def _decide(act, success: str):
    try:
        act(request.form.get("note", ""))
    except HoldError as exc:
        db.session.rollback()
        flash({"not_found": _("There is no held reward with that id."),
               "not_held": _("That reward was decided already; nothing was changed."),
               "invalid_note": _("The note is too long (at most %(n)s characters).",
                                 n=MAX_NOTE),
               "exchange": _("This reward was bought with points: cancel the redemption "
                             "instead, which gives the points back too.")}
              .get(exc.code, str(exc)), "error")
    else:
        flash(success, "success")
    return redirect(url_for("portal.admin_holds"), 303)
