"""The outbox's rows as dispatchers and operators change them: claims, outcomes, retries.

A delivery's row is its only state. A dispatcher claims due rows by moving their
`next_attempt_at` a lease ahead (past the time a send can take), in one statement on
PostgreSQL, `FOR UPDATE SKIP LOCKED` so that dispatchers never wait for each other nor claim
the same row; SQLite has one writer at a time, so a read and an update in one write
transaction do the same. It records each outcome only while its lease holds (the row still
pending with the lease it set): a dispatcher that died, or was too slow, leaves its rows
due again when the lease ends, to whichever dispatcher comes next. Nothing is lost, and a
row is sent twice only when a dispatcher dies, or stalls past the lease, between sending
and recording: at least once.

The `status = 'pending'` conditions are literals, not parameters: only then do PostgreSQL's
generic plans and SQLite use the partial index of due rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.models import UTCDateTime, WebhookDelivery, WebhookEndpoint

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_deliveries = WebhookDelivery.__table__
_endpoints = WebhookEndpoint.__table__
_d, _e = _deliveries.c, _endpoints.c
_PENDING = literal_column("'pending'")


@dataclass(frozen=True)
class Claimed:
    """A delivery this dispatcher holds until `lease_until`."""
    id: int
    message_id: str
    endpoint_id: str
    type: str
    payload: str
    attempts: int  # before this one
    created_at: datetime
    due: datetime  # its next_attempt_at before the claim
    lease_until: datetime
    url: str
    secret_ciphertext: str
    endpoint_removed: bool


@dataclass(frozen=True)
class Attempted:
    """A claimed delivery that was tried (or given up): its row's new state."""
    claimed: Claimed
    status: str  # delivered | pending (to retry) | failed
    at: datetime
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True)
class NotAttempted:
    """A claimed delivery handed back unsent: due at `next_attempt_at`, or failed (its
    endpoint was removed, or failing and past the retry window)."""
    claimed: Claimed
    status: str  # pending | failed
    next_attempt_at: datetime
    last_error: str | None  # None: the one it had


def claim(engine: Engine, now: datetime, lease_until: datetime, limit: int,
          exclude: Collection[str] = ()) -> list[Claimed]:
    """Up to `limit` pending deliveries due at `now`, oldest due first, leased until
    `lease_until`; none of the endpoints in `exclude`."""
    if engine.dialect.name == "sqlite":
        # Look first, without the write lock: idle dispatchers poll often, and SQLite
        # has one writer at a time, which the API's events need more.
        with engine.connect() as connection:
            if connection.execute(_due((_d.id,), now, 1, exclude)).first() is None:
                return []
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":
            rows = run_in_transaction(session, lambda: session.execute(
                _pg_claim(now, lease_until, limit, exclude)).all())
        else:
            rows = run_in_transaction(
                session, lambda: _sqlite_claim(session, now, lease_until, limit, exclude))
    return [Claimed(r.id, r.message_id, r.endpoint_id, r.type, r.payload, r.attempts,
                    r.created_at, r.due, lease_until, r.url, r.secret_ciphertext,
                    r.removed_at is not None) for r in rows]


def _due(columns, now: datetime, limit: int, exclude: Collection[str]):
    statement = select(*columns).where(_d.status == _PENDING, _d.next_attempt_at <= now)
    if exclude:
        statement = statement.where(_d.endpoint_id.not_in(sorted(exclude)))
    return statement.order_by(_d.next_attempt_at, _d.id).limit(limit)


def _pg_claim(now, lease_until, limit, exclude):
    due = (_due((_d.id, _d.next_attempt_at.label("due")), now, limit, exclude)
           .with_for_update(skip_locked=True).subquery("due"))
    return (update(_deliveries)
            .where(_d.id == due.c.id, _e.id == _d.endpoint_id)
            .values(next_attempt_at=lease_until)
            .returning(_d.id, _d.message_id, _d.endpoint_id, _d.type, _d.payload, _d.attempts,
                       _d.created_at, due.c.due, _e.url, _e.secret_ciphertext, _e.removed_at))


def _sqlite_claim(session, now, lease_until, limit, exclude):
    rows = session.execute(
        _due((_d.id, _d.message_id, _d.endpoint_id, _d.type, _d.payload, _d.attempts,
              _d.created_at, _d.next_attempt_at.label("due"), _e.url, _e.secret_ciphertext,
              _e.removed_at), now, limit, exclude)
        .join_from(_deliveries, _endpoints, _e.id == _d.endpoint_id)).all()
    if rows:
        session.execute(update(_deliveries).where(_d.id.in_([r.id for r in rows]))
                        .values(next_attempt_at=lease_until))
    return rows


# Both only while the lease holds: the row pending, with the next_attempt_at the claim set.
_held = (_d.id == bindparam("b_id"), _d.status == _PENDING,
         _d.next_attempt_at == bindparam("b_lease", type_=UTCDateTime()))
_record_attempted = update(_deliveries).where(*_held).values(
    status=bindparam("b_status"), attempts=_d.attempts + 1,
    next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
    last_attempt_at=bindparam("b_at", type_=UTCDateTime()),
    last_status=bindparam("b_code"), last_error=bindparam("b_error"),
    delivered_at=bindparam("b_delivered", type_=UTCDateTime()))
_record_not_attempted = update(_deliveries).where(*_held).values(
    status=bindparam("b_status"), next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
    last_error=func.coalesce(bindparam("b_error"), _d.last_error))


def record(engine: Engine, attempted: list[Attempted],
           not_attempted: list[NotAttempted]) -> None:
    """Write outcomes in one transaction: a batched UPDATE for each kind, rows in id order
    (as every writer of these rows takes them, so no two deadlock)."""
    attempted = sorted(attempted, key=lambda a: a.claimed.id)
    not_attempted = sorted(not_attempted, key=lambda n: n.claimed.id)
    if not attempted and not not_attempted:
        return

    def write(session: Session) -> None:
        if attempted:
            session.execute(_record_attempted, [
                {"b_id": a.claimed.id, "b_lease": a.claimed.lease_until, "b_status": a.status,
                 "b_next": a.next_attempt_at, "b_at": a.at, "b_code": a.last_status,
                 "b_error": a.last_error,
                 "b_delivered": a.at if a.status == DELIVERED else None} for a in attempted])
        if not_attempted:
            session.execute(_record_not_attempted, [
                {"b_id": n.claimed.id, "b_lease": n.claimed.lease_until, "b_status": n.status,
                 "b_next": n.next_attempt_at, "b_error": n.last_error} for n in not_attempted])

    with Session(engine) as session:
        run_in_transaction(session, lambda: write(session))


def oldest_due(engine: Engine, now: datetime) -> datetime | None:
    """The `next_attempt_at` of the pending delivery due the longest (None: none due)."""
    with engine.connect() as connection:
        return connection.execute(select(func.min(_d.next_attempt_at)).where(
            _d.status == _PENDING, _d.next_attempt_at <= now)).scalar()


# -- for operators --------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    message_id: str
    endpoint_id: str
    type: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


def list_deliveries(engine: Engine, *, failed_only: bool = False,
                    limit: int = 50) -> list[DeliveryInfo]:
    """The newest deliveries first (only the failed ones with `failed_only`)."""
    statement = select(_d.id, _d.message_id, _d.endpoint_id, _d.type, _d.status, _d.attempts,
                       _d.created_at, _d.next_attempt_at, _d.last_attempt_at, _d.last_status,
                       _d.last_error, _d.delivered_at).order_by(_d.id.desc()).limit(limit)
    if failed_only:
        statement = statement.where(_d.status == FAILED)
    with engine.connect() as connection:
        return [DeliveryInfo(*row) for row in connection.execute(statement)]


def retry(engine: Engine, delivery_id: int, now: datetime) -> str:
    """Make a failed (or pending) delivery pending and due at `now`. Returns "pending", or
    why not: "missing", "delivered", "removed" (its endpoint was removed). A retried
    delivery past the retry window gets one more attempt: if that fails it is failed again.
    """
    def work() -> str:
        row = session.execute(
            select(_d.status, _e.removed_at)
            .join_from(_deliveries, _endpoints, _e.id == _d.endpoint_id, isouter=True)
            .where(_d.id == delivery_id).with_for_update(of=_deliveries)).first()
        if row is None:
            return "missing"
        if row.status == DELIVERED:
            return "delivered"
        if row.removed_at is not None:
            return "removed"
        session.execute(update(_deliveries).where(_d.id == delivery_id)
                        .values(status=PENDING, next_attempt_at=now))
        return PENDING

    with Session(engine) as session:
        return run_in_transaction(session, work)


def retry_failed(engine: Engine, endpoint_id: str, now: datetime) -> int | None:
    """Make every failed delivery of an active endpoint pending and due at `now` (after an
    outage longer than the retry window); how many, or None when there is no such
    endpoint."""
    def work() -> int | None:
        active = session.execute(select(_e.id).where(
            _e.id == endpoint_id, _e.removed_at.is_(None))).first()
        if active is None:
            return None
        return session.execute(update(_deliveries).where(
            _d.endpoint_id == endpoint_id, _d.status == FAILED)
            .values(status=PENDING, next_attempt_at=now)).rowcount

    with Session(engine) as session:
        return run_in_transaction(session, work)
