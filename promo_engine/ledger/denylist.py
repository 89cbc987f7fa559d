"""The denylist: users and devices that earn no campaign rewards (base points still).

Every process keeps the list in memory and asks the database at most every
`REFRESH_SECONDS` whether it changed (the newest change's id and the number of changes),
reading it again only then: a change takes effect within that time on every worker, and an
event pays a set lookup.

Changes (`add`, `remove`) are written with their audit row (`denylist_changes`: who, why,
when) in the caller's transaction.
"""
from __future__ import annotations

import re
import threading
import time
import weakref
from datetime import datetime

from sqlalchemy import delete, func, select

from promo_engine.ledger.models import utcnow
from promo_engine.ledger.risk_models import DenylistChange, DenylistEntry

USER, DEVICE = "user", "device"
KINDS = (USER, DEVICE)
REFRESH_SECONDS = 2.0  # the longest a process goes on with a denylist that changed
ADD, REMOVE = "add", "remove"
# What the API accepts as a user_id and a device_id (api/request_fields.py): an entry that
# no event could ever name would deny nobody.
VALUES = {USER: (re.compile(r"[A-Za-z0-9_.:-]{1,64}"), "1-64 characters of A-Z a-z 0-9 _ . : -"),
          DEVICE: (re.compile(r"[A-Za-z0-9_.:-]{1,128}"),
                   "1-128 characters of A-Z a-z 0-9 _ . : -")}
MAX_REASON = 1000


class DenylistError(ValueError):
    """A change that cannot be made; the message says why, in one line."""


def check(kind: str, value: str) -> tuple[str, str]:
    """(kind, value) if an event could name them, else DenylistError."""
    if kind not in KINDS:
        raise DenylistError(f"unknown kind {kind!r}: use user:ID or device:ID")
    pattern, rule = VALUES[kind]
    if not pattern.fullmatch(value):
        raise DenylistError(f"invalid {kind} id {value!r}: must be {rule}")
    return kind, value


def parse_spec(spec: str) -> tuple[str, str]:
    """`user:ID` or `device:ID` -> (kind, value); DenylistError naming what is wrong."""
    kind, colon, value = (spec or "").partition(":")
    if not colon:
        raise DenylistError(f"{spec!r} is not user:ID or device:ID")
    return check(kind, value)


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise DenylistError(f"the reason must be at most {MAX_REASON} characters of text")
    return reason


def add(session, kind: str, value: str, *, reason: str | None, actor: str,
        now: datetime | None = None) -> DenylistEntry:
    """Put a user or device on the denylist, or, when it is there already, give it this
    reason (and this actor and time: the listing shows the latest decision). Audited either
    way. Not committed."""
    check(kind, value)
    reason, now = _reason(reason), now or utcnow()
    entry = session.execute(select(DenylistEntry).where(
        DenylistEntry.kind == kind, DenylistEntry.value == value).with_for_update()
    ).scalar_one_or_none()
    if entry is None:
        entry = DenylistEntry(kind=kind, value=value, reason=reason, added_by=actor,
                              added_at=now)
        session.add(entry)
    else:
        entry.reason, entry.added_by, entry.added_at = reason, actor, now
    session.add(DenylistChange(action=ADD, kind=kind, value=value, reason=reason,
                               actor=actor, at=now))
    session.flush()
    return entry


def remove(session, kind: str, value: str, *, actor: str, reason: str | None = None,
           now: datetime | None = None) -> None:
    """Take a user or device off the denylist; DenylistError when it is not on it.
    Audited. Not committed."""
    check(kind, value)
    reason, now = _reason(reason), now or utcnow()
    gone = session.execute(delete(DenylistEntry).where(
        DenylistEntry.kind == kind, DenylistEntry.value == value)).rowcount
    if not gone:
        raise DenylistError(f"{kind}:{value} is not on the denylist")
    session.add(DenylistChange(action=REMOVE, kind=kind, value=value, reason=reason,
                               actor=actor, at=now))
    session.flush()


def entries(session) -> list[DenylistEntry]:
    """Everyone on the denylist, the latest added first."""
    return list(session.scalars(select(DenylistEntry).order_by(
        DenylistEntry.added_at.desc(), DenylistEntry.kind, DenylistEntry.value)))


def history(session, limit: int | None = None) -> list[DenylistChange]:
    """Every change, the oldest first (the newest `limit` only, when given)."""
    query = select(DenylistChange).order_by(DenylistChange.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.scalars(query).all()))


class DenylistDirectory:
    """The denylist of each database (engine), checked for changes at most every
    REFRESH_SECONDS. A process may hold several engines (tests, a CLI beside a server)."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS):
        self.refresh_seconds = refresh_seconds
        # engine -> (checked at, newest change id, users, devices)
        self._loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def denied(self, bind, user_id: str, device_id: str | None) -> bool:
        """Whether the user, or the event's device, is on the denylist. `bind`: an Engine,
        or a Connection to read through (in its transaction)."""
        _, _, users, devices = self._entries(bind)
        return user_id in users or (device_id is not None and device_id in devices)

    def _entries(self, bind):
        engine = getattr(bind, "engine", bind)
        entry = self._loaded.get(engine)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.refresh_seconds:
            return entry
        if bind is engine:
            with engine.connect() as connection:
                entry = self._read(connection, entry)
        else:
            entry = self._read(bind, entry)
        entry = (now,) + entry[1:]
        with self._lock:
            self._loaded[engine] = entry
        return entry

    @staticmethod
    def _read(connection, entry):
        # The count as well as the newest id: on PostgreSQL a change whose id was taken
        # first may commit after a later one was seen, leaving the newest id as it was.
        newest = tuple(connection.execute(
            select(func.max(DenylistChange.id), func.count(DenylistChange.id))).one())
        if entry is not None and entry[1] == newest:
            return entry
        users, devices = set(), set()
        for kind, value in connection.execute(select(DenylistEntry.kind, DenylistEntry.value)):
            (users if kind == USER else devices).add(value)
        return (0.0, newest, frozenset(users), frozenset(devices))

    def invalidate(self, bind=None) -> None:
        """Read again at the next event (this process changed the denylist)."""
        with self._lock:
            if bind is None:
                self._loaded.clear()
            else:
                self._loaded.pop(getattr(bind, "engine", bind), None)


directory = DenylistDirectory()
