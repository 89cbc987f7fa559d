"""The redemptions `bench/record.py` records next to its payments: burns of points by users
who hold some, and the steps a redemption's CPU goes to.

A burn (`{"type": "redemption", "points": N}`) is the simplest event that spends: the user
locked, its lots past expiry expired, the balance judged, the event and its spent row
written, the points drawn from the user's lots in spending order, committed. The contract
wants it to cost no more than a payment, so record.py times it exactly as it times the
payments, in rounds of its own between theirs.

Its users hold points before the run starts: `bench/points_lots.py` writes them lots as
payments would have (a few each, no expiry, as record.py's program sets none), so no
payment has to be recorded first. Redemptions go through their own API client, a shop
spending points beside the wallet that pays, so each client's events are counted apart.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from bench import points_lots

CLIENT_ID = "bench-record-shop"
LOTS_PER_USER = 3
MAX_BURN = 50


def seed(dsn: str, tag: str, users: int) -> dict[str, int]:
    """Users holding about LOTS_PER_USER lots each; {user id: points balance} of those with
    points."""
    import psycopg
    prefix = f"r_{tag}_"
    spec = points_lots.Lots(prefix=prefix, users=users, lots=users * LOTS_PER_USER,
                            earned_at=datetime.now(timezone.utc) - timedelta(days=1),
                            expires_at=None)
    with psycopg.connect(dsn) as conn:
        points_lots.load(conn, spec)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        return dict(conn.execute("SELECT user_id, points_balance FROM users"
                                 " WHERE user_id LIKE %s AND points_balance > 0",
                                 (prefix + "%",)).fetchall())


class Burns:
    """New burn bodies: a random user with points left, 1 to MAX_BURN of them, never more
    than the user holds (every one must be answered 201)."""

    def __init__(self, tag: str, balances: dict[str, int], seed: int = 2):
        self.tag, self.balances = tag, dict(balances)
        self.users = sorted(self.balances)
        self.rng = random.Random(seed)
        self.count = 0
        self.occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def make(self) -> dict:
        rng = self.rng
        while True:
            user_id = self.users[rng.randrange(len(self.users))]
            if self.balances[user_id] > 0:
                break
        points = rng.randint(1, min(MAX_BURN, self.balances[user_id]))
        self.balances[user_id] -= points
        self.count += 1
        return {"event_id": f"burn-{self.tag}-{self.count}", "type": "redemption",
                "user_id": user_id, "occurred_at": self.occurred, "points": points,
                "reference": f"order-{self.count}"}


def redemption_steps(clock) -> None:
    """The steps of a burn (through the ORM session), none counted inside another. Labelled
    apart from the payment's steps, which record.py's smoke test counts."""
    from sqlalchemy.orm import Session

    from promo_engine.api import recording
    from promo_engine.coordination.replay_cache import ReplayCache
    from promo_engine.ledger import lots, spending
    from promo_engine.ledger.event_writes import SqlEventWrites
    from promo_engine.ledger.recorder import Ledger
    clock.wrap(recording, "validated_event", "validation of the body")
    clock.wrap(recording, "canonical_body_hash", "hash of the body")
    clock.wrap(ReplayCache, "get", "replay lookup, in Redis")
    clock.wrap(SqlEventWrites, "lock_user", "user locked, counters read, through the session")
    if hasattr(lots, "catch_up"):
        clock.wrap(lots, "catch_up", "due lots matured and expired (none here)")
    else:
        clock.wrap(lots, "expire", "due lots expired (none here)")
    clock.wrap(Session, "get", "rows read back through the session (the user, the spent row)")
    clock.wrap(spending.Spending, "judge", "balance judged")
    clock.wrap(spending, "grant_rows", "rows and the answer built")
    clock.wrap(SqlEventWrites, "write", "event and spent row written")
    clock.wrap(lots, "draw", "points drawn from the lots, moves added")
    clock.wrap(Session, "flush", "ORM flush of the lots and moves")
    clock.wrap(Session, "commit", "COMMIT, through the session")
    clock.wrap(Ledger, "_after_commit", "answer remembered, in Redis")


def balances_check(dsn: str) -> list[str]:
    """What breaks the points ledger's invariants after the run (none when it adds up)."""
    import psycopg
    with psycopg.connect(dsn) as conn:
        return [f"{n:,} {what}" for what, n in points_lots.verify(conn).items() if n]
