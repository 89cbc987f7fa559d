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
key_option = click.option("--key", envvar="PROMO_KEY_ID",
                          help="client key id (env PROMO_KEY_ID)  [required]")
secret_option = click.option("--secret", envvar="PROMO_SECRET",
                             help="client secret (env PROMO_SECRET)  [required]")
timeout_option = click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10,
                              show_default=True, help="seconds to wait for the answer")


def fail(message: str, status: int = 1) -> None:
    click.echo(f"promo-engine: {message}", err=True)
    sys.exit(status)


OPTION_OF = {"PROMO_KEY_ID": "--key", "PROMO_SECRET": "--secret"}


def _client(url: str, key: str | None, secret: str | None, timeout: float):
    """The signed client, or one line saying what is missing (exit 2)."""
    from promo_engine.client import BadUrl, PromoClient
    missing = [name for name, value in (("PROMO_KEY_ID", key), ("PROMO_SECRET", secret))
               if not value]
    if missing:
        fail(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: export "
             f"the key id and secret of an API client (`promo-engine clients create NAME` "
             f"creates one), or pass {' and '.join(OPTION_OF[name] for name in missing)}", 2)
    try:
        return PromoClient(url, key, secret, timeout=timeout)
    except BadUrl as exc:
        fail(f"--url or PROMO_URL: {exc}", 2)


def _call(request, *args, **kwargs):
    """The reply of a request to the service, or one line saying it could not be reached."""
    from promo_engine.client import Unreachable
    try:
        return request(*args, **kwargs)
    except Unreachable as exc:
        if exc.timed_out:
            fail(f"{exc}; is it busy? Wait longer with --timeout, or set --url or PROMO_URL.")
        fail(f"{exc}; is `promo-engine serve` running? Set --url or PROMO_URL.")


def _now() -> str:
    """Now, as the quickstart writes times (`date -u +%Y-%m-%dT%H:%M:%SZ`)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_event(source: str) -> dict:
    text = sys.stdin.read() if source == "-" else source
    try:
        event = json.loads(text)
    except ValueError as exc:
        fail(f"EVENT is not JSON: {exc}", 2)
    if not isinstance(event, dict):
        fail("EVENT must be a JSON object, like '{\"type\": \"activation\", "
             "\"user_id\": \"alice\"}'", 2)
    return event


def _refused_key_hint(reply, url: str) -> str | None:
    """What to do when the service does not know the client's key or secret."""
    error = (reply.body or {}).get("error") if isinstance(reply.body, dict) else None
    if reply.status == 401 and isinstance(error, dict) and \
            error.get("message") == "invalid key or signature":
        return (f"{url} does not know this PROMO_KEY_ID and PROMO_SECRET: create the client "
                f"where the server keeps its data (`promo-engine clients create NAME` in its "
                f"folder, or with its DATABASE_URL)")
    return None


def _show(reply, hint: str | None = None) -> None:
    click.echo(f"HTTP {reply.status}" + (" (replayed)" if reply.headers.get("Idempotent-Replayed") else ""),
               err=True)
    click.echo(json.dumps(reply.body, indent=2, ensure_ascii=False) if reply.body is not None else reply.text)
    if reply.status >= 400:
        if hint:
            click.echo(f"promo-engine: {hint}", err=True)
        sys.exit(1)


@main.group()
def events() -> None:
    """Send signed events to a running service."""


@events.command("send")
@click.argument("event")
@url_option
@key_option
@secret_option
@timeout_option
def send(event: str, url: str, key: str | None, secret: str | None, timeout: float) -> None:
    """Post EVENT (JSON, or - for standard input) to /v1/events.

    A missing event_id is generated and a missing occurred_at is set to now.
    """
    body = _read_event(event)
    client = _client(url, key, secret, timeout)
    body.setdefault("event_id", "evt_" + uuid.uuid4().hex[:16])
    filled = "occurred_at" not in body
    body.setdefault("occurred_at", _now())
    reply = _call(client.send_event, body)
    hint = _refused_key_hint(reply, client.base_url)
    if filled and reply.status == 409:
        hint = (f"occurred_at was not given, so it was set to now ({body['occurred_at']}); "
                f"to replay the event, send it with the occurred_at it was recorded with")
    _show(reply, hint)


@events.command("quote")
@click.argument("event")
@url_option
@key_option
@secret_option
@timeout_option
@click.option("--explain", is_flag=True,
              help="also list every candidate campaign and why it applied or not")
def quote(event: str, url: str, key: str | None, secret: str | None, timeout: float,
          explain: bool) -> None:
    """Post EVENT to /v1/quote: what it would earn now, recording nothing."""
    body = _read_event(event)
    client = _client(url, key, secret, timeout)
    body.setdefault("occurred_at", _now())
    reply = _call(client.quote, body, explain=explain)
    _show(reply, _refused_key_hint(reply, client.base_url))


@main.command("points")
@click.argument("user_id")
@click.option("--limit", type=click.IntRange(1, 500), default=None)
@url_option
@key_option
@secret_option
@timeout_option
def points(user_id: str, limit: int | None, url: str, key: str | None,
           secret: str | None, timeout: float) -> None:
    """Show USER_ID's points balance and latest ledger entries."""
    client = _client(url, key, secret, timeout)
    reply = _call(client.points, user_id, limit)
    _show(reply, _refused_key_hint(reply, client.base_url))
