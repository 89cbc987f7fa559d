"""API clients of the wallet backend: key ids, and their secrets encrypted at rest.

A secret is shown once when the client is created and stored only as Fernet ciphertext,
keyed by HKDF from SECRET_KEY: a database dump alone does not reveal it. Request signing
needs the plaintext, so verified lookups are cached in-process for a short while; a
revocation therefore reaches every worker within `CACHE_TTL_SECONDS`.
"""
from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from datetime import datetime
from typing import Callable

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from .database import run_in_transaction
from .extensions import db
from .models import UTCDateTime, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "pk_"
CACHE_TTL_SECONDS = 30.0
_HKDF_INFO = b"promo-engine api client secrets v1"


class ApiClient(db.Model):
    __tablename__ = "api_clients"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:  # never the ciphertext, let alone the secret
        return f"<ApiClient {self.key_id} {self.name!r}>"


def secret_cipher(secret_key: str) -> Fernet:
    """The Fernet key for client secrets, derived from SECRET_KEY (not SECRET_KEY itself)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_HKDF_INFO).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str, secret_key: str) -> str:
    return secret_cipher(secret_key).encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt_secret(ciphertext: str, secret_key: str) -> str:
    """Raises `cryptography.fernet.InvalidToken` when SECRET_KEY is not the one used."""
    return secret_cipher(secret_key).decrypt(ciphertext.encode("ascii")).decode("utf-8")


def create_client(name: str) -> tuple[str, str]:
    """Create a client and return `(key_id, secret)`; the secret is not retrievable later."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("a client name is 1-200 characters")
    key_id = KEY_PREFIX + secrets.token_hex(16)
    secret = secrets.token_urlsafe(32)
    ciphertext = encrypt_secret(secret, _secret_key())
    run_in_transaction(db.session, lambda: db.session.add(
        ApiClient(key_id=key_id, name=name, secret_ciphertext=ciphertext)))
    log.info("created API client %s (%s)", key_id, name)
    return key_id, secret


def revoke_client(key_id: str) -> bool:
    """Revoke a client; False when there is no such active client."""
    def revoke() -> bool:
        client = db.session.get(ApiClient, key_id)
        if client is None or client.revoked_at is not None:
            return False
        client.revoked_at = utcnow()
        return True

    if not run_in_transaction(db.session, revoke):
        return False
    secret_cache().forget(key_id)
    log.info("revoked API client %s", key_id)
    return True


def list_clients() -> list[ApiClient]:
    return list(db.session.scalars(select(ApiClient).order_by(ApiClient.created_at)))


def lookup_secret(key_id: str) -> str | None:
    """The secret of an active client, or None (unknown, revoked, or undecryptable)."""
    cache = secret_cache()
    cached = cache.get(key_id)
    if cached is not None:
        return cached
    client = db.session.get(ApiClient, key_id)
    if client is None or client.revoked_at is not None:
        return None
    try:
        secret = decrypt_secret(client.secret_ciphertext, _secret_key())
    except InvalidToken:
        # Most likely SECRET_KEY changed since the client was created.
        log.warning("cannot decrypt the secret of API client %s: is SECRET_KEY the one it "
                    "was created with?", key_id)
        return None
    cache.put(key_id, secret)
    return secret


class SecretCache:
    """Positive lookups only, so that a client created elsewhere works at once."""

    def __init__(self, ttl: float = CACHE_TTL_SECONDS, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._entries: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[key_id]
                return None
            return entry[1]

    def put(self, key_id: str, secret: str) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key_id] = (self.clock() + self.ttl, secret)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def secret_cache() -> SecretCache:
    # One cache per app (and so per database and SECRET_KEY), never shared between apps.
    return current_app.extensions.setdefault("promo_api_client_secrets", SecretCache())


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]
