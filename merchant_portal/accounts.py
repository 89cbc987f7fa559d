"""Portal logins: creating merchants and admins, and checking passwords (Argon2id).

Argon2id with OWASP's recommended minimum (Password Storage Cheat Sheet): m=19 MiB
(19456 KiB), t=2 iterations, p=1. A hash made with older parameters is upgraded at the next
successful login. An unknown email costs the same as a wrong password (a dummy verify),
so login timing does not tell which emails exist.
"""
from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from merchant_portal.models import ADMIN, MERCHANT, Merchant, PortalLogin
from promo_engine.campaigns.schema import MERCHANT_ID_PATTERN
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import utcnow

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
_DUMMY_HASH = HASHER.hash("not a password anyone has")

EMAIL_PATTERN = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class AccountError(ValueError):
    """A login or merchant that cannot be created; the message says why."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    email = normalise_email(email)
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise AccountError(f"{email!r} is not an email address")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters")
    return password


def _email_taken(session, email: str) -> bool:
    return session.scalar(select(func.count()).select_from(PortalLogin)
                          .where(PortalLogin.email == email)) > 0


def create_merchant(merchant_id: str, name: str, email: str, password: str) -> PortalLogin:
    """A merchant (by the id its payments carry) and its portal login, in one transaction."""
    if not MERCHANT_ID_PATTERN.fullmatch(merchant_id):
        raise AccountError("the merchant id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AccountError("the name must be 1 to 200 characters")
    email, password_hash = check_email(email), HASHER.hash(check_password(password))
    session = db.session

    def work():
        if session.get(Merchant, merchant_id) is not None:
            raise AccountError(f"merchant {merchant_id} already exists")
        if _email_taken(session, email):
            raise AccountError(f"a login for {email} already exists")
        session.add(Merchant(id=merchant_id, name=name, created_at=utcnow()))
        session.flush()
        login = PortalLogin(email=email, password_hash=password_hash, role=MERCHANT,
                            merchant_id=merchant_id, session_epoch=0, created_at=utcnow())
        session.add(login)
        session.flush()
        return login

    return run_in_transaction(session, work)


def create_admin(email: str, password: str) -> PortalLogin:
    email, password_hash = check_email(email), HASHER.hash(check_password(password))
    session = db.session

    def work():
        if _email_taken(session, email):
            raise AccountError(f"a login for {email} already exists")
        login = PortalLogin(email=email, password_hash=password_hash, role=ADMIN,
                            merchant_id=None, session_epoch=0, created_at=utcnow())
        session.add(login)
        session.flush()
        return login

    return run_in_transaction(session, work)


def authenticate(email: str, password: str) -> PortalLogin | None:
    """The login whose password this is, or None; records the login time."""
    email = normalise_email(email)
    login = db.session.scalar(select(PortalLogin).where(PortalLogin.email == email))
    if login is None:
        try:
            HASHER.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        HASHER.verify(login.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    login_id = login.id
    new_hash = HASHER.hash(password) if HASHER.check_needs_rehash(login.password_hash) else None

    def work():
        row = db.session.get(PortalLogin, login_id)
        row.last_login_at = utcnow()
        if new_hash:
            row.password_hash = new_hash
        return row

    return run_in_transaction(db.session, work)


def end_sessions(login_id: int) -> None:
    """Sign out every session of this login (their cookies carry the old epoch)."""
    def work():
        row = db.session.get(PortalLogin, login_id)
        if row is not None:
            row.session_epoch = row.session_epoch + 1

    run_in_transaction(db.session, work)
