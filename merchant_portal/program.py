"""The bank's Program page (/portal/admin/program): activations per day, the weekly cohorts'
first payments within 7 and 30 days, weekly active payers and each campaign's cost per new
user, with a CSV export. Bank admins only, like the other admin pages.

The figures are `promo_engine.campaigns.program_report`'s (the same as `promo-engine report
program`); this module only reads the range from the query string and draws them.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from flask import Response, render_template, request
from flask_babel import gettext as _

from merchant_portal import bp, i18n
from merchant_portal.auth import login_required
from merchant_portal.models import ADMIN
from merchant_portal.program_charts import (HALF, NARROW, WIDE, Series, count_chart,
                                            day_label, share_chart)
from promo_engine.campaigns.program_report import (RangeError, check_range, default_range,
                                                   program_report, report_csv)
from promo_engine.ledger.extensions import db
from promo_engine.service import promo_service

BLUE, GREEN, TEAL = "#2563eb", "#16a34a", "#0d9488"
BOM = "\ufeff"  # Excel reads a CSV as UTF-8 only with it


def _range(today: date) -> tuple[date, date, str | None]:
    """The ?from=&to= range, or the default one and what was wrong with the query."""
    default_first, _last = default_range(today)
    try:
        last = date.fromisoformat(request.args["to"]) if request.args.get("to") else today
        first = (date.fromisoformat(request.args["from"]) if request.args.get("from")
                 else default_range(last)[0])
        check_range(first, last)
    except (ValueError, RangeError):
        return default_first, today, _("That range cannot be shown (use YYYY-MM-DD dates, "
                                       "the first not after the last, at most 3 years); "
                                       "showing the last 12 weeks.")
    return first, last, None


def _report():
    settings = promo_service().settings
    now = datetime.now(timezone.utc)
    first, last, problem = _range(now.astimezone(ZoneInfo(settings.timezone)).date())
    report = program_report(db.session, zone_name=settings.timezone, currency=settings.currency,
                            first_day=first, last_day=last, now=now)
    return report, problem


def charts(report, language: str) -> dict:
    """Each chart twice: "<name>_wide" for a desktop, "<name>_narrow" below 1000 px."""
    days = [day_label(d.day, language) for d in report.days]
    weeks = [day_label(c.week, language) for c in report.cohorts]
    activations = dict(title=_("Activations per day"), labels=days, name=_("Activations"),
                       values=[d.activations for d in report.days], color=BLUE)
    cohorts = dict(
        title=_("First payment within 7 and 30 days, by week of activation"), labels=weeks,
        series=[Series(_("within 7 days"), [c.share_7d for c in report.cohorts], BLUE),
                Series(_("within 30 days"), [c.share_30d for c in report.cohorts], GREEN)])
    payers = dict(title=_("Weekly active payers"),
                  labels=[day_label(w.week, language) for w in report.weeks],
                  name=_("Payers"), values=[w.payers for w in report.weeks], color=TEAL)
    return {
        "activations_wide": count_chart(**activations, size=WIDE, element_id="activations-wide"),
        "activations_narrow": count_chart(**activations, size=NARROW,
                                          element_id="activations-narrow"),
        "cohorts_wide": share_chart(**cohorts, size=HALF, element_id="cohorts-wide"),
        "cohorts_narrow": share_chart(**cohorts, size=NARROW, element_id="cohorts-chart"),
        "payers_wide": count_chart(**payers, size=HALF, element_id="payers-wide"),
        "payers_narrow": count_chart(**payers, size=NARROW, element_id="payers-chart"),
    }


@bp.get("/admin/program")
@login_required(ADMIN)
def admin_program(user):
    report, problem = _report()
    return render_template("admin/program.html", report=report, problem=problem,
                           charts=charts(report, i18n.language()),
                           total=sum(d.activations for d in report.days))


@bp.get("/admin/program.csv")
@login_required(ADMIN)
def admin_program_csv(user):
    report, _problem = _report()
    filename = (f"program-{report.first_day.isoformat()}-to-{report.last_day.isoformat()}.csv")
    return Response(BOM + report_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
