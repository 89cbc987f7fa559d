"""The users of a batch locked, and their counters read, in one round trip.

Recorded one at a time, a payment or activation spends a round trip on locking its user and
reading the counters (`PostgresEventWrites.lock_user`). A batch knows its events before it
records the first (`batches.py`), so `UserReads.prefetch` locks the users of its plain
payments and activations in one statement, in the order of their ids, and reads their
counters and the stored copies of their events in the statements sent with it. The first
event of each user then takes its state from there (`take`) instead of the database; a
user's later events in the batch read again, so that they see the earlier ones' writes.

What was read stays true until the batch ends: the user's row is locked by the batch's
transaction from the prefetch on (rolling an event back to its savepoint keeps locks taken
before the savepoint), and whatever changes a user's counters locks that row first, as the
one-at-a-time path relies on too. The counters are read by a statement after the lock's,
because READ COMMITTED takes a snapshot per statement: one that began before the lock waited
for another transaction of the user would miss its writes.

Only events whose reads are exactly these are served: no device (its row is locked after
the user's, event by event), no risk policy and no pending points (their reads and the
maturing of lots stay in `lock_user`). A user new to the ledger gets its row from the lock,
as an event alone does; it is dropped again before the batch commits if none of the user's
events was written (`unused`), so that an event refused, or left for the next batch, leaves
no trace of its user, as when it is rolled back alone.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from promo_engine.core.campaign_type import UserState
from promo_engine.core.event import Event
from promo_engine.ledger.denylist import directory as denylist
from promo_engine.ledger.event_rows import StoredEvent, day_range, uses_from_rows

# As `postgres_writes._PG_LOCK_USER`, for many users: rows made for the new ones, and every
# row locked without a new version of it (ON CONFLICT DO UPDATE ... WHERE false). In the
# order of their ids (the bytes' order, as Python sorts a batch's events), so that two
# batches never each hold a user the other waits for. Returns the rows it made.
_PG_LOCK_USERS = """
INSERT INTO users (user_id, activations, payments, points_balance, created_at)
SELECT user_id, 0, 0, 0, %(now)s FROM unnest(%(user_ids)s::text[]) AS u(user_id)
ORDER BY user_id COLLATE "C"
ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id WHERE false
RETURNING user_id
"""

_PG_DROP_USERS = "DELETE FROM users WHERE user_id = ANY(%(user_ids)s::text[])"

# The users' counters (campaign_id NULL), their uses of each campaign, and their uses on the
# days around each one's event (`day_range`).
_PG_USERS_COUNTERS = """
SELECT user_id, NULL::text AS campaign_id, NULL::date AS day, activations, payments,
       points_balance, pending_points, last_paid_at
FROM users WHERE user_id = ANY(%(user_ids)s::text[])
UNION ALL
SELECT user_id, campaign_id, NULL::date, uses, NULL, NULL, NULL, NULL
FROM user_campaign_usage WHERE user_id = ANY(%(user_ids)s::text[])
UNION ALL
SELECT d.user_id, d.campaign_id, d.day, d.uses, NULL, NULL, NULL, NULL
FROM unnest(%(user_ids)s::text[], %(first_days)s::date[], %(last_days)s::date[])
     AS q(user_id, first_day, last_day)
JOIN user_campaign_daily_usage d ON d.user_id = q.user_id AND d.day BETWEEN q.first_day
                                                                     AND q.last_day
"""

_PG_STORED_EVENTS = """
SELECT event_id, request_hash, response FROM events
WHERE client_id = %(client_id)s AND event_id = ANY(%(event_ids)s::text[])
"""


class _Read:
    """One user's counters as the prefetch found them, for the event they were read for."""

    __slots__ = ("event_id", "days", "counters", "uses", "stored")

    def __init__(self, event_id: str, days: tuple[date, date]):
        self.event_id = event_id
        self.days = days
        self.counters: tuple | None = None  # (activations, payments, balance, pending, paid)
        self.uses: list[tuple] = []  # (campaign_id, day, uses)
        self.stored: StoredEvent | None = None


class UserReads:
    """The prefetched users of one batch; `take` hands each one out once."""

    def __init__(self):
        self._reads: dict[str, _Read] = {}
        self._made: set[str] = set()  # users whose rows the prefetch made
        self._written: set[str] = set()  # users with an event written in the batch

    def written(self, user_id: str) -> None:
        """An event of the user is written (in the batch, still to commit)."""
        self._written.add(user_id)

    def unused(self) -> list[str]:
        """Users whose rows the prefetch made and no event of the batch wrote to."""
        return sorted(self._made - self._written)

    def drop_unused(self, connection) -> None:
        """Drop the rows of `unused` users, in the batch's transaction, before its COMMIT."""
        unused = self.unused()
        if unused:
            connection.execute(_PG_DROP_USERS, {"user_ids": unused})

    def __len__(self) -> int:
        return len(self._reads)

    def prefetch(self, connection, client_id: str, events: list[Event], now: datetime) -> None:
        """Lock the users of `events` (those that may be served) and read what their first
        events need, in one round trip on the batch's psycopg `connection`. Raises
        psycopg's error as it comes."""
        wanted: dict[str, _Read] = {}
        for event in events:
            if event.user_id not in wanted:
                wanted[event.user_id] = _Read(event.event_id, day_range(event.occurred_at))
        if not wanted:
            return
        user_ids = list(wanted)
        with connection.pipeline():
            made = connection.execute(_PG_LOCK_USERS, {"user_ids": user_ids, "now": now})
            counters = connection.execute(_PG_USERS_COUNTERS, {
                "user_ids": user_ids,
                "first_days": [read.days[0] for read in wanted.values()],
                "last_days": [read.days[1] for read in wanted.values()]})
            stored = connection.execute(_PG_STORED_EVENTS, {
                "client_id": client_id,
                "event_ids": [read.event_id for read in wanted.values()]})
        self._made.update(user_id for (user_id,) in made.fetchall())
        for user_id, campaign_id, day, *values in counters.fetchall():
            read = wanted[user_id]
            if campaign_id is None:
                read.counters = tuple(values)
            else:
                read.uses.append((campaign_id, day, values[0]))
        stored_by_id = {event_id: StoredEvent(request_hash, response)
                        for event_id, request_hash, response in stored.fetchall()}
        for user_id, read in wanted.items():
            read.stored = stored_by_id.get(read.event_id)
            self._reads[user_id] = read

    def take(self, engine, *, user_id: str, event_id: str, occurred_at: datetime,
             find_stored: bool, mature: bool, device_id: str | None,
             with_risk: bool) -> tuple[UserState, StoredEvent | None, int] | None:
        """`lock_user`'s answer for the event the user was prefetched for, once; None when
        the event needs reads of its own (then the user's state is read again)."""
        read = self._reads.pop(user_id, None)
        if (read is None or read.event_id != event_id or not find_stored or mature
                or device_id is not None or with_risk or read.days != day_range(occurred_at)):
            return None
        return _state(engine, user_id, read), read.stored, read.counters[3]

    def peek(self, engine, event: Event) -> UserState | None:
        """The state `take` will give `event`, if it is the event its user was prefetched
        for and is not a replay; nothing is taken."""
        read = self._reads.get(event.user_id)
        if read is None or read.event_id != event.event_id or read.stored is not None:
            return None
        return _state(engine, event.user_id, read)


def _state(engine, user_id: str, read: _Read) -> UserState:
    activations, payments, balance, _, last_paid_at = read.counters
    if last_paid_at is not None:  # in the session's TimeZone: UTC, as the ORM reads it
        last_paid_at = last_paid_at.astimezone(timezone.utc)
    campaign_uses, daily_uses = uses_from_rows(read.uses)
    return UserState(user_id=user_id, activations=activations, payments=payments,
                     points_balance=balance, campaign_uses=campaign_uses,
                     daily_uses=daily_uses, last_payment_at=last_paid_at,
                     device_uses={}, device_daily_uses={},
                     denied=denylist.denied(engine, user_id, None), risk=None)
