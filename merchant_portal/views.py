"""The portal's pages. Merchant views reach offers only through `scoping`; every POST is
checked for its CSRF token before any view runs."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from flask import (Response, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_babel import gettext as _
from sqlalchemy import select

from merchant_portal import bp, i18n
from merchant_portal.accounts import authenticate, end_sessions
from merchant_portal.auth import (current_user, end_session, forget_failed_sign_in, login_required,
                                  safe_next, start_session)
from merchant_portal.budgets import budget_view
from merchant_portal.exchanges import exchanges
from merchant_portal.extensions import client_address, csrf, limiter
from merchant_portal.display import day_list, hours_text, window_text
from merchant_portal.forms import (LoginForm, OfferForm, ReasonForm, RejectForm, document_from_form,
                                   error_summary, errors_by_field, form_data_from_document)
from merchant_portal.models import (ADMIN, APPROVED, DRAFT, MERCHANT, OFFER_STATES, PENDING,
                                    REJECTED, Merchant, MerchantOffer)
from merchant_portal.offers import (PAUSABLE, OfferRefused, approve_offer, create_offer,
                                    duplicate_offer, live_campaign, pause_campaign, reject_offer,
                                    resume_campaign, submit_offer, update_offer)
from merchant_portal.missed import missed_for
from merchant_portal.outranked import outranked_for
from merchant_portal.results import csv_text, results_for
from merchant_portal.results_charts import results_charts
from merchant_portal.scoping import offer_or_404, offers_for, own_offer_or_404
from merchant_portal.voucher_results import VoucherResults, issues_vouchers, voucher_results_for
from promo_engine.api.errors import is_portal_request
from promo_engine.campaigns.lifecycle import PAUSED
from promo_engine.core import money
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord
from promo_engine.ledger.usage import current_usage
from promo_engine.service import promo_service


@bp.before_request
def protect_forms():
    if request.method == "POST":
        csrf.protect()
        # No portal form has a use for NUL, and PostgreSQL text cannot store it.
        if any("\x00" in value for _, value in request.form.items(multi=True)):
            abort(400)


@bp.after_request
def security_headers(response):
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'")
    if request.endpoint != "portal.static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.vary.add("Accept-Language")
    return response


bp.after_request(forget_failed_sign_in)


@bp.app_context_processor
def portal_globals():
    # Portal pages: its views' and the error pages of portal URLs no view matched.
    if request.blueprint != "portal" and not is_portal_request():
        return {}
    return {"current_user": current_user(), "html_lang": i18n.html_lang(),
            "language": i18n.language(),
            "format_money": i18n.format_money, "format_number": i18n.format_number,
            "format_percent": i18n.format_percent,
            "format_local": i18n.format_local, "state_label": state_label,
            "status_label": status_label, "type_label": type_label,
            "day_list": day_list, "hours_text": hours_text, "window_text": window_text}


def state_label(state: str) -> str:
    return {DRAFT: _("draft"), PENDING: _("pending"), APPROVED: _("approved"),
            REJECTED: _("rejected")}.get(state, state)


def status_label(status: str) -> str:
    return {"scheduled": _("scheduled"), "open": _("open"), "paused": _("paused"),
            "closed": _("closed"), "retired": _("retired")}.get(status, status)


def type_label(kind: str) -> str:
    return {"holiday_discount": _("Holiday discount"),
            "points_multiplier": _("Points multiplier"),
            "first_activation_bonus": _("First activation bonus"),
            "points_exchange": _("Points exchange")}.get(kind, kind)


def _settings():
    return promo_service().settings


# --- session ----------------------------------------------------------------------------------

@bp.get("/")
def index():
    user = current_user()
    if user is None:
        return redirect(url_for("portal.login"))
    return redirect(url_for("portal.admin_campaigns" if user.is_admin else "portal.offers"))


def _login_failed(response) -> bool:
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["PORTAL_LOGIN_LIMIT"], methods=["POST"],
               deduct_when=_login_failed)
@limiter.limit(lambda: current_app.config["PORTAL_LOGIN_ADDRESS_LIMIT"], methods=["POST"],
               key_func=client_address, deduct_when=_login_failed)
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            response = redirect(safe_next(request.args.get("next")) or url_for("portal.index"))
            start_session(user)
            flash(_("Welcome, %(email)s.", email=user.email), "success")
            return response
        flash(_("Email or password is incorrect."), "error")
        return render_template("login.html", form=form), 401
    if request.method == "GET" and current_user() is not None:
        return redirect(url_for("portal.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
def logout():
    user = current_user()
    if user is not None:
        end_sessions(user.id)
    end_session()
    flash(_("You are signed out."), "success")
    return redirect(url_for("portal.login"))


@bp.get("/lang/<code>")
def switch_language(code: str):
    if code not in i18n.LANGUAGES:
        abort(404)
    session["lang"] = code
    back = safe_next(request.referrer and _same_site_path(request.referrer))
    return redirect(back or url_for("portal.index"))


def _same_site_path(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.netloc and parts.netloc != request.host:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- merchant: offers ------------------------------------------------------------------------

def _budget(spec: dict, campaign_id: str | None, currency: str) -> dict:
    spent = 0
    if campaign_id is not None:
        usage = current_usage(db.session, [campaign_id], promo_service().reservations)
        spent = usage[campaign_id][0]
    return budget_view(spec, spent, currency)


def _view_of(offer: MerchantOffer, currency: str) -> dict:
    campaign = live_campaign(offer)
    spec = campaign.spec if campaign is not None else offer.spec
    return {"offer": offer, "campaign": campaign, "currency": currency,
            "budget": _budget(spec, offer.campaign_id, currency)}


@bp.get("/offers")
@login_required(MERCHANT)
def offers(user):
    currency = _settings().currency
    rows = db.session.scalars(offers_for(user).order_by(MerchantOffer.id.desc())).all()
    merchant = db.session.get(Merchant, user.merchant_id)
    return render_template("offers/list.html", rows=[_view_of(o, currency) for o in rows],
                           merchant=merchant)


def _offer_form(**kwargs) -> OfferForm:
    return OfferForm(default_timezone=_settings().timezone, **kwargs)


@bp.route("/offers/new", methods=["GET", "POST"])
@login_required(MERCHANT)
def new_offer(user):
    form = _offer_form()
    field_errors, general = {}, []
    if request.method == "POST" and form.validate():
        offer, problems = create_offer(user, lambda campaign_id: document_from_form(
            form, campaign_id=campaign_id, merchant_id=user.merchant_id))
        if offer is not None:
            flash(_("Offer saved as a draft. Send it for approval when it is ready."),
                  "success")
            return redirect(url_for("portal.offer", offer_id=offer.id))
        field_errors, general = errors_by_field(problems.pairs)
    status = 422 if request.method == "POST" else 200
    return render_template("offers/form.html", form=form, offer=None, errors=field_errors,
                           summary=error_summary(form, field_errors),
                           general_errors=general), status


@bp.get("/offers/<row_id:offer_id>")
@login_required()
def offer(user, offer_id: int):
    found = offer_or_404(user, offer_id)
    view = _view_of(found, _settings().currency)
    merchant = db.session.get(Merchant, found.merchant_id) if user.is_admin else None
    return render_template("offers/detail.html", **view, merchant=merchant)


@bp.route("/offers/<row_id:offer_id>/edit", methods=["GET", "POST"])
@login_required(MERCHANT)
def edit_offer(user, offer_id: int):
    found = own_offer_or_404(user, offer_id)
    if request.method == "GET":
        form = _offer_form(data=form_data_from_document(found.spec))
    else:
        form = _offer_form()
    field_errors, general = {}, []
    if request.method == "POST" and form.validate():
        document = document_from_form(form, campaign_id=found.spec["id"],
                                      merchant_id=user.merchant_id)
        problems = update_offer(found, document)
        if problems is None:
            flash(_("Changes saved. The offer is a draft again: send it for approval."),
                  "success")
            return redirect(url_for("portal.offer", offer_id=found.id))
        field_errors, general = errors_by_field(problems.pairs)
    status = 422 if request.method == "POST" else 200
    return render_template("offers/form.html", form=form, offer=found, errors=field_errors,
                           summary=error_summary(form, field_errors),
                           general_errors=general), status


def _act(offer_id: int, action, success: str):
    try:
        action()
    except OfferRefused as exc:
        flash(str(exc), "error")
    else:
        flash(success, "success")
    return redirect(url_for("portal.offer", offer_id=offer_id))


@bp.post("/offers/<row_id:offer_id>/submit")
@login_required(MERCHANT)
def submit(user, offer_id: int):
    found = own_offer_or_404(user, offer_id)
    return _act(found.id, lambda: submit_offer(user, found),
                _("Sent for approval. The bank will review it."))


@bp.post("/offers/<row_id:offer_id>/pause")
@login_required(MERCHANT)
def pause(user, offer_id: int):
    found = own_offer_or_404(user, offer_id)
    if found.campaign_id is None:
        flash(_("Only an approved offer can be paused."), "error")
        return redirect(url_for("portal.offer", offer_id=found.id))
    form = ReasonForm()
    reason = (form.reason.data or "").strip() or "paused by the merchant"
    return _act(found.id, lambda: pause_campaign(user, found.campaign_id, reason),
                _("Offer paused. It gives no rewards until you resume it."))


@bp.post("/offers/<row_id:offer_id>/resume")
@login_required(MERCHANT)
def resume(user, offer_id: int):
    found = own_offer_or_404(user, offer_id)
    if found.campaign_id is None:
        flash(_("Only a paused offer can be resumed."), "error")
        return redirect(url_for("portal.offer", offer_id=found.id))
    return _act(found.id, lambda: resume_campaign(user, found.campaign_id),
                _("Offer resumed."))


@bp.post("/offers/<row_id:offer_id>/duplicate")
@login_required(MERCHANT)
def duplicate(user, offer_id: int):
    found = own_offer_or_404(user, offer_id)
    copy = duplicate_offer(user, found)
    flash(_("Copied as a new draft. Adjust it and send it for approval."), "success")
    return redirect(url_for("portal.edit_offer", offer_id=copy.id))


# --- results ---------------------------------------------------------------------------------

def _vouchers_of(offer: MerchantOffer) -> VoucherResults | None:
    """The offer's voucher figures; None for an offer that gives no vouchers."""
    campaign = live_campaign(offer)
    spec = campaign.spec if campaign is not None else offer.spec
    vouchers = voucher_results_for(offer.campaign_id)
    return vouchers if issues_vouchers(spec, vouchers) else None


@bp.get("/offers/<row_id:offer_id>/results")
@login_required()
def results(user, offer_id: int):
    found = offer_or_404(user, offer_id)
    currency = _settings().currency
    figures = results_for(found.campaign_id)
    return render_template("offers/results.html", **_view_of(found, currency), figures=figures,
                           charts=results_charts(figures, currency, i18n.language()),
                           vouchers=_vouchers_of(found),
                           outranked=outranked_for(found.campaign_id),
                           missed=missed_for(found.campaign_id))


@bp.get("/offers/<row_id:offer_id>/results.csv")
@login_required()
def results_csv(user, offer_id: int):
    found = offer_or_404(user, offer_id)
    currency = _settings().currency
    text = csv_text(results_for(found.campaign_id), _vouchers_of(found),
                    lambda minor: money.format_amount(Decimal(minor).scaleb(
                        -money.minor_digits(currency)), currency))
    filename = f"{found.spec.get('id', found.id)}-results.csv"
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- bank admin ------------------------------------------------------------------------------

@bp.get("/admin/campaigns")
@login_required(ADMIN)
def admin_campaigns(user):
    campaigns = db.session.scalars(select(CampaignRecord)
                                   .order_by(CampaignRecord.source.desc(), CampaignRecord.id)).all()
    offer_ids = dict(db.session.execute(
        select(MerchantOffer.campaign_id, MerchantOffer.id)
        .where(MerchantOffer.campaign_id.is_not(None))).all())
    pending = db.session.scalar(select(db.func.count()).select_from(MerchantOffer)
                                .where(MerchantOffer.state == PENDING))
    merchants = dict(db.session.execute(select(Merchant.id, Merchant.name)).all())
    currency = _settings().currency
    return render_template("admin/campaigns.html", campaigns=campaigns, offer_ids=offer_ids,
                           merchants=merchants, pending=pending, pausable=PAUSABLE, paused=PAUSED,
                           reason_form=ReasonForm(), currency=currency,
                           exchanges=exchanges(campaigns, currency))


@bp.get("/admin/offers")
@login_required(ADMIN)
def admin_offers(user):
    state = request.args.get("state", PENDING)
    query = offers_for(user).order_by(MerchantOffer.submitted_at.desc(), MerchantOffer.id.desc())
    if state in OFFER_STATES:
        query = query.where(MerchantOffer.state == state)
    else:
        state = "all"
    rows = db.session.scalars(query).all()
    merchants = {m.id: m for m in db.session.scalars(select(Merchant))}
    currency = _settings().currency
    budgets = {o.id: _view_of(o, currency)["budget"] for o in rows}
    return render_template("admin/offers.html", rows=rows, state=state, states=OFFER_STATES,
                           merchants=merchants, budgets=budgets, currency=currency)


def _after_decision(offer_id: int, code: int = 302):
    """Back to the offer's page when decided there, else to the pending offers."""
    if request.form.get("back") == "offer":
        return redirect(url_for("portal.offer", offer_id=offer_id), code)
    return redirect(url_for("portal.admin_offers", state=PENDING), code)


@bp.post("/admin/offers/<row_id:offer_id>/approve")
@login_required(ADMIN)
def admin_approve(user, offer_id: int):
    found = offer_or_404(user, offer_id)
    try:
        approve_offer(user, found.id)
    except OfferRefused as exc:
        flash(str(exc), "error")
    else:
        flash(_("Approved: “%(name)s” gives rewards on its dates.", name=found.name),
              "success")
    return _after_decision(found.id)


@bp.post("/admin/offers/<row_id:offer_id>/reject")
@login_required(ADMIN)
def admin_reject(user, offer_id: int):
    found = offer_or_404(user, offer_id)
    form = RejectForm()
    if not form.validate():
        flash(_("Give a reason for the rejection: the merchant will see it."), "error")
        return _after_decision(found.id, 303)
    try:
        reject_offer(user, found.id, form.reason.data)
    except OfferRefused as exc:
        flash(str(exc), "error")
    else:
        flash(_("Rejected. The merchant sees your reason."), "success")
    return _after_decision(found.id)


@bp.post("/admin/campaigns/<campaign_id:campaign_id>/pause")
@login_required(ADMIN)
def admin_pause(user, campaign_id: str):
    record = db.session.get(CampaignRecord, campaign_id)
    if record is None:
        abort(404)
    name = record.name or campaign_id
    form = ReasonForm()
    reason = (form.reason.data or "").strip() or "paused by the bank"
    try:
        pause_campaign(user, campaign_id, reason)
    except OfferRefused as exc:
        flash(str(exc), "error")
    else:
        flash(_("“%(name)s” paused.", name=name), "success")
    return redirect(url_for("portal.admin_campaigns"))


@bp.post("/admin/campaigns/<campaign_id:campaign_id>/resume")
@login_required(ADMIN)
def admin_resume(user, campaign_id: str):
    record = db.session.get(CampaignRecord, campaign_id)
    if record is None:
        abort(404)
    name = record.name or campaign_id
    try:
        resume_campaign(user, campaign_id)
    except OfferRefused as exc:
        flash(str(exc), "error")
    else:
        flash(_("“%(name)s” resumed.", name=name), "success")
    return redirect(url_for("portal.admin_campaigns"))

