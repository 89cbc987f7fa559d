"""The bank's Risk page (/portal/admin/risk): the users and devices with the most campaign
rewards, devices used by several users, merchants whose rewarded payments are refunded far
above the program's rate, payments clustered just above a campaign's minimum, and this
month's cashback per user against the risk policy's cap. Bank admins only.

The figures are `promo_engine.campaigns.risk_report`'s (the same as `promo-engine risk
report`); this module reads the period from the query string and turns each row's filter
into a link to the admin events page, its instants shown in the program's timezone.
"""
from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from flask import render_template, request, url_for
from flask_babel import gettext as _

from merchant_portal import bp
from merchant_portal.auth import login_required
from merchant_portal.models import ADMIN
from promo_engine.campaigns.risk_report import (DAYS, LIMIT, MIN_REFUNDED, REFUND_MULTIPLE,
                                                PeriodError, check_options, risk_report)
from promo_engine.ledger.extensions import db
from promo_engine.service import promo_service

PERIODS = (7, 30, 90)


def local_text(moment: str, zone: ZoneInfo) -> str:
    """A report instant ("...Z") as the local day or time the events page reads
    ("2026-06-01", "2026-06-01T09:30")."""
    when = datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(zone)
    if when.time() == time(0):
        return when.date().isoformat()
    return when.strftime("%Y-%m-%dT%H:%M" if not when.second else "%Y-%m-%dT%H:%M:%S")


def events_link(events_filter: dict, zone: ZoneInfo) -> str:
    """The admin events page listing a report row's events."""
    args = {key: (local_text(value, zone) if key in ("from", "to") else value)
            for key, value in events_filter.items()}
    return url_for("portal.admin_events", **args)


def _days() -> tuple[int, str | None]:
    raw = request.args.get("days")
    if raw in (None, ""):
        return DAYS, None
    try:
        days = int(raw)
        check_options(days, LIMIT)
    except (ValueError, PeriodError):
        return DAYS, _("That period cannot be shown (a whole number of days from 1 to 1096); "
                       "showing the last 30 days.")
    return days, None


@bp.get("/admin/risk")
@login_required(ADMIN)
def admin_risk(user):
    settings = promo_service().settings
    days, problem = _days()
    report = risk_report(db.session, zone_name=settings.timezone, currency=settings.currency,
                         now=datetime.now(timezone.utc), days=days)
    zone = ZoneInfo(settings.timezone)
    return render_template("admin/risk.html", report=report, problem=problem, periods=PERIODS,
                           link=lambda events_filter: events_link(events_filter, zone),
                           refund_multiple=REFUND_MULTIPLE, min_refunded=MIN_REFUNDED)
