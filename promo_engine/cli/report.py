"""`promo-engine campaigns report ID [--json]`: a campaign's results from the ledger, and
with a `holdout` its control group against the rest (the figures are defined in
`promo_engine/campaigns/report.py`, the statistics in `promo_engine/core/uplift.py`).

A module of its own beside `campaigns.py`, registered on the same `campaigns` group.
"""
from __future__ import annotations

import json

import click

from promo_engine.cli.campaigns import (_campaign_record, _database, _database_errors, _fail,
                                        _table, campaigns)

NOTHING = "—"
MEASURES = (("payments_per_user", "payments/user"), ("spend_per_user", "spend/user"))


@campaigns.command()
@click.argument("campaign_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def report(campaign_id: str, as_json: bool) -> None:
    """A campaign's results: rewards, users, cost, points, budget left, and with `holdout`
    its control group against the rest with 95% confidence intervals (Welch)."""
    from promo_engine.campaigns.report import campaign_report
    from promo_engine.campaigns.schema import load_campaign
    from promo_engine.config import Settings
    from promo_engine.core.registry import build_registry
    from promo_engine.ledger.extensions import db

    settings = Settings.from_env()
    with _database_errors(), _database(settings) as app:
        record = _campaign_record(app, campaign_id)
        registry = build_registry()
        campaign_type = registry.campaign_type(record.type)
        try:
            campaign = load_campaign(record.spec, registry=registry, currency=settings.currency,
                                     default_timezone=settings.timezone)
        except Exception as exc:  # a plugin uninstalled since: say so, no traceback
            _fail(f"campaign {campaign_id} does not load ({exc})")
        result = campaign_report(db.session, campaign,
                                 frozenset(campaign_type.triggers(campaign.params)))
    if as_json:
        click.echo(json.dumps(report_json(result), indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(report_text(result)))


def _text(value) -> str | None:
    return None if value is None else str(value)


def report_json(result) -> dict:
    """The contract's shape: money and means as decimal strings, counts as integers."""
    budget_left = result.budget_left
    if result.budget_unit == "money":
        budget_left = str(budget_left)
    holdout = None
    if result.holdout is not None:
        h = result.holdout
        holdout = {"percent": h.percent,
                   "control": _group_json(h.control), "treatment": _group_json(h.treatment),
                   "uplift": {key: {"difference": _text(d.difference), "low": _text(d.low),
                                    "high": _text(d.high)}
                              for key, d in h.uplift.items()}}
    return {"campaign_id": result.campaign_id, "rewards": result.rewards,
            "users": result.users, "cost": str(result.cost), "points": result.points,
            "budget_left": budget_left, "holdout": holdout}


def _group_json(group) -> dict:
    return {"users": group.users, "payments_per_user": _text(group.payments_per_user),
            "spend_per_user": _text(group.spend_per_user)}


def report_text(result) -> list[str]:
    if result.budget_unit is None:
        budget = "no budget"
    elif result.budget_unit == "money":
        budget = f"{result.budget_left} {result.currency}"
    else:
        budget = f"{result.budget_left} points"
    lines = [f"{result.campaign_id}: {result.name} ({result.type})", ""]
    lines += _table(["", ""], [["rewards", str(result.rewards)], ["users", str(result.users)],
                               ["cost", f"{result.cost} {result.currency}"],
                               ["points", str(result.points)], ["budget left", budget]])[1:]
    h = result.holdout
    lines.append("")
    if h is None:
        lines.append("no holdout: nothing to compare the campaign with")
        return lines
    rows = [["users", str(h.control.users), str(h.treatment.users), NOTHING]]
    for key, label in MEASURES:
        d = h.uplift[key]
        if d.difference is None:
            uplift = NOTHING
        elif d.low is None:
            uplift = f"{d.difference} (too few users for an interval)"
        else:
            uplift = f"{d.difference} [{d.low}, {d.high}]"
        rows.append([label, _text(getattr(h.control, key)) or NOTHING,
                     _text(getattr(h.treatment, key)) or NOTHING, uplift])
    lines.append(f"holdout {h.percent}%: control (held out) against treatment, at the "
                 f"campaign's merchants in its dates; spend in {result.currency}")
    lines += _table(["", "CONTROL", "TREATMENT", "UPLIFT [95% CI, Welch]"], rows)
    return lines
