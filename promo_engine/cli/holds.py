"""`promo-engine holds ...`: rewards the risk policy held for review, listed, released or
voided, each decision audited with the operator's login as `cli:<login>`.

The same decisions as the portal's held-rewards queue (`promo_engine/ledger/holds.py`).
"""
from __future__ import annotations

import json
import sys

import click

from promo_engine.cli import main
from promo_engine.cli.campaigns import _table, operator

NOTHING = "—"


@main.group("holds")
def holds_group() -> None:
    """Rewards held for review: list them, release or void them."""


def _money(held) -> str | None:
    """"150.00": the amount with the currency's digits (None for points)."""
    from promo_engine.core import money
    if held.amount_minor is None:
        return None
    return money.format_amount(money.from_minor(held.amount_minor, held.currency),
                               held.currency)


def _amount(held) -> str:
    amount = _money(held)
    return f"{held.points} points" if amount is None else f"{amount} {held.currency}"


@holds_group.command("list")
@click.option("--all", "every", is_flag=True, help="Decided rewards too, with the decision.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_command(every: bool, as_json: bool) -> None:
    """The rewards waiting for a decision, the longest waiting first; times in the
    program's time zone."""
    from promo_engine.cli.clients import _app
    from promo_engine.config import Settings
    from promo_engine.core.campaign_views import local_time, rfc3339_local
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.holds import held_rewards
    zone = Settings.from_env().timezone
    app = _app()
    with app.app_context():
        try:
            rows = held_rewards(db.session, None if every else "held")
        finally:
            db.session.remove()
            db.engine.dispose()
    if as_json:
        click.echo(json.dumps([{
            "reward_id": h.reward_id, "user_id": h.user_id, "campaign_id": h.campaign_id,
            "kind": h.kind, "amount": _money(h), "currency": h.currency, "event_id": h.event_id,
            "held_at": rfc3339_local(h.held_at, zone), "status": h.status,
            "decided_by": h.decided_by,
            "decided_at": rfc3339_local(h.decided_at, zone) if h.decided_at else None,
            "note": h.note} for h in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no rewards held" if every else "no rewards waiting for a decision")
        return
    click.echo(f"times in {zone}")

    def when(at) -> str:
        return local_time(at, zone).strftime("%Y-%m-%d %H:%M:%S")

    headers = ["REWARD", "USER", "CAMPAIGN", "AMOUNT", "HELD AT", "EVENT"]
    if every:
        headers += ["STATUS", "BY", "NOTE"]
    table = []
    for h in rows:
        row = [h.reward_id, h.user_id, h.campaign_id or NOTHING, _amount(h), when(h.held_at),
               h.event_id or NOTHING]
        if every:
            row += [h.status if h.decided_at is None else f"{h.status} {when(h.decided_at)}",
                    h.decided_by or NOTHING, h.note or NOTHING]
        table.append(row)
    for line in _table(headers, table):
        click.echo(line)


def _decide(verb: str, decide) -> object:
    from sqlalchemy.exc import SQLAlchemyError

    from promo_engine.cli.clients import _app
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.holds import HoldError
    from promo_engine.service import promo_service
    app = _app()
    with app.app_context():
        try:
            return decide(db.session, promo_service(app).reservations)
        except HoldError as exc:
            db.session.rollback()
            click.echo(f"promo-engine: holds {verb}: {exc}", err=True)
            sys.exit(1)
        except SQLAlchemyError as exc:
            db.session.rollback()
            click.echo(f"promo-engine: holds {verb}: database error: "
                       f"{getattr(exc, 'orig', None) or exc}", err=True)
            sys.exit(1)
        finally:
            db.session.remove()
            promo_service(app).close()
            db.engine.dispose()


@holds_group.command("release")
@click.argument("reward_id")
@click.option("--note", default="", help="Why, for the audit log.")
def release_command(reward_id: str, note: str) -> None:
    """Release a held reward: the wallet is told (webhook reward.released) and pays it."""
    from promo_engine.ledger.holds import release_committed
    _decide("release", lambda session, _reservations: release_committed(
        session, reward_id, actor=operator(), note=note))
    click.echo(f"released {reward_id}")


@holds_group.command("void")
@click.argument("reward_id")
@click.option("--note", default="", help="Why, for the audit log.")
def void_command(reward_id: str, note: str) -> None:
    """Void a held reward: it is reversed, its budget and the limits it used are given back
    to the campaign, and the wallet is told (webhook reward.voided)."""
    from promo_engine.ledger.holds import void_committed
    _, reversal = _decide("void", lambda session, reservations: void_committed(
        session, reward_id, actor=operator(), note=note, reservations=reservations))
    click.echo(f"voided {reward_id}" + (f" (reversed {reversal['amount']} "
                                        f"{reversal['currency']})"
                                        if reversal and "amount" in reversal else ""))
