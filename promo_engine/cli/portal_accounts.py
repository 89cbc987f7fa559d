"""`promo-engine merchants create` and `promo-engine admins create`: portal logins."""
from __future__ import annotations

import sys

import click

from promo_engine.cli import main
from promo_engine.cli.clients import _app


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("--password-stdin: give the password on standard input")
    return password


@main.group("merchants")
def merchants_group() -> None:
    """Merchants and their portal logins."""


@merchants_group.command("create")
@click.argument("merchant_id", metavar="ID")
@click.option("--name", required=True, help="The merchant's display name.")
@click.option("--email", required=True, help="The login email for the portal.")
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password from the first line of standard input.")
def create_merchant_command(merchant_id: str, name: str, email: str, password_stdin: bool) -> None:
    """Create merchant ID (as its payment events name it) and its portal login."""
    from merchant_portal.accounts import AccountError, create_merchant
    password = _read_password()
    app = _app()
    with app.app_context():
        try:
            login = create_merchant(merchant_id, name, email, password)
        except AccountError as exc:
            click.echo(f"promo-engine: {exc}", err=True)
            sys.exit(1)
        click.echo(f"created merchant {merchant_id} with login {login.email}")


@main.group("admins")
def admins_group() -> None:
    """Bank (marketing) admin logins for the portal."""


@admins_group.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True,
              help="Read the password from the first line of standard input.")
def create_admin_command(email: str, password_stdin: bool) -> None:
    """Create a bank admin login for the portal."""
    from merchant_portal.accounts import AccountError, create_admin
    password = _read_password()
    app = _app()
    with app.app_context():
        try:
            login = create_admin(email, password)
        except AccountError as exc:
            click.echo(f"promo-engine: {exc}", err=True)
            sys.exit(1)
        click.echo(f"created admin {login.email}")
