"""Webhook endpoints: where deliveries go, which types each wants, and its signing secret.

A secret is shown once, when the endpoint is added, and stored only as Fernet ciphertext
keyed from SECRET_KEY, as API client secrets are (`ledger/api_clients.py`): a database dump
alone does not let anyone sign webhooks. Removing an endpoint keeps its row and its
deliveries' history; its pending deliveries are never sent. Every process writing the
outbox rereads the endpoints at least every few seconds (`webhook_outbox.directory`), so an
endpoint added or removed takes effect everywhere within that time, here at once.

These functions run in an app context (the app's database session and SECRET_KEY).
"""
from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from flask import current_app
from sqlalchemy import select, update

from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.api_clients import encrypt_secret, secret_cipher
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import WebhookDelivery, WebhookEndpoint, utcnow
from promo_engine.webhooks.signing import new_secret

log = logging.getLogger(__name__)

ID_PREFIX = "we_"
MAX_URL_LENGTH = 2000
ENDPOINT_REMOVED = "endpoint removed"  # last_error of the deliveries it never got


class EndpointError(ValueError):
    """A URL or list of types that cannot be used; the message says why."""


@dataclass(frozen=True)
class EndpointInfo:
    id: str
    url: str
    events: tuple[str, ...] | None  # None: every type, those added later included
    created_at: datetime
    removed_at: datetime | None


def check_url(url: str) -> str:
    """An absolute http or https URL with a host, at most 2000 characters."""
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise EndpointError("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number from 0 to 65535)
    except ValueError as exc:
        raise EndpointError(f"the URL cannot be read: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise EndpointError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise EndpointError("the URL has no host")
    return url


def parse_events(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Types as given (comma-separated, or a list) checked, deduplicated and sorted; None
    (every type) for None."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [name.strip() for name in names]
    if not names or any(not name for name in names):
        raise EndpointError("the event types are a comma-separated list of: "
                            + ", ".join(webhook_outbox.TYPES))
    unknown = sorted(set(names) - set(webhook_outbox.TYPES))
    if unknown:
        raise EndpointError(f"unknown event type{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(unknown)}; the types are: "
                            + ", ".join(webhook_outbox.TYPES))
    return tuple(sorted(set(names)))


def add_endpoint(url: str, event_types: str | Iterable[str] | None = None
                 ) -> tuple[EndpointInfo, str]:
    """Add an endpoint; returns it and its secret (`whsec_...`), which is not retrievable
    later. `event_types`: the types it wants, None for all."""
    url = check_url(url)
    events = parse_events(event_types)
    secret = new_secret()
    row = WebhookEndpoint(id=ID_PREFIX + secrets.token_hex(16), url=url,
                          event_types=",".join(events) if events else None,
                          secret_ciphertext=encrypt_secret(secret,
                                                           current_app.config["SECRET_KEY"]),
                          created_at=utcnow())
    info = _info(row)
    run_in_transaction(db.session, lambda: db.session.add(row))
    webhook_outbox.directory.invalidate()
    log.info("added webhook endpoint %s", info.id)  # not its URL: it may hold a token
    return info, secret


def list_endpoints(include_removed: bool = True) -> list[EndpointInfo]:
    """Oldest first."""
    statement = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    if not include_removed:
        statement = statement.where(WebhookEndpoint.removed_at.is_(None))
    return [_info(row) for row in db.session.scalars(statement)]


def remove_endpoint(endpoint_id: str) -> int | None:
    """Remove an endpoint: nothing more is written or sent for it. Returns how many of its
    deliveries were pending (now failed, "endpoint removed"), or None when there is no such
    endpoint or it was removed already."""
    def remove() -> int | None:
        row = db.session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
        if row is None or row.removed_at is not None:
            return None
        row.removed_at = utcnow()
        return db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id,
                   WebhookDelivery.status == webhook_outbox.PENDING)
            .values(status="failed", last_error=ENDPOINT_REMOVED)).rowcount

    dropped = run_in_transaction(db.session, remove)
    if dropped is not None:
        webhook_outbox.directory.invalidate()
        log.info("removed webhook endpoint %s (%d pending deliveries not sent)", endpoint_id,
                 dropped)
    return dropped


def _info(row: WebhookEndpoint) -> EndpointInfo:
    return EndpointInfo(row.id, row.url, tuple(sorted(webhook_outbox.parse_types(
        row.event_types))) if row.event_types else None, row.created_at, row.removed_at)


class SecretBook:
    """The endpoints' secrets for a dispatcher, each decrypted once (by ciphertext)."""

    def __init__(self, secret_key: str):
        self._cipher = secret_cipher(secret_key)
        self._secrets: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def secret(self, endpoint_id: str, ciphertext: str) -> str | None:
        """None when it cannot be decrypted (SECRET_KEY is not the one it was made with)."""
        with self._lock:
            if ciphertext in self._secrets:
                return self._secrets[ciphertext]
        try:
            secret = self._cipher.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            log.warning("cannot decrypt the secret of webhook endpoint %s: is SECRET_KEY the "
                        "one it was added with?", endpoint_id)
            secret = None
        with self._lock:
            self._secrets[ciphertext] = secret
        return secret
