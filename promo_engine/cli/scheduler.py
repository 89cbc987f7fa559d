"""`promo-engine scheduler`: the campaign scheduler alone, until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click
from sqlalchemy.exc import OperationalError

from promo_engine.campaigns.scheduler import LEASE_KEY_ENV, LEASE_MS_ENV, LeaseSettings
from promo_engine.cli import main
from promo_engine.cli.db import fail_unreachable
from promo_engine.config import Settings
from promo_engine.ledger import schema

LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
PARENT_CHECK_SECONDS = 0.5


@main.command("scheduler", epilog=f"""\b
Environment: DATABASE_URL, REDIS_URL (required), and optionally
  {LEASE_MS_ENV}  lease time to live in ms (default 5000): a dead
      leader's successor takes over within about this long
  {LEASE_KEY_ENV}  Redis key of the lease (default
      PROMO_REDIS_PREFIX + ":scheduler:leader", one leader per program)""")
@click.option("--embedded", is_flag=True, hidden=True,
              help="Started by `promo-engine serve`: without Redis, act alone; stop when "
                   "the server stops.")
def scheduler_command(embedded: bool) -> None:
    """Open and close campaigns on schedule. Run as many as you like (on several hosts):
    through a lease in Redis exactly one acts at a time, and another takes over when it dies.
    Each also sends webhooks (as `promo-engine webhooks run` does)."""
    settings = Settings.from_env()
    lease_settings = LeaseSettings.from_env()
    if not settings.redis_url and not embedded:
        click.echo("promo-engine: scheduler: REDIS_URL is not set. Several schedulers "
                   "coordinate through Redis; without Redis run `promo-engine serve`, which "
                   "runs the single scheduler itself.", err=True)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job otherwise
    if not embedded:
        _require_current_schema(settings.database_url)

    from promo_engine.app import create_app
    from promo_engine.campaigns.scheduler import CampaignScheduler, redis_lease
    from promo_engine.core.registry import build_registry, get_plugin_manager
    pm = get_plugin_manager()
    app = create_app(settings, registry=build_registry(pm))
    lease = redis_lease(settings.redis_url, lease_settings) if settings.redis_url else None
    scheduler = CampaignScheduler(app, pm=pm, lease=lease)
    from promo_engine.cli.webhooks import dispatcher_for
    dispatcher = dispatcher_for(app)  # every scheduler sends webhooks too (SKIP LOCKED claims)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    parent = os.getppid()
    how = (f"competing for the lease {lease_settings.key} ({lease_settings.ttl_ms} ms) as "
           f"{lease.owner}" if lease is not None else "acting alone (no REDIS_URL)")
    click.echo(f"promo-engine: scheduler started, {how}", err=True)
    scheduler.start()
    dispatcher.start()
    try:
        while not stop.wait(PARENT_CHECK_SECONDS):
            if embedded and os.getppid() != parent:  # the server died without stopping us
                click.echo("promo-engine: scheduler: the server is gone; stopping", err=True)
                break
    finally:
        scheduler.stop()
        dispatcher.stop()
        with app.app_context():
            from promo_engine.ledger.extensions import db
            db.engine.dispose()
    click.echo("promo-engine: scheduler stopped", err=True)


def _require_current_schema(database_url: str) -> None:
    try:
        current = schema.current_revision(database_url)
    except OperationalError as exc:
        fail_unreachable(database_url, exc)
    if current != schema.head_revision():
        click.echo(f"promo-engine: the database {schema.describe_url(database_url)} is at "
                   f"schema revision {current or 'none'}; run `promo-engine db upgrade` first",
                   err=True)
        sys.exit(1)
