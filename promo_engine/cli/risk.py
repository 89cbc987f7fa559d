"""`promo-engine risk report [--json] [--days N] [--limit N]`: signs of reward hunting (top
earning users and devices, devices shared by many users, merchants with refunds far above the
program's rate, payments clustered just above a campaign's minimum, cashback per user this
month), the figures defined in `promo_engine/campaigns/risk_report.py`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import click

from promo_engine.cli import main
from promo_engine.cli.campaigns import _database, _database_errors, _fail, _table

NOTHING = "—"


@main.group()
def risk() -> None:
    """Abuse controls: the risk report."""


@risk.command("report")
@click.option("--days", default=30, show_default=True, type=int,
              help="The period: this many days of the program timezone, today included.")
@click.option("--limit", default=20, show_default=True, type=int,
              help="At most this many rows in each section.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def report(days: int, limit: int, as_json: bool) -> None:
    """The users and devices with the most campaign rewards, devices used by several users,
    merchants whose rewarded payments are refunded far above the program's rate, payments
    just above a campaign's min_amount, and this month's cashback per user."""
    from promo_engine.campaigns.risk_report import (PeriodError, check_options, report_json,
                                                    risk_report)
    from promo_engine.config import Settings
    from promo_engine.ledger.extensions import db

    try:
        check_options(days, limit)
    except PeriodError as exc:
        raise click.BadParameter(str(exc))
    settings = Settings.from_env()
    now = datetime.now(timezone.utc)
    with _database_errors(), _database(settings) as app:
        if app is None:
            _fail("the database has no schema yet (promo-engine db upgrade)")
        result = risk_report(db.session, zone_name=settings.timezone,
                             currency=settings.currency, now=now, days=days, limit=limit)
    data = report_json(result)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    print_report(data)


def _cell(value) -> str:
    return NOTHING if value is None else str(value)


def _percent(share: str | None) -> str:
    if share is None:
        return NOTHING
    return f"{(Decimal(share) * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def _local(moment: str, zone: str) -> str:
    when = datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return when.strftime("%Y-%m-%d %H:%M")


def _section(title: str, headers: list[str], rows: list[list[str]], empty: str,
             note: str | None = None) -> None:
    click.echo(f"\n{title}")
    click.echo("-" * len(title))
    if note:
        click.echo(note)
    if not rows:
        click.echo(empty)
        return
    for line in _table(headers, rows):
        click.echo(line)


def print_report(data: dict) -> None:
    zone = data["timezone"]
    click.echo(f"Risk report {data['from']} to {data['to']} ({data['days']} days, {zone}, "
               f"money in {data['currency']})")
    earner_headers = ["rewards", "events", "money", "points"]
    _section("Users with the most campaign rewards", ["user", *earner_headers],
             [[u["user_id"], str(u["rewards"]), str(u["events_rewarded"]), u["money"],
               str(u["points"])] for u in data["top_users"]],
             "no campaign rewards in the period")
    _section("Devices with the most campaign rewards", ["device", "users", *earner_headers],
             [[d["device_id"], str(d["users"]), str(d["rewards"]), str(d["events_rewarded"]),
               d["money"], str(d["points"])] for d in data["top_devices"]],
             "no campaign rewards on a known device in the period")
    _section("Devices used by several users", ["device", "users", "events", "first", "last"],
             [[d["device_id"], str(d["users"]), str(d["events_count"]),
               _local(d["first_at"], zone), _local(d["last_at"], zone)]
              for d in data["shared_devices"]],
             "no device was used by 2 users or more")
    refunds = data["merchant_refunds"]
    rule = refunds["rule"]
    _section("Refunds of rewarded payments by merchant",
             ["merchant", "rewarded", "refunded", "rate", "flag"],
             [[m["merchant_id"], str(m["rewarded_payments"]), str(m["refunded_payments"]),
               _percent(m["rate"]), "FLAGGED" if m["flagged"] else ""]
              for m in refunds["merchants"]],
             "no rewarded payment was refunded",
             note=f"program: {refunds['refunded_payments']} of {refunds['rewarded_payments']} "
                  f"refunded ({_percent(refunds['rate'])}); flagged: {rule['rate_multiple']}x "
                  f"the program's rate or more, and {rule['min_refunded']} refunds or more")
    _section("Payments just above a campaign's min_amount",
             ["campaign", "min_amount", "just above", "just below", "ratio"],
             [[c["campaign_id"], c["min_amount"],
               f"{c['just_above']['payments']} ({c['just_above']['from']}-"
               f"{c['just_above']['to']})",
               f"{c['just_below']['payments']} ({c['just_below']['from']}-"
               f"{c['just_below']['to']})", _cell(c["ratio"])]
              for c in data["min_amount_clusters"]],
             "no open, paused or closed campaign has a min_amount",
             note="payments up to 5% above the minimum against up to 5% below it; many above "
                  "and few below is how hunters pad payments")
    cashback = data["cashback"]
    cap = cashback["cap"]
    _section(f"Cashback per user in {cashback['month']}",
             ["user", "rewards", "cashback", "of cap"],
             [[u["user_id"], str(u["rewards"]), u["cashback"],
               _percent(u["share_of_cap"]) + (" AT CAP" if u["at_cap"] else "")]
              for u in cashback["users"]],
             "no cashback this month",
             note=f"monthly cap of the risk policy: {cap if cap is not None else 'none in force'}")
