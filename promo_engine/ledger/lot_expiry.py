"""The points sweep: every lot whose expiry has come is expired, and every pending lot whose
time has come made available, for all users, in batches, by the scheduler's leader.

A user's own events do the same for that user first (`lots.expire`, `lots.mature`), so the
sweep is what makes it happen for users who send nothing. Exactly once, however many
processes sweep: each lot is expired under its row lock only while it still has points
left and its expiry has come, in the transaction that writes its expiry entry. Users are
locked before their lots, in user id order, as every event locks its user first, so a
sweep never deadlocks with events.

On PostgreSQL a batch is two statements over arrays, the users locked and then their lots
expired (a month-end's million lots in about 45 s on two cores, `bench/expiry.py` and
docs/performance.md); elsewhere it goes user by user through `lots.py`.
"""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Callable

from sqlalchemy import select, text

from promo_engine.ledger import lots
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.models import PointsLot, UserRecord
from promo_engine.ledger.responses import iso
from promo_engine.ledger.webhook_outbox import POINTS_EXPIRED
from promo_engine.ledger.webhook_outbox import directory as webhook_endpoints

BATCH_SIZE = 5000  # lots per transaction
LOCK_TIMEOUT = "10s"  # a batch's longest wait for a row lock (a user's event holds it for ms)

# One by one in the order given (sorted by user id), each found through the primary key
# (a plain `user_id = ANY(...)` scans the whole table when a batch is a few percent of it).
_PG_LOCK_USERS = """
SELECT u.user_id FROM unnest(%(users)s::text[]) AS k(user_id)
CROSS JOIN LATERAL (SELECT user_id FROM users WHERE users.user_id = k.user_id FOR UPDATE) u
"""

# Each due lot once: re-checked under its row lock, so a lot an event of its user expired
# meanwhile (or whose points a cancel brought back after this batch was read) is right.
# The entries are numbered in the order `lots.expire` writes them (expiry, then the oldest
# lot), so GET points lists one sweep's entries alike on every database: their ids are drawn
# after the sort (output is evaluated after ORDER BY), so no join back by reward_id is needed.
# A lot is emptied by the row version locked here (ctid, no second index lookup): the users
# were locked by the statement before, so every lot of theirs is at its latest version in
# this statement's snapshot. Should anything change a lot without its user's lock, it would
# not be emptied: the counts returned then differ and the batch is rolled back.
_PG_EXPIRE = """
WITH due AS (
  SELECT l.ctid AS row, l.reward_pk, l.user_id, l.remaining, l.pending, l.expires_at,
         d.reward_id
  FROM unnest(%(lots)s::bigint[], %(reward_ids)s::text[]) AS d(reward_pk, reward_id)
  JOIN points_lots l ON l.reward_pk = d.reward_pk
  WHERE l.remaining > 0 AND l.expires_at <= %(now)s
  FOR UPDATE OF l
), numbered AS MATERIALIZED (  -- one id per lot, however often it is read
  SELECT due.*, nextval((SELECT pg_get_serial_sequence('rewards', 'id'))::regclass) AS entry_pk
  FROM due ORDER BY due.expires_at, due.reward_pk
), emptied AS (
  UPDATE points_lots l SET remaining = 0 FROM due WHERE l.ctid = due.row RETURNING 1
), entries AS (
  INSERT INTO rewards (id, reward_id, event_pk, user_id, campaign_id, kind, points, reason,
                       created_at)
  SELECT entry_pk, reward_id, NULL, user_id, NULL, 'points', -remaining, 'expired', %(now)s
  FROM numbered
), moved AS (
  INSERT INTO points_lot_moves (lot_pk, entry_pk, points)
  SELECT reward_pk, entry_pk, -remaining FROM numbered
), per_user AS (
  SELECT user_id, coalesce(sum(remaining) FILTER (WHERE NOT pending), 0) AS available,
         coalesce(sum(remaining) FILTER (WHERE pending), 0) AS pending
  FROM due GROUP BY user_id
), balances AS (
  UPDATE users u SET points_balance = u.points_balance - per_user.available,
                     pending_points = u.pending_points - per_user.pending
  FROM per_user WHERE u.user_id = per_user.user_id
)
SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM emptied)
"""

# The same, announcing each user's expired points as one `points.expired` webhook per
# endpoint that wants it: the body `webhook_outbox.expired_message` writes, byte for byte
# (ids and user ids are of characters JSON needs no escape for), built here in SQL so that
# a batch's thousands of messages cost no round trip.
_PG_EXPIRE_ANNOUNCED = _PG_EXPIRE.replace("""
SELECT (SELECT count(*) FROM due)""", """, expired AS MATERIALIZED (
  SELECT 'msg_' || substr(md5(random()::text || user_id), 1, 24) AS message_id, user_id,
         sum(remaining) AS points,
         string_agg('"' || reward_id || '"', ', ' ORDER BY entry_pk) AS reward_ids
  FROM numbered GROUP BY user_id
), announced AS (
  INSERT INTO webhook_deliveries (message_id, endpoint_id, type, payload, status, attempts,
                                  next_attempt_at, created_at)
  SELECT expired.message_id, e.endpoint_id, 'points.expired',
         format('{"id": "%%s", "type": "points.expired", "timestamp": "%%s", "data": '
                '{"user_id": "%%s", "points": %%s, "expired_at": "%%s", "reward_ids": [%%s]}}',
                expired.message_id, %(now_text)s::text, expired.user_id, expired.points,
                %(now_text)s::text, expired.reward_ids),
         'pending', 0, %(now)s, %(now)s
  FROM expired CROSS JOIN unnest(%(endpoints)s::text[]) AS e(endpoint_id)
)
SELECT (SELECT count(*) FROM due)""")

# What a negative balance is owed is paid from the maturing lots first, as `lots.mature` does.
_PG_MATURE = """
WITH due AS (
  SELECT l.reward_pk, l.user_id, l.remaining,
         coalesce(sum(l.remaining) OVER (PARTITION BY l.user_id ORDER BY l.available_at,
                                         l.reward_pk ROWS BETWEEN UNBOUNDED PRECEDING
                                         AND 1 PRECEDING), 0) AS before
  FROM points_lots l
  WHERE l.reward_pk = ANY(%(lots)s::bigint[]) AND l.pending AND l.available_at <= %(now)s
), paying AS (
  SELECT due.reward_pk, due.user_id, due.remaining,
         least(due.remaining, greatest(greatest(-u.points_balance, 0) - due.before, 0)) AS paid
  FROM due JOIN users u ON u.user_id = due.user_id
), matured AS (
  UPDATE points_lots l SET pending = false, remaining = l.remaining - paying.paid,
                           debt_paid = l.debt_paid + paying.paid
  FROM paying WHERE l.reward_pk = paying.reward_pk
), per_user AS (
  SELECT user_id, sum(remaining) AS points FROM paying GROUP BY user_id
), balances AS (
  UPDATE users u SET points_balance = u.points_balance + per_user.points,
                     pending_points = u.pending_points - per_user.points
  FROM per_user WHERE u.user_id = per_user.user_id
)
SELECT count(*) FROM paying
"""


def _entry_ids(count: int) -> list[str]:
    """Reward ids for a batch's expiry entries, shaped like every reward id ("rw_" and 20 hex
    digits) but with the first 8 digits shared by the batch: the unique index on reward_id
    then takes the batch's entries on a few adjacent pages instead of one page each. Random
    ids land on a page each, and every page first touched after a checkpoint is written to
    the WAL whole: right after a checkpoint, up to a third of the sweep's WAL."""
    prefix, digits = "rw_" + secrets.token_hex(4), secrets.token_hex(6 * count)
    return [prefix + digits[i:i + 12] for i in range(0, 12 * count, 12)]


def _pg_array(values: list) -> str:
    """`values` (ints or strings) as a PostgreSQL array literal, for a `%s::type[]` parameter:
    psycopg adapts a list of thousands element by element, five times slower."""
    if values and isinstance(values[0], int):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def _due_expiring(session, now: datetime, limit: int) -> list[tuple[int, str]]:
    return session.execute(
        select(PointsLot.reward_pk, PointsLot.user_id)
        .where(PointsLot.remaining > 0, PointsLot.expires_at.is_not(None),
               PointsLot.expires_at <= now)
        .order_by(PointsLot.expires_at, PointsLot.reward_pk).limit(limit)).all()


def _due_maturing(session, now: datetime, limit: int) -> list[tuple[int, str]]:
    return session.execute(
        select(PointsLot.reward_pk, PointsLot.user_id)
        .where(PointsLot.pending.is_(True), PointsLot.available_at <= now)
        .order_by(PointsLot.available_at, PointsLot.reward_pk).limit(limit)).all()


def _batch(session, now: datetime, limit: int, *, expiring: bool) -> tuple[int, int]:
    """One batch in the session's transaction: (lots found due, lots changed)."""
    due = (_due_expiring if expiring else _due_maturing)(session, now, limit)
    if not due:
        return 0, 0
    users = sorted({user_id for _, user_id in due})
    if session.get_bind().dialect.name != "postgresql":
        changed = 0
        for user_id in users:
            user = session.execute(select(UserRecord).where(UserRecord.user_id == user_id)
                                   .with_for_update()).scalar_one()
            if expiring:
                changed += len(_due_expiring_of(session, user_id, now))
                lots.expire(session, user, now)
            else:
                changed += len(_due_maturing_of(session, user_id, now))
                lots.mature(session, user, now)
        session.flush()
        return len(due), changed
    cursor = session.connection().connection.driver_connection.cursor()
    cursor.execute(_PG_LOCK_USERS, {"users": _pg_array(users)})
    pks = [pk for pk, _ in due]
    if not expiring:
        cursor.execute(_PG_MATURE, {"lots": _pg_array(pks), "now": now})
        return len(due), cursor.fetchone()[0]
    params = {"lots": _pg_array(pks), "reward_ids": _pg_array(_entry_ids(len(pks))),
              "now": now}
    endpoints = [endpoint.id for endpoint in webhook_endpoints.endpoints(session.connection())
                 if endpoint.wants(POINTS_EXPIRED)]
    if endpoints:
        params.update(endpoints=_pg_array(endpoints), now_text=iso(now))
    cursor.execute(_PG_EXPIRE_ANNOUNCED if endpoints else _PG_EXPIRE, params)
    expired, emptied = cursor.fetchone()
    if emptied != expired:
        raise AssertionError(f"{expired} lots got an expiry entry but {emptied} were emptied: "
                             f"a lot changed without its user's lock")
    return len(due), expired


def _due_expiring_of(session, user_id: str, now: datetime) -> list[int]:
    return session.execute(select(PointsLot.reward_pk).where(
        PointsLot.user_id == user_id, PointsLot.remaining > 0,
        PointsLot.expires_at <= now)).scalars().all()


def _due_maturing_of(session, user_id: str, now: datetime) -> list[int]:
    return session.execute(select(PointsLot.reward_pk).where(
        PointsLot.user_id == user_id, PointsLot.pending.is_(True),
        PointsLot.available_at <= now)).scalars().all()


def sweep_points(session, now: datetime, *, fence: Callable[[object], None] = lambda s: None,
                 batch_size: int = BATCH_SIZE,
                 should_stop: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Mature and expire every lot due at `now`, a transaction per batch, each proven by
    `fence(session)` (the scheduler's lease token); (lots expired, lots matured)."""
    totals = {}
    postgres = session.get_bind().dialect.name == "postgresql"
    for expiring in (False, True):  # in the order they happen: lots mature before expiring
        total = 0
        while not should_stop():
            def work():
                if postgres:
                    # A batch that waits this long for a lock gives up, and the next sweep
                    # tries again; so does the statement of a leader that died waiting,
                    # which would otherwise hold its locks until PostgreSQL noticed.
                    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                fence(session)
                return _batch(session, now, batch_size, expiring=expiring)
            found, changed = run_in_transaction(session, work)
            total += changed
            if found < batch_size:
                break
        totals[expiring] = total
    return totals[True], totals[False]
