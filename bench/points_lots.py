"""Users holding points lots, bulk-loaded straight into a migrated PostgreSQL database, and
the check that a ledger's points add up: for `bench/expiry.py` (a month-end's million lots)
and `bench/record.py`'s redemptions (users with points to spend).

Recording a million payments through the API would take the better part of an hour on the
benchmark's machine, so the rows an event leaves behind are written with `INSERT ...
SELECT generate_series` instead: per lot, one payment event, its points reward and the lot
itself; per user, its row with `payments` and `points_balance` matching its lots. Ids are
random-looking where the application's are (reward ids, the users a lot belongs to), and
users are stored in no particular order of their ids (as users arrive), so the tables and
indexes are as scattered as a real ledger's. The result obeys the ledger's invariants
(`verify` checks them), so whatever runs on it afterwards meets the data it would meet in
production.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

BENCH_CLIENT = "bench-points"


@dataclass(frozen=True)
class Lots:
    """What to load: `lots` lots over `users` users (a lot's user drawn by hash, so a user
    holds about lots/users of them), each from its own payment at `earned_at` (plus a
    millisecond per lot), available since then, expiring at `expires_at` (None: never),
    worth 1 to `max_points` points."""
    prefix: str  # user ids are f"{prefix}{n:07d}"
    users: int
    lots: int
    earned_at: datetime
    expires_at: datetime | None
    max_points: int = 500


def user_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:07d}"


# One statement per table, so each is a single pass; %(...)s are psycopg parameters.
_USERS = """
INSERT INTO users (user_id, activations, payments, points_balance, pending_points, created_at)
SELECT %(prefix)s || lpad(n::text, 7, '0'), 0, 0, 0, 0, %(earned_at)s
FROM generate_series(0, %(users)s - 1) AS n ORDER BY md5(%(prefix)s || n)
"""

# lot n: the n-th payment; its user by hash, its points 1..max_points.
_LOT_ROWS = """
SELECT n, %(first)s + n AS pk,
       %(prefix)s || lpad((abs(hashint8(n + %(first)s)::bigint) %% %(users)s)::text, 7, '0')
         AS user_id,
       1 + abs(hashint8(-n - %(first)s)::bigint) %% %(max_points)s AS points,
       %(earned_at)s + n * interval '1 millisecond' AS at
FROM generate_series(0, %(lots)s - 1) AS n
"""

_EVENTS = f"""
INSERT INTO events (id, client_id, event_id, type, user_id, merchant_id, amount_minor,
                    currency, occurred_at, refunded_minor, request_hash, response, created_at)
SELECT pk, '{BENCH_CLIENT}', %(prefix)s || 'e' || n, 'payment', user_id, 'm_bench', points * 100,
       'CNY', at, 0, md5(%(prefix)s || n), '{{"event_id": "' || %(prefix)s || 'e' || n || '"}}',
       at
FROM ({_LOT_ROWS}) AS lot
"""

_REWARDS = f"""
INSERT INTO rewards (id, reward_id, event_pk, user_id, campaign_id, kind, points, created_at)
SELECT pk, 'rw_' || substr(md5(%(prefix)s || 'r' || n), 1, 20), pk, user_id, NULL, 'points',
       points, at
FROM ({_LOT_ROWS}) AS lot
"""

_POINTS_LOTS = f"""
INSERT INTO points_lots (reward_pk, user_id, points, remaining, debt_paid, available_at,
                         pending, expires_at)
SELECT pk, user_id, points, points, 0, at, false, %(expires_at)s
FROM ({_LOT_ROWS}) AS lot
"""

_USER_SUMS = """
UPDATE users u SET payments = u.payments + s.lots, points_balance = u.points_balance + s.points
FROM (SELECT user_id, count(*) AS lots, sum(points) AS points FROM points_lots
      WHERE reward_pk >= %(first)s GROUP BY user_id) AS s
WHERE u.user_id = s.user_id
"""


def load(conn, spec: Lots) -> None:
    """Write the users, events, rewards and lots of `spec` in the connection's transaction
    (committed by the caller); ids follow whatever the tables already hold."""
    first = conn.execute("SELECT greatest((SELECT coalesce(max(id), 0) FROM events),"
                         " (SELECT coalesce(max(id), 0) FROM rewards)) + 1").fetchone()[0]
    params = {"prefix": spec.prefix, "users": spec.users, "lots": spec.lots, "first": first,
              "earned_at": spec.earned_at, "expires_at": spec.expires_at,
              "max_points": spec.max_points}
    for statement in (_USERS, _EVENTS, _REWARDS, _POINTS_LOTS, _USER_SUMS):
        conn.execute(statement, params)
    for table in ("events", "rewards"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                     f" (SELECT max(id) FROM {table}))")


# -- what the ledger must hold -----------------------------------------------------------

_CHECKS = {
    # Per lot: remaining == points - debt_paid + its moves.
    "lots whose remaining is not points - debt_paid + moves": """
        SELECT count(*) FROM points_lots l
        LEFT JOIN (SELECT lot_pk, sum(points) AS moved FROM points_lot_moves GROUP BY lot_pk) m
          ON m.lot_pk = l.reward_pk
        WHERE l.remaining <> l.points - l.debt_paid + coalesce(m.moved, 0)""",
    # Per user: balance + pending == every points row of the user.
    "users whose points_balance + pending_points is not the sum of their points rows": """
        SELECT count(*) FROM users u
        LEFT JOIN (SELECT user_id, sum(points) AS points FROM rewards
                   WHERE kind = 'points' GROUP BY user_id) r ON r.user_id = u.user_id
        WHERE u.points_balance + u.pending_points <> coalesce(r.points, 0)""",
    # Per user: pending == pending lots; balance == available lots less a debt.
    "users whose balances disagree with their lots": """
        SELECT count(*) FROM users u
        LEFT JOIN (SELECT user_id, sum(remaining) FILTER (WHERE pending) AS pending,
                          sum(remaining) FILTER (WHERE NOT pending) AS available
                   FROM points_lots GROUP BY user_id) l ON l.user_id = u.user_id
        WHERE u.pending_points <> coalesce(l.pending, 0)
           OR greatest(u.points_balance, 0) <> coalesce(l.available, 0)""",
    # Each expiry entry moved exactly its own points out of exactly one lot.
    "expiry entries without exactly one move of their points": """
        SELECT count(*) FROM rewards r
        LEFT JOIN (SELECT entry_pk, count(*) AS moves, sum(points) AS points
                   FROM points_lot_moves GROUP BY entry_pk) m ON m.entry_pk = r.id
        WHERE r.reason = 'expired'
          AND (m.moves IS DISTINCT FROM 1 OR m.points IS DISTINCT FROM r.points
               OR r.points >= 0 OR r.event_pk IS NOT NULL)""",
}


def verify(conn) -> dict[str, int]:
    """How many rows break each invariant of the points ledger (all 0 when it adds up)."""
    return {what: conn.execute(sql).fetchone()[0] for what, sql in _CHECKS.items()}
