"""`promo-engine users erase USER_ID`: a user's personal data erased (docs/privacy.md)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import click

from promo_engine.cli import main
from promo_engine.cli.clients import _app

# What the API accepts as a user_id (api/request_fields.py): any other id was never stored.
USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@main.group("users")
def users_group() -> None:
    """Users' personal data (see docs/privacy.md)."""


@users_group.command("erase")
@click.argument("user_id")
@click.option("--actor", default="cli", show_default=True,
              help="Who asked for the erasure, for its audit row (e.g. a ticket number).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"erased": true|false, "pseudonym": "..."|null}.')
def erase_command(user_id: str, actor: str, as_json: bool) -> None:
    """Erase USER_ID: its id is replaced by a random pseudonym in every stored row and the
    device ids of its events are deleted; rewards, points and every sum stay as they were.
    Audited; erasing an unknown or already erased id changes nothing (exit 0)."""
    from promo_engine.ledger.erasure import erase_user
    from promo_engine.ledger.extensions import db
    if not USER_ID.fullmatch(user_id):
        raise click.BadParameter("must be 1-64 characters of A-Z a-z 0-9 _ . : -",
                                 param_hint="USER_ID")
    actor = actor.strip()
    if not actor or len(actor) > 120:
        raise click.BadParameter("1-120 characters", param_hint="--actor")
    app = _app()
    with app.app_context():
        erasure = erase_user(db.session, user_id, actor=actor, now=datetime.now(timezone.utc))
    if as_json:
        click.echo(json.dumps({"erased": erasure is not None,
                               "pseudonym": erasure.pseudonym if erasure else None}))
    elif erasure is None:
        click.echo("nothing found: no stored row holds this user id (unknown, or erased "
                   "before); nothing changed")
    else:
        click.echo(f"erased: replaced by {erasure.pseudonym} in "
                   f"{sum(erasure.rows.values())} rows (the erased id is kept nowhere)")
