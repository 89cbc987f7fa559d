"""`promo-engine webhooks ...`: endpoints, their deliveries, and a dispatcher of its own."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click

from promo_engine.cli import main
from promo_engine.cli.clients import _app
from promo_engine.cli.metrics_port import serve_metrics
from promo_engine.ledger.webhook_outbox import TYPES

TIME_FORMAT = "%Y-%m-%d %H:%M:%SZ"


@main.group("webhooks")
def webhooks_group() -> None:
    """Signed webhooks: add, list and remove endpoints, look at deliveries and retry them,
    or run a dispatcher on its own."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--events", default=None, metavar="TYPES",
              help="Comma-separated types the endpoint wants [default: all, those added "
                   "later included]: " + ", ".join(TYPES) + ".")
@click.option("--json", "as_json", is_flag=True,
              help='Print exactly {"id": ..., "url": ..., "events": [...] or null (all), '
                   '"secret": ...}.')
def add_command(url: str, events: str | None, as_json: bool) -> None:
    """Add an endpoint; its signing secret is printed this once and cannot be shown again."""
    from promo_engine.webhooks.endpoints import (EndpointError, add_endpoint, check_url,
                                                 parse_events)
    try:
        check_url(url)
        parse_events(events)
    except EndpointError as exc:
        click.echo(f"promo-engine: webhooks add: {exc}", err=True)
        sys.exit(2)
    app = _app()
    with app.app_context():
        endpoint, secret = add_endpoint(url, events)
    if as_json:
        click.echo(json.dumps({"id": endpoint.id, "url": endpoint.url,
                               "events": list(endpoint.events) if endpoint.events else None,
                               "secret": secret}))
    else:
        click.echo(f"id: {endpoint.id}")
        click.echo(f"url: {endpoint.url}")
        click.echo(f"events: {_events(endpoint.events)}")
        click.echo(f"secret: {secret}")
        click.echo("Store the secret now (receivers verify signatures with it): it is kept "
                   "encrypted and cannot be shown again.", err=True)


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(as_json: bool) -> None:
    """List endpoints, removed ones included (never their secrets)."""
    from promo_engine.webhooks.endpoints import list_endpoints
    app = _app()
    with app.app_context():
        endpoints = list_endpoints()
    if as_json:
        click.echo(json.dumps([{"id": e.id, "url": e.url,
                                "events": list(e.events) if e.events else None,
                                "created_at": _iso(e.created_at),
                                "removed_at": _iso(e.removed_at)} for e in endpoints]))
        return
    for e in endpoints:
        state = f"removed {e.removed_at:{TIME_FORMAT}}" if e.removed_at else "active"
        click.echo(f"{e.id}\t{e.url}\t{_events(e.events)}\tcreated "
                   f"{e.created_at:{TIME_FORMAT}}\t{state}")


@webhooks_group.command("remove")
@click.argument("endpoint_id")
def remove_command(endpoint_id: str) -> None:
    """Remove an endpoint: nothing more is sent to it, its pending deliveries included."""
    from promo_engine.webhooks.endpoints import remove_endpoint
    app = _app()
    with app.app_context():
        dropped = remove_endpoint(endpoint_id)
    if dropped is None:
        click.echo(f"promo-engine: no active webhook endpoint {endpoint_id}", err=True)
        sys.exit(1)
    click.echo(f"removed {endpoint_id} ({dropped} pending "
               f"{'delivery' if dropped == 1 else 'deliveries'} not sent)")


@webhooks_group.command("deliveries")
@click.option("--failed", "failed_only", is_flag=True,
              help="Only deliveries given up (retry them with `webhooks retry ID`).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def deliveries_command(failed_only: bool, limit: int, as_json: bool) -> None:
    """List deliveries, newest first: id, type, endpoint, status, attempts, and when it was
    delivered, is tried next, or why it failed."""
    from promo_engine.ledger.extensions import db
    from promo_engine.webhooks.deliveries import list_deliveries
    app = _app()
    with app.app_context():
        found = list_deliveries(db.engine, failed_only=failed_only, limit=limit)
    if as_json:
        click.echo(json.dumps([{
            "id": d.id, "message_id": d.message_id, "endpoint_id": d.endpoint_id,
            "type": d.type, "status": d.status, "attempts": d.attempts,
            "created_at": _iso(d.created_at), "next_attempt_at": _iso(d.next_attempt_at),
            "last_attempt_at": _iso(d.last_attempt_at), "last_status": d.last_status,
            "last_error": d.last_error, "delivered_at": _iso(d.delivered_at)}
            for d in found]))
        return
    for d in found:
        if d.status == "delivered":
            detail = f"delivered {d.delivered_at:{TIME_FORMAT}}"
        elif d.status == "pending":
            detail = f"next attempt {d.next_attempt_at:{TIME_FORMAT}}" + (
                f"; last: {d.last_error}" if d.last_error else "")
        else:
            detail = f"last: {d.last_error or '-'}"
        click.echo(f"{d.id}\t{d.type}\t{d.endpoint_id}\t{d.status}\t"
                   f"{d.attempts} attempt{'' if d.attempts == 1 else 's'}\t"
                   f"created {d.created_at:{TIME_FORMAT}}\t{detail}")


@webhooks_group.command("retry")
@click.argument("delivery_id", type=int, required=False)
@click.option("--endpoint", "endpoint_id", default=None, metavar="ENDPOINT_ID",
              help="Instead of one delivery, every failed delivery of this endpoint (once "
                   "its receiver is back after an outage longer than the retry period).")
def retry_command(delivery_id: int | None, endpoint_id: str | None) -> None:
    """Send a failed delivery again, now (a retried delivery that fails again is failed
    again at once: one more attempt, not a new retry window)."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import utcnow
    from promo_engine.webhooks.deliveries import retry, retry_failed
    if (delivery_id is None) == (endpoint_id is None):
        click.echo("promo-engine: webhooks retry: give a delivery ID or --endpoint "
                   "ENDPOINT_ID (not both)", err=True)
        sys.exit(2)
    app = _app()
    if endpoint_id is not None:
        with app.app_context():
            count = retry_failed(db.engine, endpoint_id, utcnow())
        if count is None:
            click.echo(f"promo-engine: no active webhook endpoint {endpoint_id}", err=True)
            sys.exit(1)
        click.echo(f"{count} failed {'delivery' if count == 1 else 'deliveries'} of "
                   f"{endpoint_id} pending again, due now")
        return
    with app.app_context():
        result = retry(db.engine, delivery_id, utcnow())
    problem = {"missing": f"no delivery {delivery_id}",
               "delivered": f"delivery {delivery_id} was delivered already",
               "removed": f"delivery {delivery_id}: its endpoint was removed"}.get(result)
    if problem:
        click.echo(f"promo-engine: {problem}", err=True)
        sys.exit(1)
    click.echo(f"delivery {delivery_id} is pending again, due now")


@webhooks_group.command("run", epilog="""\b
Environment: DATABASE_URL, SECRET_KEY (the one the endpoints were
  added with), and optionally
  PROMO_WEBHOOK_RETRY_HOURS  how long deliveries are retried before
      they are marked failed (default 24)""")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics on this port (GET /metrics). [default: off]")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address to serve the metrics on.")
def run_command(metrics_port: int | None, metrics_host: str) -> None:
    """Send webhooks until SIGTERM or SIGINT. Every `promo-engine scheduler` (and so every
    `serve`) runs a dispatcher too; run as many as you like: each delivery is claimed by
    one at a time."""
    from promo_engine.cli.scheduler import LOG_FORMAT
    from promo_engine.ledger.extensions import db
    app = _app()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # (after the schema check's)
    dispatcher = dispatcher_for(app)
    serve_metrics(app, metrics_host, metrics_port, "webhooks run")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo("promo-engine: webhooks: dispatcher started", err=True)
    dispatcher.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        dispatcher.stop()
        with app.app_context():
            db.engine.dispose()
    t = dispatcher.totals
    click.echo(f"promo-engine: webhooks: dispatcher stopped after {t.delivered} delivered, "
               f"{t.retrying} to retry, {t.failed} failed", err=True)


def dispatcher_for(app, **options):
    """A dispatcher for `app`'s database, SECRET_KEY and metrics (not started)."""
    from promo_engine.ledger.extensions import db
    from promo_engine.metrics import metrics
    from promo_engine.webhooks.dispatcher import Dispatcher
    from promo_engine.webhooks.retry_schedule import schedule_for
    options.setdefault("schedule", schedule_for(app.config["PROMO_SETTINGS"]))
    with app.app_context():
        engine = db.engine
    return Dispatcher(engine, app.config["SECRET_KEY"], metrics=metrics(app), **options)


def _events(events: tuple[str, ...] | None) -> str:
    return ",".join(events) if events else "all"


def _iso(value) -> str | None:
    from promo_engine.ledger.responses import iso
    return None if value is None else iso(value)
