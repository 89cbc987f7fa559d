"""`promo-engine campaigns validate|apply`: campaign YAML files checked, then stored."""
from __future__ import annotations

import os
import sys

import click

from . import main


@main.group()
def campaigns() -> None:
    """Check campaign YAML files and apply them to the database."""


@campaigns.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Check files or folders; print each problem as file:line: message.

    Needs no database and writes nothing; exit status 1 when there is any problem.
    """
    from ..campaign_files import load_paths
    from ..config import check_currency, check_timezone
    from ..registry import build_registry

    # Only what validation needs: reading the full Settings would create a secret file.
    timezone = check_timezone(os.environ.get("PROMO_TIMEZONE", "Asia/Shanghai"))
    currency = check_currency(os.environ.get("PROMO_CURRENCY", "CNY"))
    result = load_paths(paths, registry=build_registry(), currency=currency,
                        default_timezone=timezone)
    if result.problems:
        _print_problems(result.problems)
        sys.exit(1)
    click.echo(f"{_count(len(result.campaigns), 'campaign')} in "
               f"{_count(len(result.files), 'file')} "
               f"{'is' if len(result.campaigns) == 1 else 'are'} valid")


@campaigns.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would change and write nothing.")
@click.option("--prune", is_flag=True,
              help="Retire the YAML campaigns that are not in these files.")
def apply(paths: tuple[str, ...], dry_run: bool, prune: bool) -> None:
    """Validate every file, then create or update the campaigns by id in one transaction.

    Nothing is written when any file has a problem. Applying the same files again changes
    nothing.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from ..app import create_app
    from ..campaign_files import load_paths
    from ..campaign_store import ApplyError, ApplyReport, apply_campaigns
    from ..config import Settings
    from ..extensions import db
    from ..registry import build_registry
    from ..schema import upgrade

    settings = Settings.from_env()
    registry = build_registry()
    result = load_paths(paths, registry=registry, currency=settings.currency,
                        default_timezone=settings.timezone)
    if result.problems:
        _print_problems(result.problems)
        click.echo("nothing was applied", err=True)
        sys.exit(1)

    app = create_app(settings, registry=registry)
    try:
        with app.app_context():
            try:
                if dry_run and not _schema_exists(settings.database_url, db.engine):
                    # An empty database: everything would be created, and even creating
                    # the schema would be a write.
                    report = ApplyReport(created=[c.campaign.id for c in result.campaigns])
                else:
                    if not dry_run:
                        upgrade(settings.database_url)
                    report = apply_campaigns(result.campaigns, prune=prune, dry_run=dry_run)
            finally:
                db.session.remove()
                db.engine.dispose()
    except ApplyError as exc:
        click.echo(f"promo-engine: {exc}; nothing was applied", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        click.echo(f"promo-engine: database error: {reason}; nothing was applied", err=True)
        sys.exit(1)

    actions = {campaign_id: "created" for campaign_id in report.created}
    actions.update({campaign_id: "updated" for campaign_id in report.updated})
    actions.update({campaign_id: "unchanged" for campaign_id in report.unchanged})
    for loaded in result.campaigns:
        click.echo(f"{actions[loaded.campaign.id]} {loaded.campaign.id}")
    for campaign_id in report.retired:
        click.echo(f"retired {campaign_id}")
    summary = (f"{len(report.created)} created, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged")
    if prune:
        summary += f", {len(report.retired)} retired"
    click.echo(summary)
    if dry_run:
        click.echo("dry run: nothing was written")


def _print_problems(problems) -> None:
    for problem in problems:
        click.echo(str(problem))
    files = len({problem.path for problem in problems})
    click.echo(f"{_count(len(problems), 'problem')} in {_count(files, 'file')}", err=True)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _schema_exists(database_url: str, engine) -> bool:
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or not os.path.exists(path):
            return False  # connecting would create the file
    return inspect(engine).has_table("campaigns")
