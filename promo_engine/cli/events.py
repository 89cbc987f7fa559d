"""`promo-engine events send|quote` and `promo-engine points`: signed requests from a shell."""
from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timezone

import click

from promo_engine.cli import main

url_option = click.option("--url", envvar="PROMO_URL", default="http://127.0.0.1:8000",
                          show_default=True, help="base URL of the service (env PROMO_URL)")
key_option = click.option("--key", envvar="PROMO_KEY_ID", required=True,
                          help="client key id (env PROMO_KEY_ID)")
secret_option = click.option("--secret", envvar="PROMO_SECRET", required=True,
                             help="client secret (env PROMO_SECRET)")


def _read_event(source: str) -> dict:
    text = sys.stdin.read() if source == "-" else source
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="EVENT") from None
    if not isinstance(event, dict):
        raise click.BadParameter("must be a JSON object", param_hint="EVENT")
    return event


def _show(reply) -> None:
    click.echo(f"HTTP {reply.status}" + (" (replayed)" if reply.headers.get("Idempotent-Replayed") else ""),
               err=True)
    click.echo(json.dumps(reply.body, indent=2, ensure_ascii=False) if reply.body is not None else reply.text)
    if reply.status >= 400:
        sys.exit(1)


@main.group()
def events() -> None:
    """Send signed events to a running service."""


@events.command("send")
@click.argument("event")
@url_option
@key_option
@secret_option
def send(event: str, url: str, key: str, secret: str) -> None:
    """Post EVENT (JSON, or - for standard input) to /v1/events.

    A missing event_id is generated and a missing occurred_at is set to now.
    """
    from promo_engine.client import PromoClient
    body = _read_event(event)
    body.setdefault("event_id", "evt_" + uuid.uuid4().hex[:16])
    body.setdefault("occurred_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _show(PromoClient(url, key, secret).send_event(body))


@events.command("quote")
@click.argument("event")
@url_option
@key_option
@secret_option
@click.option("--explain", is_flag=True,
              help="also list every candidate campaign and why it applied or not")
def quote(event: str, url: str, key: str, secret: str, explain: bool) -> None:
    """Post EVENT to /v1/quote: what it would earn now, recording nothing."""
    from promo_engine.client import PromoClient
    body = _read_event(event)
    body.setdefault("occurred_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _show(PromoClient(url, key, secret).quote(body, explain=explain))


@main.command("points")
@click.argument("user_id")
@click.option("--limit", type=click.IntRange(1, 500), default=None)
@url_option
@key_option
@secret_option
def points(user_id: str, limit: int | None, url: str, key: str, secret: str) -> None:
    """Show USER_ID's points balance and latest ledger entries."""
    from promo_engine.client import PromoClient
    _show(PromoClient(url, key, secret).points(user_id, limit))
