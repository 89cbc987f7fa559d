"""`promo-engine denylist ...`: users and devices that earn no campaign rewards (base points
still), every change audited with the operator's login as `cli:<login>`.

Running servers see a change within a few seconds (each worker checks the list for changes
every 2 s), so nothing here needs to reach them.
"""
from __future__ import annotations

import json
import sys

import click

from promo_engine.cli import main
from promo_engine.cli.campaigns import _table, operator

SPEC = "user:ID|device:ID"
NOTHING = "—"


@main.group("denylist")
def denylist_group() -> None:
    """Users and devices that earn no campaign rewards: add, remove, list, history."""


def _spec(command: str, spec: str) -> tuple[str, str]:
    from promo_engine.ledger.denylist import DenylistError, parse_spec
    try:
        return parse_spec(spec)
    except DenylistError as exc:
        _fail(command, str(exc), status=2)


def _fail(command: str, message: str, *, status: int = 1):
    click.echo(f"promo-engine: denylist {command}: {message}", err=True)
    sys.exit(status)


def _change(command: str, act) -> None:
    """Run `act(session)` in one transaction on DATABASE_URL; a refusal is one line, exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from promo_engine.cli.clients import _app
    from promo_engine.ledger.denylist import DenylistError
    from promo_engine.ledger.extensions import db
    app = _app()
    with app.app_context():
        try:
            act(db.session)
            db.session.commit()
        except DenylistError as exc:
            db.session.rollback()
            _fail(command, str(exc))
        except SQLAlchemyError as exc:
            db.session.rollback()
            _fail(command, f"database error: {getattr(exc, 'orig', None) or exc}")
        finally:
            db.session.remove()
            db.engine.dispose()


@denylist_group.command("add", short_help="Deny a user or a device campaign rewards.")
@click.argument("spec", metavar=SPEC)
@click.option("--reason", default="", help="Why, for the audit log.")
def add_command(spec: str, reason: str) -> None:
    """Deny a user or a device campaign rewards (base points still) from within a few
    seconds on every server. Adding one that is listed already gives it the new reason."""
    from promo_engine.ledger import denylist
    kind, value = _spec("add", spec)
    _change("add", lambda session: denylist.add(session, kind, value, reason=reason,
                                                actor=operator()))
    click.echo(f"added {kind}:{value}" + (f" ({reason.strip()})" if reason.strip() else ""))


@denylist_group.command("remove", short_help="Let a user or a device earn again.")
@click.argument("spec", metavar=SPEC)
@click.option("--reason", default="", help="Why, for the audit log.")
def remove_command(spec: str, reason: str) -> None:
    """Take a user or a device off the denylist: it earns campaign rewards again from
    within a few seconds."""
    from promo_engine.ledger import denylist
    kind, value = _spec("remove", spec)
    _change("remove", lambda session: denylist.remove(session, kind, value, reason=reason,
                                                      actor=operator()))
    click.echo(f"removed {kind}:{value}")


def _read(read):
    from promo_engine.cli.clients import _app
    from promo_engine.config import Settings
    from promo_engine.ledger.extensions import db
    app = _app()
    with app.app_context():
        try:
            return read(db.session), Settings.from_env().timezone
        finally:
            db.session.remove()
            db.engine.dispose()


@denylist_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_command(as_json: bool) -> None:
    """Who is on the denylist, why, since when (in the program's time zone) and added by
    whom; the latest added first."""
    from promo_engine.core.campaign_views import local_time, rfc3339_local
    from promo_engine.ledger.denylist import entries
    rows, zone = _read(lambda session: [
        (e.kind, e.value, e.reason, e.added_by, e.added_at) for e in entries(session)])
    if as_json:
        click.echo(json.dumps([{"kind": kind, "id": value, "reason": reason,
                                "added_by": actor, "added_at": rfc3339_local(at, zone)}
                               for kind, value, reason, actor, at in rows],
                              indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("the denylist is empty")
        return
    click.echo(f"times in {zone}")
    for line in _table(["WHO", "REASON", "ADDED", "BY"], [
            [f"{kind}:{value}", reason or NOTHING,
             local_time(at, zone).strftime("%Y-%m-%d %H:%M:%S"), actor]
            for kind, value, reason, actor, at in rows]):
        click.echo(line)


@denylist_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def history_command(as_json: bool) -> None:
    """Every change to the denylist, oldest first: when (in the program's time zone), what,
    who made it and why."""
    from promo_engine.core.campaign_views import local_time, rfc3339_local
    from promo_engine.ledger.denylist import history
    rows, zone = _read(lambda session: [
        (c.at, c.action, c.kind, c.value, c.actor, c.reason) for c in history(session)])
    if as_json:
        click.echo(json.dumps([{"at": rfc3339_local(at, zone), "action": action, "kind": kind,
                                "id": value, "actor": actor, "reason": reason}
                               for at, action, kind, value, actor, reason in rows],
                              indent=2, ensure_ascii=False))
        return
    click.echo(f"times in {zone}")
    for line in _table(["AT", "CHANGE", "WHO", "BY", "REASON"], [
            [local_time(at, zone).strftime("%Y-%m-%d %H:%M:%S"), action, f"{kind}:{value}",
             actor, reason or NOTHING]
            for at, action, kind, value, actor, reason in rows]):
        click.echo(line)
