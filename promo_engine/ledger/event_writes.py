"""The two database steps of recording a payment or activation, for each kind of database.

Recording an event takes two steps around the evaluation: first lock the user and read the
counters evaluation needs, then write the event, its rewards and the counters, and commit.
This is the hot path, and on PostgreSQL each statement is a round trip plus SQLAlchemy's
and psycopg's work per statement, which together cost more than the evaluation itself. So:

- `PostgresEventWrites` sends each step as one psycopg pipeline: the user's row (created if
  new) and its lock, then its counters (and the stored copy of the event, when no replay
  cache has looked for it) in one round trip; the event, rewards, counters and user in one
  data-modifying statement, pipelined with its COMMIT. Fixed SQL (arrays for the rows), so
  psycopg prepares it once per connection.
- `SqlEventWrites` does the same with SQLAlchemy Core statements built once per dialect
  (SQLite, and any database without the pipeline), one statement per table.

Both take the same locks in the same order and write the same rows: the suite runs the
whole contract against each.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg import pq
from sqlalchemy import Date, bindparam, insert, null, select, type_coerce, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from promo_engine.core.campaign_type import UserState
from promo_engine.core.event import REFUND
from promo_engine.ledger.database import end_read, retrying, run_in_transaction
from promo_engine.ledger.models import (CampaignUsage, EventRecord, RewardRecord,
                                        UserCampaignDailyUsage, UserCampaignUsage, UserRecord)


class AlreadyRecorded(Exception):
    """The event's INSERT met a committed copy of the event."""


@dataclass(frozen=True)
class StoredEvent:
    request_hash: str
    response: str


@dataclass
class EventRows:
    """Everything one new payment or activation writes, built before the first write."""
    event: dict  # the events row
    rewards: list[dict]  # rewards rows, in grant order, without event_pk
    uses: list[tuple[str, date]]  # (campaign id, campaign-local day) per campaign reward
    activated: int
    paid: int
    balance: int  # the user's points balance after this event


def _use_counts(uses: list[tuple[str, date]]) -> tuple[Counter, Counter]:
    """Uses per campaign and per (campaign, day): one upsert row each, since one statement
    may not change the same counter row twice."""
    return Counter(campaign_id for campaign_id, _ in uses), Counter(uses)


def _uses_from_rows(rows) -> tuple[dict, dict]:
    uses = {campaign_id: count for campaign_id, day, count in rows if day is None}
    daily = {(campaign_id, day): count for campaign_id, day, count in rows if day is not None}
    return uses, daily


def _day_range(occurred_at: datetime) -> tuple[date, date]:
    """The event's local day in any zone is within a day of its UTC date."""
    utc_day = occurred_at.astimezone(timezone.utc).date()
    return utc_day - timedelta(days=1), utc_day + timedelta(days=1)


# -- SQLAlchemy Core: SQLite (and any other dialect) ----------------------------------

_users = UserRecord.__table__
_events = EventRecord.__table__
_rewards = RewardRecord.__table__
_uses = UserCampaignUsage.__table__
_daily_uses = UserCampaignDailyUsage.__table__
_campaign_usage = CampaignUsage.__table__


class _CoreStatements:
    """Built once per dialect, with bound parameters: building a statement, and the ORM's
    handling of it, cost more than the round trip itself."""

    def __init__(self, dialect: str):
        insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # A no-op ON CONFLICT DO UPDATE locks an existing row as FOR UPDATE would.
        self.lock_user = (
            insert_for(_users).values(user_id=bindparam("user_id"), activations=0, payments=0,
                                      points_balance=0, created_at=bindparam("now"))
            .on_conflict_do_update(index_elements=["user_id"], set_={"user_id": _users.c.user_id})
            .returning(_users.c.activations, _users.c.payments, _users.c.points_balance))
        self.campaign_uses = union_all(
            select(_uses.c.campaign_id, type_coerce(null(), Date).label("day"), _uses.c.uses)
            .where(_uses.c.user_id == bindparam("user_id")),
            select(_daily_uses.c.campaign_id, _daily_uses.c.day, _daily_uses.c.uses)
            .where(_daily_uses.c.user_id == bindparam("user_id"),
                   _daily_uses.c.day.between(bindparam("first_day", type_=Date),
                                             bindparam("last_day", type_=Date))))
        self.insert_event = (
            insert_for(_events).on_conflict_do_nothing(index_elements=["client_id", "event_id"])
            .returning(_events.c.id))
        self.insert_rewards = insert(_rewards)
        uses = insert_for(_uses)
        self.count_use = uses.on_conflict_do_update(
            index_elements=["campaign_id", "user_id"], set_={"uses": _uses.c.uses + uses.excluded.uses})
        daily = insert_for(_daily_uses)
        self.count_daily_use = daily.on_conflict_do_update(
            index_elements=["campaign_id", "user_id", "day"],
            set_={"uses": _daily_uses.c.uses + daily.excluded.uses})
        self.update_user = (
            update(_users).where(_users.c.user_id == bindparam("user_id_"))
            .values(activations=_users.c.activations + bindparam("activated"),
                    payments=_users.c.payments + bindparam("paid"),
                    points_balance=bindparam("balance")))


_CORE_STATEMENTS: dict[str, _CoreStatements] = {}


def _core_statements(dialect: str) -> _CoreStatements:
    statements = _CORE_STATEMENTS.get(dialect)
    if statements is None:
        statements = _CORE_STATEMENTS[dialect] = _CoreStatements(dialect)
    return statements


def read_campaign_uses(session, user_id: str, occurred_at: datetime) -> tuple[dict, dict]:
    """The user's uses of each campaign, ever and per local day around the event, as
    committed now (no lock: quotes)."""
    first_day, last_day = _day_range(occurred_at)
    rows = session.connection().execute(
        _core_statements(session.get_bind().dialect.name).campaign_uses,
        {"user_id": user_id, "first_day": first_day, "last_day": last_day}).all()
    return _uses_from_rows(rows)


_STORED_EVENT = select(_events.c.request_hash, _events.c.response).where(
    _events.c.client_id == bindparam("client_id"), _events.c.event_id == bindparam("event_id"))


class SqlEventWrites:
    """One SQLAlchemy Core statement per table, in the session's transaction, which
    `run_in_transaction` commits."""

    finds_stored_event = False  # the caller looks the event up itself
    commit_in_doubt = False  # the caller commits, after these writes

    def __init__(self, session):
        self.session = session
        self.statements = _core_statements(session.get_bind().dialect.name)

    def run(self, work):
        """`work` in a write transaction of the session, committed, retried on conflicts."""
        return run_in_transaction(self.session, work)

    def find_stored(self, client_id: str, event_id: str) -> StoredEvent | None:
        row = self.session.connection().execute(
            _STORED_EVENT, {"client_id": client_id, "event_id": event_id}).first()
        return StoredEvent(*row) if row is not None else None

    def rollback(self) -> None:
        self.session.rollback()

    def close(self) -> None:
        """The session's transaction ends with `run_in_transaction`."""

    def take_from_campaign(self, campaign_id: str, cost: int, *, budget_limit: int | None,
                           max_redemptions: int | None) -> bool:
        """Budget and one redemption from the campaign's usage row, in one guarded UPDATE
        (never check-then-act); False when they do not fit."""
        usage = _campaign_usage
        conditions = [usage.c.campaign_id == campaign_id]
        if budget_limit is not None:
            conditions.append(usage.c.spent + cost <= budget_limit)
        if max_redemptions is not None:
            conditions.append(usage.c.redemptions + 1 <= max_redemptions)
        result = self.session.connection().execute(
            update(usage).where(*conditions)
            .values(spent=usage.c.spent + cost, redemptions=usage.c.redemptions + 1))
        return result.rowcount == 1

    def lock_user(self, *, user_id: str, occurred_at: datetime, now: datetime,
                  client_id: str, event_id: str,
                  find_stored: bool = False) -> tuple[UserState, StoredEvent | None]:
        """Create the user's row if new and lock it until commit, in one statement; then
        the counters, read after the lock, so the user's last event is always counted.
        The caller looks for a stored copy of the event itself (`finds_stored_event`)."""
        connection = self.session.connection()
        user = connection.execute(self.statements.lock_user,
                                  {"user_id": user_id, "now": now}).one()
        uses, daily = read_campaign_uses(self.session, user_id, occurred_at)
        return UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                         points_balance=user.points_balance, campaign_uses=uses,
                         daily_uses=daily), None

    def write(self, rows: EventRows) -> None:
        connection, statements = self.session.connection(), self.statements
        event_pk = connection.execute(statements.insert_event, rows.event).scalar()
        if event_pk is None:
            raise AlreadyRecorded()
        if rows.rewards:
            connection.execute(statements.insert_rewards,
                               [dict(row, event_pk=event_pk) for row in rows.rewards])
        user_id = rows.event["user_id"]
        per_campaign, per_day = _use_counts(rows.uses)
        if per_campaign:
            connection.execute(statements.count_use, [
                {"campaign_id": campaign_id, "user_id": user_id, "uses": count}
                for campaign_id, count in per_campaign.items()])
            connection.execute(statements.count_daily_use, [
                {"campaign_id": campaign_id, "user_id": user_id, "day": day, "uses": count}
                for (campaign_id, day), count in per_day.items()])
        connection.execute(statements.update_user, {
            "user_id_": user_id, "activated": rows.activated, "paid": rows.paid,
            "balance": rows.balance})


# -- PostgreSQL: two pipelines of fixed SQL ----------------------------------------------

# The user's row, created if new and locked until commit without writing a new version of it:
# ON CONFLICT DO UPDATE locks the row it conflicts with even when its WHERE updates nothing.
# (A no-op SET would lock too, but write a version of the row on every event, and the
# event's own UPDATE of the row writes another.) It waits for another event of the user.
_PG_LOCK_USER = """
INSERT INTO users (user_id, activations, payments, points_balance, created_at)
VALUES (%(user_id)s, 0, 0, 0, %(now)s)
ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id WHERE false
"""

# Its own statement, after the lock in the same pipeline: READ COMMITTED takes a snapshot per
# statement, so it sees the last event of this user even when the lock had to wait for it.
# The user's counters come first (campaign_id NULL), then the uses of each campaign.
_PG_USER_COUNTERS = """
SELECT NULL AS campaign_id, NULL::date AS day, activations, payments, points_balance
FROM users WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, NULL::date, uses, NULL, NULL FROM user_campaign_usage
WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, day, uses, NULL, NULL FROM user_campaign_daily_usage
WHERE user_id = %(user_id)s AND day BETWEEN %(first_day)s AND %(last_day)s
"""

_PG_STORED_EVENT = """
SELECT request_hash, response FROM events WHERE client_id = %(client_id)s AND event_id = %(event_id)s
"""

# Everything an event writes, in one statement. The event INSERT has no ON CONFLICT: a copy
# of the event committed meanwhile (a different body under the same id, by another user, the
# only copy the user lock does not stop) fails the statement with a unique violation, which
# aborts the pipelined COMMIT too, so nothing of this event is written.
_PG_WRITE_EVENT = """
WITH event AS (
  INSERT INTO events (client_id, event_id, type, user_id, merchant_id, amount_minor, currency,
                      occurred_at, refunded_minor, original_event_id, request_hash, response,
                      created_at)
  VALUES (%(client_id)s, %(event_id)s, %(type)s, %(user_id)s, %(merchant_id)s,
          %(amount_minor)s, %(currency)s, %(occurred_at)s, 0, NULL, %(request_hash)s,
          %(response)s, %(created_at)s)
  RETURNING id
), granted AS (
  INSERT INTO rewards (reward_id, event_pk, user_id, campaign_id, kind, points, amount_minor,
                       currency, voucher_code, voucher_expires_at, local_day, reverses_id,
                       created_at)
  SELECT r.reward_id, event.id, %(user_id)s, r.campaign_id, r.kind, r.points, r.amount_minor,
         r.currency, r.voucher_code, r.voucher_expires_at, r.local_day, NULL, %(created_at)s
  FROM event, unnest(%(r_reward_id)s::text[], %(r_campaign_id)s::text[], %(r_kind)s::text[],
                     %(r_points)s::bigint[], %(r_amount_minor)s::bigint[], %(r_currency)s::text[],
                     %(r_voucher_code)s::text[], %(r_voucher_expires_at)s::timestamptz[],
                     %(r_local_day)s::date[])
       WITH ORDINALITY AS r(reward_id, campaign_id, kind, points, amount_minor, currency,
                            voucher_code, voucher_expires_at, local_day, position)
  ORDER BY r.position
), counted AS (
  INSERT INTO user_campaign_usage (campaign_id, user_id, uses)
  SELECT u.campaign_id, %(user_id)s, u.uses
  FROM event, unnest(%(u_campaign_id)s::text[], %(u_uses)s::int[]) AS u(campaign_id, uses)
  ON CONFLICT (campaign_id, user_id) DO UPDATE SET uses = user_campaign_usage.uses + excluded.uses
), counted_daily AS (
  INSERT INTO user_campaign_daily_usage (campaign_id, user_id, day, uses)
  SELECT d.campaign_id, %(user_id)s, d.day, d.uses
  FROM event, unnest(%(d_campaign_id)s::text[], %(d_day)s::date[], %(d_uses)s::int[])
       AS d(campaign_id, day, uses)
  ON CONFLICT (campaign_id, user_id, day)
  DO UPDATE SET uses = user_campaign_daily_usage.uses + excluded.uses
), user_counted AS (
  UPDATE users SET activations = activations + %(activated)s, payments = payments + %(paid)s,
                   points_balance = %(balance)s
  WHERE user_id = %(user_id)s AND EXISTS (SELECT FROM event)
)
SELECT id FROM event
"""

_REWARD_COLUMNS = ("reward_id", "campaign_id", "kind", "points", "amount_minor", "currency",
                   "voucher_code", "voucher_expires_at", "local_day")


_PG_TAKE_FROM_CAMPAIGN = """
UPDATE campaign_usage SET spent = spent + %(cost)s, redemptions = redemptions + 1
WHERE campaign_id = %(campaign_id)s
  AND (%(budget_limit)s::bigint IS NULL OR spent + %(cost)s <= %(budget_limit)s::bigint)
  AND (%(max_redemptions)s::bigint IS NULL OR redemptions + 1 <= %(max_redemptions)s::bigint)
"""


class PostgresEventWrites:
    """Two round trips per event: lock and read, then write and commit, on a connection of
    its own from the engine's pool. The ORM session is not used: its bookkeeping around a
    transaction (begun and committed even when empty) costs more than these round trips."""

    finds_stored_event = True

    def __init__(self, engine, session):
        self.engine = engine
        self.session = session
        self._pooled = None
        self.commit_in_doubt = False

    def run(self, work):
        """`work`, which commits (`write`) and closes, retried on conflicts. Reads in the
        session end before and after (an API key looked up, a counter built from the
        ledger), so that a request holds no connection it no longer needs. Where no session
        was made yet (the usual case) none is made: making one costs more than a round trip."""
        made = self.session.registry.has  # db.session is a scoped_session
        if made():
            end_read(self.session)
        try:
            return retrying(work)
        finally:
            # Reads only (the event's writes are not in the session): a rollback ends them
            # in any state.
            if made() and self.session().in_transaction():
                self.session.rollback()

    def _driver_connection(self):
        if self._pooled is None:
            try:
                # Pinged when idle, as the session's are (`database.py`). Unlike
                # `Engine.connect`, the pool's own checkout does not wrap psycopg's errors:
                # a database that is down must still be an OperationalError (a 503), not an
                # unknown error (a 500).
                self._pooled = self.engine.raw_connection()
            except psycopg.Error as exc:
                raise self._error(exc, "connect") from exc
        return self._pooled.driver_connection

    def rollback(self) -> None:
        if self._pooled is not None:
            self._pooled.rollback()

    def close(self) -> None:
        """Back to the pool, which rolls back whatever did not commit."""
        if self._pooled is not None:
            self._pooled.close()
            self._pooled = None
        self.commit_in_doubt = False

    def find_stored(self, client_id: str, event_id: str) -> StoredEvent | None:
        try:
            row = self._driver_connection().execute(
                _PG_STORED_EVENT, {"client_id": client_id, "event_id": event_id}).fetchone()
        except psycopg.Error as exc:
            raise self._error(exc, _PG_STORED_EVENT) from exc
        return StoredEvent(*row) if row is not None else None

    def _error(self, exc, statement: str) -> DBAPIError:
        """psycopg's error as SQLAlchemy would have raised it (IntegrityError,
        OperationalError ...), so that retries and error answers treat both paths alike.
        A connection that can no longer be used is invalidated, so the pool drops it rather
        than try to reset it: one that was lost, and one a failed pipeline left busy (its
        server went away mid-pipeline), which SQLAlchemy does not recognise as lost."""
        dialect = self.engine.dialect
        invalidated = False
        if self._pooled is not None:
            driver = self._pooled.driver_connection
            invalidated = (driver.closed or driver.broken
                           or driver.pgconn.pipeline_status != pq.PipelineStatus.OFF
                           or dialect.is_disconnect(exc, self._pooled.dbapi_connection, None))
            if invalidated:
                self._pooled.invalidate(exc)
                self._pooled = None
        return DBAPIError.instance(statement, None, exc, psycopg.Error,
                                   connection_invalidated=invalidated, dialect=dialect)

    def take_from_campaign(self, campaign_id: str, cost: int, *, budget_limit: int | None,
                           max_redemptions: int | None) -> bool:
        """Budget and one redemption from the campaign's usage row, in one guarded UPDATE
        (never check-then-act); False when they do not fit."""
        try:
            cursor = self._driver_connection().execute(_PG_TAKE_FROM_CAMPAIGN, {
                "campaign_id": campaign_id, "cost": cost, "budget_limit": budget_limit,
                "max_redemptions": max_redemptions})
        except psycopg.Error as exc:
            raise self._error(exc, _PG_TAKE_FROM_CAMPAIGN) from exc
        return cursor.rowcount == 1

    def lock_user(self, *, user_id: str, occurred_at: datetime, now: datetime,
                  client_id: str, event_id: str,
                  find_stored: bool = True) -> tuple[UserState, StoredEvent | None]:
        """The user locked and its counters, in one round trip; with `find_stored`, also
        the event as stored if it was recorded before (the caller has no replay cache)."""
        first_day, last_day = _day_range(occurred_at)
        connection = self._driver_connection()
        try:
            with connection.pipeline():
                connection.execute(_PG_LOCK_USER, {"user_id": user_id, "now": now})
                counters = connection.execute(_PG_USER_COUNTERS, {
                    "user_id": user_id, "first_day": first_day, "last_day": last_day})
                stored = (connection.execute(_PG_STORED_EVENT,
                                             {"client_id": client_id, "event_id": event_id})
                          if find_stored else None)
            rows = counters.fetchall()
            stored_row = stored.fetchone() if stored is not None else None
        except psycopg.Error as exc:
            raise self._error(exc, _PG_LOCK_USER) from exc
        [(_, _, activations, payments, balance)] = [row for row in rows if row[0] is None]
        campaign_uses, daily_uses = _uses_from_rows(
            [(campaign_id, day, count) for campaign_id, day, count, _, _ in rows
             if campaign_id is not None])
        state = UserState(user_id=user_id, activations=activations, payments=payments,
                          points_balance=balance, campaign_uses=campaign_uses,
                          daily_uses=daily_uses)
        return state, (StoredEvent(*stored_row) if stored_row is not None else None)

    def write(self, rows: EventRows) -> None:
        """Write and commit in one round trip; a copy of the event committed meanwhile
        raises IntegrityError with nothing written."""
        params = dict(rows.event)
        for column in _REWARD_COLUMNS:
            params["r_" + column] = [row[column] for row in rows.rewards]
        per_campaign, per_day = _use_counts(rows.uses)
        params["u_campaign_id"], params["u_uses"] = list(per_campaign), list(per_campaign.values())
        params["d_campaign_id"] = [campaign_id for campaign_id, _ in per_day]
        params["d_day"] = [day for _, day in per_day]
        params["d_uses"] = list(per_day.values())
        params.update(activated=rows.activated, paid=rows.paid, balance=rows.balance)
        connection = self._driver_connection()
        # From here until PostgreSQL answers, the commit may have happened without this
        # process knowing (the connection lost after the COMMIT arrived): the caller must
        # then keep the event's Redis reservations, which settle at their deadline.
        self.commit_in_doubt = True
        try:
            with connection.pipeline():
                connection.execute(_PG_WRITE_EVENT, params)
                connection.commit()
        except psycopg.Error as exc:
            error = self._error(exc, _PG_WRITE_EVENT)
            # An error PostgreSQL reported on a live connection aborted the COMMIT with it.
            self.commit_in_doubt = error.connection_invalidated
            raise error from exc
        self.commit_in_doubt = False


EventWrites = SqlEventWrites | PostgresEventWrites


def event_writes_for(db, event) -> EventWrites:
    """The writes for this event on the program's database. Refunds (rare, and with more
    to read) go through the session on every database."""
    engine = db.engine
    if engine.dialect.name == "postgresql" and event.type != REFUND:
        return PostgresEventWrites(engine, db.session)
    return SqlEventWrites(db.session)
