"""`promo-engine reconcile`: rebuild campaign counters from the ledger once."""
from __future__ import annotations

import sys

import click

from promo_engine.cli import main
from promo_engine.cli.clients import _app


@main.command("reconcile")
@click.option("--offline", is_flag=True,
              help="Without REDIS_URL: rebuild the database's usage rows too. Only while no "
                   "worker runs (after a period with Redis, before starting without it).")
def reconcile_command(offline: bool) -> None:
    """Rebuild every campaign's budget and redemption counters from the reward rows.

    With REDIS_URL the leading scheduler does this every PROMO_RECONCILE_SECONDS; run it by
    hand after restoring Redis from a backup, or before switching workers between running
    with and without Redis (see docs/runbook.md)."""
    from promo_engine.campaigns.reconcile import reconcile
    from promo_engine.coordination.reservations import NotReady
    from promo_engine.service import promo_service
    app = _app()
    with app.app_context():
        service = promo_service(app)
        if service.reservations is None and not offline:
            click.echo("promo-engine: reconcile: without REDIS_URL the database's counters are "
                       "the guard itself; pass --offline, with every worker stopped, to "
                       "rebuild them", err=True)
            sys.exit(2)
        try:
            done = reconcile(service.reservations, offline=offline)
        except NotReady as exc:
            click.echo(f"promo-engine: reconcile: {exc}", err=True)
            sys.exit(1)
    click.echo(f"reconciled {done.campaigns} campaigns"
               + (f", {done.counters} Redis counters" if service.reservations is not None else ""))
