"""`promo-engine report program [--json] [--from DATE --to DATE] [--csv FILE]`: the bank's
view of activation (activations per day, weekly cohorts' first payments, weekly active payers,
campaign cost per new user), the figures defined in `promo_engine/campaigns/program_report.py`.

A group of its own: reports of the whole program, beside `campaigns report ID` (one campaign).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import click

from promo_engine.cli import main
from promo_engine.cli.campaigns import _database, _database_errors, _fail, _table

NOTHING = "—"


@main.group()
def report() -> None:
    """Reports on the whole program."""


def _day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option)


@report.command("program")
@click.option("--from", "first", metavar="DATE", help="First day (YYYY-MM-DD, program timezone).")
@click.option("--to", "last", metavar="DATE", help="Last day, included (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the tables to this CSV file (UTF-8).")
def program(first: str | None, last: str | None, as_json: bool, csv_path: str | None) -> None:
    """Activations per day, the share of each week's activated users who paid within 7 and
    30 days, weekly active payers and each campaign's cost per activated and per
    first-paying user. Default range: the 12 weeks ending with the current one."""
    from promo_engine.campaigns.program_report import (RangeError, default_range,
                                                       program_report, report_csv, report_json)
    from promo_engine.config import Settings
    from promo_engine.ledger.extensions import db

    settings = Settings.from_env()
    now = datetime.now(timezone.utc)
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    last_day = _day("--to", last) or today
    first_day = _day("--from", first) or default_range(last_day)[0]
    with _database_errors(), _database(settings) as app:
        if app is None:
            _fail("the database has no schema yet (promo-engine db upgrade)")
        try:
            result = program_report(db.session, zone_name=settings.timezone,
                                    currency=settings.currency, first_day=first_day,
                                    last_day=last_day, now=now)
        except RangeError as exc:
            raise click.BadParameter(str(exc))
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as handle:
            handle.write(report_csv(result))
    data = report_json(result)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _print(data)


def _cell(value) -> str:
    return NOTHING if value is None else str(value)


def _percent(share: str | None) -> str:
    return NOTHING if share is None else f"{float(share) * 100:.1f}%"


def _print(data: dict) -> None:
    click.echo(f"Program report {data['from']} to {data['to']} ({data['timezone']}, "
               f"costs in {data['currency']})")
    total = sum(d["activations"] for d in data["activations_per_day"])
    click.echo(f"\nActivations: {total}")
    for line in _table(["day", "activations"],
                       [[d["day"], str(d["activations"])] for d in data["activations_per_day"]
                        if d["activations"]]):
        click.echo(line)
    click.echo("\nCohorts (first payment within 7 / 30 days of activating; — not yet known)")
    for line in _table(["week", "users", "7 days", "30 days"],
                       [[c["week"], str(c["users"]), _percent(c["share_7_days"]),
                         _percent(c["share_30_days"])] for c in data["cohorts"]]):
        click.echo(line)
    click.echo("\nWeekly active payers")
    for line in _table(["week", "payers"], [[w["week"], str(w["payers"])]
                                            for w in data["weekly_active_payers"]]):
        click.echo(line)
    click.echo("\nCampaign cost per new user")
    if not data["campaigns"]:
        click.echo("no campaign rewards in the range")
        return
    for line in _table(["campaign", "cost", "points", "users", "activated", "per activated",
                        "first-paying", "per first-paying"],
                       [[c["campaign_id"], c["cost"], str(c["points"]), str(c["users"]),
                         str(c["activated_users"]), _cell(c["cost_per_activated_user"]),
                         str(c["first_paying_users"]), _cell(c["cost_per_first_paying_user"])]
                        for c in data["campaigns"]]):
        click.echo(line)
