"""`promo-engine clients ...`: API clients of the wallet backend."""
from __future__ import annotations

import json
import sys

import click
from sqlalchemy.exc import OperationalError

from promo_engine.cli import main
from promo_engine.cli.db import fail_unreachable
from promo_engine.config import Settings
from promo_engine.ledger import schema


@main.group("clients")
def clients_group() -> None:
    """Create, list and revoke API clients (HMAC key id and secret)."""


@clients_group.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True,
              help='Print exactly {"key_id": "...", "secret": "..."}.')
def create_command(name: str, as_json: bool) -> None:
    """Create a client; its secret is printed this once and cannot be shown again."""
    from promo_engine.ledger.api_clients import create_client
    if not name.strip() or len(name.strip()) > 200:
        raise click.BadParameter("1-200 characters", param_hint="NAME")
    app = _app()
    with app.app_context():
        key_id, secret = create_client(name)
    if as_json:
        click.echo(json.dumps({"key_id": key_id, "secret": secret}))
    else:
        click.echo(f"key id: {key_id}")
        click.echo(f"secret: {secret}")
        click.echo("Store the secret now: it is kept encrypted and cannot be shown again.",
                   err=True)


@clients_group.command("list")
def list_command() -> None:
    """List clients (never their secrets)."""
    from promo_engine.ledger.api_clients import list_clients
    app = _app()
    with app.app_context():
        for client in list_clients():
            state = (f"revoked {client.revoked_at:%Y-%m-%d %H:%M}Z" if client.revoked_at
                     else "active")
            click.echo(f"{client.key_id}\t{client.name}\t"
                       f"created {client.created_at:%Y-%m-%d %H:%M}Z\t{state}")


@clients_group.command("revoke")
@click.argument("key_id")
def revoke_command(key_id: str) -> None:
    """Revoke a client: running servers refuse its requests within a second."""
    from promo_engine.ledger.api_clients import revoke_client
    app = _app()
    with app.app_context():
        revoked = revoke_client(key_id)
    if not revoked:
        click.echo(f"promo-engine: no active client {key_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


def _app():
    """The app on DATABASE_URL, once its schema is known to be current."""
    from promo_engine.app import create_app
    settings = Settings.from_env()
    try:
        current = schema.current_revision(settings.database_url)
    except OperationalError as exc:
        fail_unreachable(settings.database_url, exc)
    if current != schema.head_revision():
        click.echo(f"promo-engine: the database {schema.describe_url(settings.database_url)} "
                   f"is at schema revision {current or 'none'}; run `promo-engine db upgrade` "
                   "first", err=True)
        sys.exit(1)
    return create_app(settings)
