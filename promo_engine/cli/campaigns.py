"""`promo-engine campaigns ...`: campaign YAML files checked and stored, and the stored
campaigns listed, paused, resumed and their history shown.

Every change made here is audited with the operator's login as `cli:<login>`.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from contextlib import contextmanager

import click

from promo_engine.cli import first_line, main

APPLY_HINT = "promo-engine campaigns apply campaigns/"


@main.group()
def campaigns() -> None:
    """Check, apply, list, pause and resume campaigns."""


@campaigns.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Check files or folders; print each problem as file:line: message.

    Needs no database and writes nothing; exit status 1 when there is any problem.
    """
    from promo_engine.campaigns.files import load_paths
    from promo_engine.config import check_currency, check_timezone
    from promo_engine.core.registry import build_registry

    # Only what validation needs: reading the full Settings would create a secret file.
    timezone = check_timezone(os.environ.get("PROMO_TIMEZONE", "Asia/Shanghai"))
    currency = check_currency(os.environ.get("PROMO_CURRENCY", "CNY"))
    result = load_paths(paths, registry=build_registry(), currency=currency,
                        default_timezone=timezone)
    if result.problems:
        _print_problems(result.problems)
        sys.exit(1)
    policy = " and the risk policy" if result.risk_policy is not None else ""
    click.echo(f"{_count(len(result.campaigns), 'campaign')}{policy} in "
               f"{_count(len(result.files), 'file')} "
               f"{'is' if len(result.campaigns) == 1 and not policy else 'are'} valid")


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

    from promo_engine.app import create_app
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import ApplyError, ApplyReport, apply_campaigns
    from promo_engine.config import Settings
    from promo_engine.core.registry import build_registry
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.schema import upgrade

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
                    report = ApplyReport(created=[c.campaign.id for c in result.campaigns],
                                         risk_policy=None if result.risk_policy is None
                                         else "created")
                else:
                    if not dry_run:
                        upgrade(settings.database_url)
                    report = apply_campaigns(result.campaigns, prune=prune, dry_run=dry_run,
                                             now=_clock(), actor=operator(),
                                             risk_policy=result.risk_policy)
            finally:
                db.session.remove()
                db.engine.dispose()
    except ApplyError as exc:
        click.echo(f"promo-engine: {exc}; nothing was applied", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        click.echo(f"promo-engine: database error: {first_line(exc)}; nothing was applied",
                   err=True)
        sys.exit(1)

    actions = {campaign_id: "created" for campaign_id in report.created}
    actions.update({campaign_id: "updated" for campaign_id in report.updated})
    actions.update({campaign_id: "unchanged" for campaign_id in report.unchanged})
    for loaded in result.campaigns:
        click.echo(f"{actions[loaded.campaign.id]} {loaded.campaign.id}")
    for campaign_id in report.retired:
        click.echo(f"retired {campaign_id}")
    if report.risk_policy is not None:
        click.echo(f"risk policy: {report.risk_policy}")
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


# --- steering: list, pause, resume, history ---------------------------------------------------

class Refused(Exception):
    """A steering command that cannot be carried out; the message says why."""


def operator() -> str:
    """The audit actor for this command line: `cli:<login>`, or `cli` when the login
    cannot be told (no such user in a container, say)."""
    try:
        login = getpass.getuser().strip()
    except Exception:  # OSError, KeyError: getpass gives no single type for "unknown"
        login = ""
    return f"cli:{login[:100]}" if login else "cli"


def _clock():
    from promo_engine.ledger.models import utcnow
    return utcnow()


@contextmanager
def _database(settings):
    """An app context on DATABASE_URL, or None when that database holds no campaigns schema
    yet (nothing has been applied; an absent SQLite file is not created)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from promo_engine.app import create_app
    from promo_engine.cli.db import fail_unreachable
    from promo_engine.core.registry import build_registry
    from promo_engine.ledger import schema
    from promo_engine.ledger.extensions import db

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and (
            not url.database or url.database == ":memory:" or not os.path.exists(url.database)):
        yield None
        return
    try:
        current = schema.current_revision(settings.database_url)
    except OperationalError as exc:
        fail_unreachable(settings.database_url, exc)
    if current is None:
        yield None
        return
    if current != schema.head_revision():
        click.echo(f"promo-engine: the database {schema.describe_url(settings.database_url)} "
                   f"is at schema revision {current}; run `promo-engine db upgrade` first",
                   err=True)
        sys.exit(1)
    app = create_app(settings, registry=build_registry())
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def _fail(message: str) -> None:
    click.echo(f"promo-engine: {message}", err=True)
    sys.exit(1)


def _campaign_record(app, campaign_id: str):
    """The campaign's record in `_database`'s app, or exit 1 with one line saying why not."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    if app is None:
        _fail(f"no campaign {campaign_id}: nothing has been applied yet ({APPLY_HINT})")
    record = db.session.get(CampaignRecord, campaign_id)
    if record is None:
        _fail(f"no campaign {campaign_id}; `promo-engine campaigns list` shows them")
    return record


@contextmanager
def _database_errors():
    from sqlalchemy.exc import SQLAlchemyError
    try:
        yield
    except SQLAlchemyError as exc:
        _fail(f"database error: {first_line(exc)}")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [headers, *rows]]


@campaigns.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["scheduled", "open", "paused", "closed", "retired"]),
              help="Only campaigns in this status (may be given more than once).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_command(statuses: tuple[str, ...], as_json: bool) -> None:
    """List the campaigns by id: type, status, local window, budget used / left and
    redemptions."""
    from sqlalchemy import select

    from promo_engine.config import Settings
    from promo_engine.core.campaign_views import (budget_text, budget_use, max_redemptions,
                                                  redemptions_text, rfc3339_local, window_text)
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    from promo_engine.ledger.usage import current_usage
    from promo_engine.service import promo_service

    settings = Settings.from_env()
    rows = []
    with _database_errors(), _database(settings) as app:
        if app is not None:
            query = select(CampaignRecord).order_by(CampaignRecord.id)
            if statuses:
                query = query.where(CampaignRecord.status.in_(statuses))
            records = db.session.execute(query).scalars().all()
            usage = current_usage(db.session, [record.id for record in records],
                                  promo_service(app).reservations)
            rows = [(record, usage[record.id]) for record in records]

    if as_json:
        listed = []
        for record, (spent, redemptions) in rows:
            zone = record.spec.get("timezone", settings.timezone)
            use = budget_use(record.spec, spent, settings.currency)
            listed.append({
                "id": record.id, "name": record.name, "type": record.type,
                "status": record.status, "source": record.source, "timezone": zone,
                "starts_at": rfc3339_local(record.starts_at, zone),
                "ends_at": rfc3339_local(record.ends_at, zone),
                "budget": use.as_json() if use is not None else None,
                "redemptions": redemptions,
                "max_redemptions": max_redemptions(record.spec)})
        click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no {' or '.join(statuses)} campaigns" if statuses
                   else f"no campaigns yet: {APPLY_HINT}")
        return
    table = []
    for record, (spent, redemptions) in rows:
        zone = record.spec.get("timezone", settings.timezone)
        table.append([record.id, record.type, record.status,
                      window_text(record.starts_at, record.ends_at, zone),
                      budget_text(budget_use(record.spec, spent, settings.currency)),
                      redemptions_text(redemptions, max_redemptions(record.spec))])
    for line in _table(["ID", "TYPE", "STATUS", "WINDOW", "BUDGET USED / LEFT", "REDEMPTIONS"],
                       table):
        click.echo(line)


def _reason(ctx, param, value):
    value = (value or "").strip()
    if param.required and not value:
        raise click.BadParameter("must not be empty: say why, for the audit log")
    return value


@campaigns.command()
@click.argument("campaign_id", metavar="ID")
@click.option("--reason", required=True, callback=_reason,
              help="Why, for the audit log (required).")
def pause(campaign_id: str, reason: str) -> None:
    """Stop a scheduled or open campaign from giving rewards (within about a second on
    running servers) until it is resumed."""
    from promo_engine.campaigns.lifecycle import PAUSED, transition

    def act(session, now):
        return transition(session, campaign_id, PAUSED, actor=operator(), reason=reason,
                          now=now)

    done, _ = _steer(campaign_id, act, "pause")
    click.echo(f"paused {campaign_id} (was {done.from_status})")


@campaigns.command()
@click.argument("campaign_id", metavar="ID")
@click.option("--reason", default="", callback=_reason, help="Why, for the audit log.")
def resume(campaign_id: str, reason: str) -> None:
    """Undo a pause: the campaign goes back to where its dates put it now (open,
    scheduled or closed)."""
    from promo_engine.campaigns.lifecycle import CLOSED, SCHEDULED
    from promo_engine.campaigns.lifecycle import resume as resume_campaign
    from promo_engine.core.campaign_views import local_text

    def act(session, now):
        return resume_campaign(session, campaign_id, actor=operator(), reason=reason, now=now)

    done, (starts_at, ends_at, zone) = _steer(campaign_id, act, "resume")
    note = {SCHEDULED: f": opens {local_text(starts_at, zone)} {zone}",
            CLOSED: f": ended {local_text(ends_at, zone)} {zone}"}.get(done.to_status, "")
    click.echo(f"resumed {campaign_id} (now {done.to_status}{note})")


def _steer(campaign_id: str, act, verb: str):  # verb: "pause" or "resume"
    """Run `act(session, now)` (a lifecycle transition) in one transaction; exit 1 with the
    reason when it changes nothing. Returns the transition and the campaign's
    (starts_at, ends_at, timezone)."""
    from sqlalchemy import select

    from promo_engine.campaigns.lifecycle import PAUSED
    from promo_engine.config import Settings
    from promo_engine.ledger.database import run_in_transaction
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord, ProgramState
    from promo_engine.ledger.program_state import ensure_program_state

    settings = Settings.from_env()
    with _database_errors(), _database(settings) as app:
        if app is None:
            _fail(f"no campaign {campaign_id}: nothing has been applied yet ({APPLY_HINT})")
        session, now = db.session, _clock()

        def work():
            # The program state row first, as apply and the scheduler take their locks.
            ensure_program_state(session)
            session.execute(select(ProgramState.id).where(ProgramState.id == 1)
                            .with_for_update())
            done = act(session, now)
            row = session.execute(
                select(CampaignRecord.status, CampaignRecord.starts_at, CampaignRecord.ends_at,
                       CampaignRecord.spec).where(CampaignRecord.id == campaign_id)).first()
            if row is None:
                raise Refused(f"no campaign {campaign_id}; `promo-engine campaigns list` "
                              "shows them")
            if done is None:
                if verb == "pause":
                    raise Refused(f"campaign {campaign_id} is already paused"
                                  if row.status == PAUSED else
                                  f"campaign {campaign_id} is {row.status}; only scheduled or "
                                  "open campaigns can be paused")
                raise Refused(f"campaign {campaign_id} is {row.status}; only paused campaigns "
                              "can be resumed")
            return done, (row.starts_at, row.ends_at,
                          row.spec.get("timezone", settings.timezone))

        try:
            return run_in_transaction(session, work)
        except Refused as exc:
            _fail(str(exc))


@campaigns.command()
@click.argument("campaign_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def history(campaign_id: str, as_json: bool) -> None:
    """Every status change of a campaign, oldest first: when (in the campaign's time
    zone), from and to, who, and why."""
    from sqlalchemy import select

    from promo_engine.config import Settings
    from promo_engine.core.campaign_views import NOTHING, local_time, rfc3339_local
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit

    settings = Settings.from_env()
    with _database_errors(), _database(settings) as app:
        record = _campaign_record(app, campaign_id)
        zone = record.spec.get("timezone", settings.timezone)
        audit = db.session.scalars(select(CampaignAudit)
                                   .where(CampaignAudit.campaign_id == campaign_id)
                                   .order_by(CampaignAudit.id)).all()

    if as_json:
        click.echo(json.dumps([{"at": rfc3339_local(row.at, zone), "from": row.from_status,
                                "to": row.to_status, "actor": row.actor, "reason": row.reason}
                               for row in audit], indent=2, ensure_ascii=False))
        return
    click.echo(f"{campaign_id}: times in {zone}")
    rows = [[local_time(row.at, zone).strftime("%Y-%m-%d %H:%M:%S"),
             f"{row.from_status or NOTHING} → {row.to_status}", row.actor,
             row.reason or NOTHING] for row in audit]
    for line in _table(["AT", "CHANGE", "ACTOR", "REASON"], rows):
        click.echo(line)
