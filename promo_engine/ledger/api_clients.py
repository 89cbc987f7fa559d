"""API clients of the wallet backend: key ids, and their secrets encrypted at rest.

A secret is shown once when the client is created and stored only as Fernet ciphertext,
keyed by HKDF from SECRET_KEY: a database dump alone does not reveal it. Request signing
needs the plaintext, so each worker keeps the secrets of all active clients in memory (the
wallet backends: a handful) and answers every key id from there, an unknown one included,
without asking the database. It reloads them at most once a second when a request comes,
and at once when told that a client was created or revoked: by this process, or through
Redis by any other (broadcast.py). A revocation or a new client therefore reaches every
worker within a second, within milliseconds with Redis.
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
from flask import Flask, current_app
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import UTCDateTime, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "pk_"
RELOAD_INTERVAL_SECONDS = 1.0  # the longest a change made elsewhere takes without Redis
_DIRECTORY = "promo_api_clients"
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
    _announce_change()
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
    _announce_change()
    log.info("revoked API client %s", key_id)
    return True


def list_clients() -> list[ApiClient]:
    return list(db.session.scalars(select(ApiClient).order_by(ApiClient.created_at)))


def lookup_secret(key_id: str) -> str | None:
    """The secret of an active client, or None (unknown, revoked, or undecryptable)."""
    return client_directory().secret(key_id)


class ClientDirectory:
    """The secrets of all active clients of one app, reloaded from the database at most once
    per `interval` seconds (when a request asks), and on the next request after
    `invalidate()`.

    A reload reads the active clients' key ids and ciphertexts, a few rows, in one query:
    as cheap as asking whether anything changed, and it misses no change however made.
    Only ciphertexts not seen before are decrypted.
    """

    def __init__(self, secret_key: str, *, interval: float = RELOAD_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 before_reload: Callable[[], None] = lambda: None):
        self.cipher = secret_cipher(secret_key)
        self.interval, self.clock, self.before_reload = interval, clock, before_reload
        self._secrets: dict[str, str] = {}
        self._decrypted: dict[str, str | None] = {}  # ciphertext -> secret (None: cannot)
        self._loaded_at = float("-inf")
        # Bumped by every `invalidate()`; a load records the one it began at. A lookup waits
        # for a load until the secrets read are at least as new as the last invalidation,
        # also while another thread's load is still reading (a new client's first requests
        # must not be checked against the secrets read before it existed).
        self._generation = 0
        self._loaded_generation = -1
        self._lock = threading.Lock()

    def _current(self) -> bool:
        return (self._loaded_generation == self._generation
                and self.clock() - self._loaded_at < self.interval)

    def secret(self, key_id: str) -> str | None:
        if not self._current():
            with self._lock:
                if not self._current():
                    self._reload()
        return self._secrets.get(key_id)

    def invalidate(self) -> None:
        """Reload on the next lookup: a client was created or revoked."""
        self._generation += 1

    def _reload(self) -> None:
        self.before_reload()
        # Both before the query: an `invalidate()` while it runs (for a change it may have
        # missed) makes the next lookup load again, and the interval counts from the read.
        generation = self._generation
        started = self.clock()
        # If the read fails, nothing is marked loaded: the next lookup tries again.
        with db.engine.connect() as connection:
            rows = connection.execute(
                select(ApiClient.key_id, ApiClient.secret_ciphertext)
                .where(ApiClient.revoked_at.is_(None))).all()
        decrypted = {ciphertext: self._decrypted[ciphertext] if ciphertext in self._decrypted
                     else self._decrypt(key_id, ciphertext) for key_id, ciphertext in rows}
        self._decrypted = decrypted
        self._secrets = {key_id: decrypted[ciphertext] for key_id, ciphertext in rows
                         if decrypted[ciphertext] is not None}
        self._loaded_at = started
        self._loaded_generation = generation

    def _decrypt(self, key_id: str, ciphertext: str) -> str | None:
        try:
            return self.cipher.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            # Most likely SECRET_KEY changed since the client was created.
            log.warning("cannot decrypt the secret of API client %s: is SECRET_KEY the one it "
                        "was created with?", key_id)
            return None


def install_client_directory(app: Flask) -> None:
    """Give `app` its directory (one per app: per database and SECRET_KEY), told of changes
    that other processes broadcast."""
    service = app.extensions.get("promo")
    listener = getattr(service, "listener", None)
    directory = ClientDirectory(
        app.config["SECRET_KEY"],
        # Broadcasts reach a worker only while it listens: start listening on first use.
        before_reload=listener.ensure_running if listener is not None else lambda: None)
    app.extensions[_DIRECTORY] = directory
    if service is not None:
        service.on_clients_changed = directory.invalidate


def client_directory() -> ClientDirectory:
    return current_app.extensions[_DIRECTORY]


def _announce_change() -> None:
    """After a commit that created or revoked a client: this process reloads on its next
    lookup, and the others at once if Redis carries broadcasts (or within their interval)."""
    client_directory().invalidate()
    service = current_app.extensions.get("promo")
    if service is not None and service.publisher is not None:
        service.publisher.publish_clients_changed()


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]
