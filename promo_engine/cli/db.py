"""`promo-engine db ...`: create and migrate the database schema."""
from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from promo_engine.cli import main
from promo_engine.config import Settings
from promo_engine.ledger import schema


@main.group("db")
def db_group() -> None:
    """Create and migrate the database schema (of DATABASE_URL)."""


@db_group.command("upgrade")
def upgrade_command() -> None:
    """Create the schema, or migrate it to the newest revision."""
    settings = Settings.from_env()
    result = upgrade_or_exit(settings.database_url)
    where = schema.describe_url(settings.database_url)
    if not result.changed:
        click.echo(f"{where}: already at revision {result.after}, nothing to do")
    elif result.before is None:
        click.echo(f"{where}: created the schema at revision {result.after}")
    else:
        click.echo(f"{where}: upgraded from revision {result.before} to {result.after}")


@db_group.command("current")
def current_command() -> None:
    """Print the database's revision and the newest one."""
    settings = Settings.from_env()
    try:
        current = schema.current_revision(settings.database_url)
    except OperationalError as exc:
        fail_unreachable(settings.database_url, exc)
    head = schema.head_revision()
    state = "up to date" if current == head else "run `promo-engine db upgrade`"
    click.echo(f"{schema.describe_url(settings.database_url)}: revision {current or 'none'} "
               f"(newest {head}; {state})")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the change does, e.g. 'add merchants'.")
@click.option("--database-url", default=None,
              help="Compare against this database (at head) instead of a temporary SQLite one.")
def revision_command(message: str, database_url: str | None) -> None:
    """For developers: write a migration for the models' changes since the newest revision."""
    path = schema.new_revision(message, database_url)
    if path is None:
        click.echo("the models match the newest revision: nothing to write")
    else:
        click.echo(f"wrote {path}; review it, then run tests/test_migrations.py")


def upgrade_or_exit(database_url: str) -> schema.UpgradeResult:
    """`schema.upgrade`, with an unreachable database reported in one line (exit 1)."""
    try:
        return schema.upgrade(database_url)
    except OperationalError as exc:
        fail_unreachable(database_url, exc)


def fail_unreachable(database_url: str, exc: OperationalError):
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    click.echo(f"promo-engine: cannot use the database {schema.describe_url(database_url)}: "
               f"{reason}", err=True)
    sys.exit(1)
