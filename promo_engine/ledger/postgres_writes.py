"""The two database steps of recording a payment or activation on PostgreSQL, in fixed SQL
(see `event_writes.py` for the steps, and for the SQLAlchemy Core version every other
database uses).

Apart from `event_writes.py` because it is the hot path's own SQL, tuned for PostgreSQL:
the user's lock, then maturing pending points and reading the counters (with the stored
copy of the event) in one statement; the event, its rewards, lots, vouchers, counters,
risk counters and webhook deliveries in one statement, then COMMIT.

Statements go one by one, not in a psycopg pipeline (`pipelined`): three statements and a
COMMIT cost the client 240 us of CPU pipelined against 145 us one by one, PostgreSQL 120 us
against 85, and even the wall time was longer (580 against 350 us; psycopg 3.3). So there
are as few statements as the snapshots need: the lock, then one read after it.
"""
from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timezone, tzinfo

import psycopg
from psycopg import pq
from sqlalchemy.exc import DBAPIError

from promo_engine.core.campaign_type import UserState
from promo_engine.ledger import abuse_counts
from promo_engine.ledger.database import end_read, retrying
from promo_engine.ledger.denylist import directory as denylist
from promo_engine.ledger.event_rows import (EventRows, StoredEvent, day_range,
                                            use_counts, uses_from_rows)
from promo_engine.ledger.webhook_outbox import (PG_THRESHOLDS, announced_thresholds,
                                                delivery_rows,
                                                event_delivery_rows, threshold_message,
                                                thresholds_reached, used_up)

# -- PostgreSQL: fixed SQL, a statement per round trip ------------------------------------

# The user's row, created if new and locked until commit without writing a new version of it:
# ON CONFLICT DO UPDATE locks the row it conflicts with even when its WHERE updates nothing.
# (A no-op SET would lock too, but write a version of the row on every event, and the
# event's own UPDATE of the row writes another.) It waits for another event of the user.
_PG_LOCK_USER = """
INSERT INTO users (user_id, activations, payments, points_balance, created_at)
VALUES (%(user_id)s, 0, 0, 0, %(now)s)
ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id WHERE false
"""

# Its own statement, after the lock: READ COMMITTED takes a snapshot per
# statement, so it sees the last event of this user even when the lock had to wait for it.
# The user's counters come first (campaign_id NULL), then the uses of each campaign.
_PG_USER_COUNTERS = """
SELECT NULL AS campaign_id, NULL::date AS day, activations, payments, points_balance,
       pending_points, last_paid_at
FROM users WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, NULL::date, uses, NULL, NULL, NULL, NULL FROM user_campaign_usage
WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, day, uses, NULL, NULL, NULL, NULL FROM user_campaign_daily_usage
WHERE user_id = %(user_id)s AND day BETWEEN %(first_day)s AND %(last_day)s
"""

# The user's pending lots whose time has come made available (lots.mature, in one
# statement): after the lock, only where points can be pending at all. What a
# negative balance is owed is paid from them first, in the order they mature.
_PG_MATURE = """
WITH owed AS (
  SELECT greatest(-points_balance, 0) AS debt FROM users WHERE user_id = %(user_id)s
), due AS (
  SELECT reward_pk, remaining,
         coalesce(sum(remaining) OVER (ORDER BY available_at, reward_pk
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
           AS before
  FROM points_lots WHERE user_id = %(user_id)s AND pending AND available_at <= %(now)s
), paying AS (
  SELECT reward_pk, remaining, least(remaining, greatest(owed.debt - before, 0)) AS paid
  FROM due, owed
), matured AS (
  UPDATE points_lots l SET pending = false, remaining = l.remaining - paying.paid,
                           debt_paid = l.debt_paid + paying.paid
  FROM paying WHERE l.reward_pk = paying.reward_pk
)
UPDATE users SET points_balance = points_balance + (SELECT sum(remaining) FROM paying),
                 pending_points = pending_points - (SELECT sum(remaining) FROM paying)
WHERE user_id = %(user_id)s AND EXISTS (SELECT FROM paying)
"""

_PG_STORED_EVENT = """
SELECT request_hash, response FROM events WHERE client_id = %(client_id)s AND event_id = %(event_id)s
"""

# The counters with the event as stored, if it was recorded before, in the user's row (an
# eighth column, NULL elsewhere): the replay lookup costs no round trip of its own.
# After the user's lock, so a copy of the event that committed while this one waited for
# the lock is found here (its own user's copy always holds the same lock).
_PG_USER_COUNTERS_STORED = """
SELECT NULL AS campaign_id, NULL::date AS day, activations, payments, points_balance,
       pending_points, last_paid_at,
       (SELECT ARRAY[request_hash, response] FROM events
        WHERE client_id = %(client_id)s AND event_id = %(event_id)s) AS stored
FROM users WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, NULL::date, uses, NULL, NULL, NULL, NULL, NULL::text[]
FROM user_campaign_usage WHERE user_id = %(user_id)s
UNION ALL
SELECT campaign_id, day, uses, NULL, NULL, NULL, NULL, NULL::text[]
FROM user_campaign_daily_usage
WHERE user_id = %(user_id)s AND day BETWEEN %(first_day)s AND %(last_day)s
"""

# Everything an event writes, in one statement. The event INSERT has no ON CONFLICT: a copy
# of the event committed meanwhile (a different body under the same id, by another user, the
# only copy the user lock does not stop) fails the statement with a unique violation before
# any COMMIT is sent, so nothing of this event is written.
_PG_WRITE_EVENT = """
WITH event AS (
  INSERT INTO events (client_id, event_id, type, user_id, merchant_id, amount_minor, currency,
                      occurred_at, refunded_minor, original_event_id, request_hash, response,
                      created_at, device_id)
  VALUES (%(client_id)s, %(event_id)s, %(type)s, %(user_id)s, %(merchant_id)s,
          %(amount_minor)s, %(currency)s, %(occurred_at)s, 0, NULL, %(request_hash)s,
          %(response)s, %(created_at)s, %(device_id)s)
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
  RETURNING id, reward_id
), lots AS (
  INSERT INTO points_lots (reward_pk, user_id, points, remaining, debt_paid, available_at,
                           pending, expires_at)
  SELECT granted.id, %(user_id)s, l.points, l.remaining, l.debt_paid,
         %(l_available_at)s::timestamptz, %(l_pending)s::boolean, %(l_expires_at)s::timestamptz
  FROM granted JOIN unnest(%(l_reward_id)s::text[], %(l_points)s::bigint[],
                           %(l_remaining)s::bigint[], %(l_debt_paid)s::bigint[])
                    AS l(reward_id, points, remaining, debt_paid)
                 ON l.reward_id = granted.reward_id
), issued AS (
  INSERT INTO vouchers (code, reward_pk, user_id, campaign_id, amount_minor, currency,
                        min_amount_minor, issued_at, expires_at)
  SELECT v.code, granted.id, %(user_id)s, v.campaign_id, v.amount_minor, v.currency,
         v.min_amount_minor, v.issued_at, v.expires_at
  FROM granted JOIN unnest(%(v_reward_id)s::text[], %(v_code)s::text[],
                           %(v_campaign_id)s::text[], %(v_amount_minor)s::bigint[],
                           %(v_currency)s::text[], %(v_min_amount_minor)s::bigint[],
                           %(v_issued_at)s::timestamptz[], %(v_expires_at)s::timestamptz[])
                    AS v(reward_id, code, campaign_id, amount_minor, currency,
                         min_amount_minor, issued_at, expires_at)
                 ON v.reward_id = granted.reward_id
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
                   points_balance = %(balance)s, pending_points = %(pending)s,
                   last_paid_at = greatest(last_paid_at,
                                           CASE WHEN %(paid)s > 0 THEN %(occurred_at)s END)
  WHERE user_id = %(user_id)s AND EXISTS (SELECT FROM event)
)
SELECT id FROM event
"""

# The same with the event's webhooks (`webhook_outbox.py`): a statement of its own, so that
# a program without webhook endpoints pays nothing for them. Its payloads are sent as a
# binary array (`%(...)b`): as text, psycopg would escape every quote of the JSON.
_PG_WRITE_EVENT_ANNOUNCED = _PG_WRITE_EVENT.replace("""
SELECT id FROM event
""", """, announced AS (
  INSERT INTO webhook_deliveries (message_id, endpoint_id, type, payload, status, attempts,
                                  next_attempt_at, created_at)
  SELECT w.message_id, w.endpoint_id, w.type, w.payload, 'pending', 0, %(created_at)s,
         %(created_at)s
  FROM event, unnest(%(w_message_id)s::text[], %(w_endpoint_id)s::text[], %(w_type)s::text[],
                     %(w_payload)b::text[]) AS w(message_id, endpoint_id, type, payload)
)
SELECT id FROM event
""")


def compact(statement: str) -> str:
    """The statement without its layout (none of these statements has a literal holding
    spaces): psycopg keeps a statement's parsed form only up to 4,096 bytes (and 50
    parameters), and parses a longer one again on every event, which costs more than
    the rows it writes. `tests/test_pg_statements.py` keeps the hot ones within both."""
    return " ".join(statement.split())


_PG_WRITE_EVENT = compact(_PG_WRITE_EVENT)
_PG_WRITE_EVENT_ANNOUNCED = compact(_PG_WRITE_EVENT_ANNOUNCED)
# With a rewarded event's risk counters (`abuse_counts.PG_RISK_COUNTED`) in the statement.
_PG_WRITE_EVENT_COUNTED = _PG_WRITE_EVENT.replace(
    " SELECT id FROM event", abuse_counts.PG_RISK_COUNTED + " SELECT id FROM event")

_REWARD_COLUMNS = ("reward_id", "campaign_id", "kind", "points", "amount_minor", "currency",
                   "voucher_code", "voucher_expires_at", "local_day")
_LOT_COLUMNS = ("reward_id", "points", "remaining", "debt_paid")
_VOUCHER_COLUMNS = ("reward_id", "code", "campaign_id", "amount_minor", "currency",
                    "min_amount_minor", "issued_at", "expires_at")


_PG_TAKE_FROM_CAMPAIGN = """
UPDATE campaign_usage SET spent = spent + %(cost)s, redemptions = redemptions + 1
WHERE campaign_id = %(campaign_id)s
  AND (%(budget_limit)s::bigint IS NULL OR spent + %(cost)s <= %(budget_limit)s::bigint)
  AND (%(max_redemptions)s::bigint IS NULL OR redemptions + 1 <= %(max_redemptions)s::bigint)
RETURNING spent, redemptions
"""

_PG_CAMPAIGN_USAGE = """
SELECT spent, redemptions FROM campaign_usage WHERE campaign_id = %(campaign_id)s
"""


def database_error(exc: psycopg.Error, statement: str, engine, pooled) -> DBAPIError:
    """psycopg's error as SQLAlchemy would have raised it (IntegrityError,
    OperationalError ...), so that retries and error answers treat both paths alike.
    A connection (`pooled`, SQLAlchemy's pool entry, or None) that can no longer be used is
    invalidated, so the pool drops it rather than try to reset it: one that was lost, and
    one a failed pipeline left busy (its server went away mid-pipeline), which SQLAlchemy
    does not recognise as lost."""
    dialect = engine.dialect
    invalidated = False
    if pooled is not None:
        driver = pooled.driver_connection
        invalidated = (driver.closed or driver.broken
                       or driver.pgconn.pipeline_status != pq.PipelineStatus.OFF
                       or dialect.is_disconnect(exc, pooled.dbapi_connection, None))
        if invalidated:
            pooled.invalidate(exc)
    return DBAPIError.instance(statement, None, exc, psycopg.Error,
                               connection_invalidated=invalidated, dialect=dialect)


class PostgresEventWrites:
    """Two round trips per event: lock and read, then write and commit, on a connection of
    its own from the engine's pool. The ORM session is not used: its bookkeeping around a
    transaction (begun and committed even when empty) costs more than these round trips."""

    finds_stored_event = True
    # Statements one by one (the module's docstring). A subclass holding one transaction
    # across many events (ledger/batches.py) may pipeline them with its savepoints.
    pipelined = False
    # The event as evaluated and reserved for before its turn (`reserving.Ahead`): a
    # batch's, for the event it prefetched the user of (`batches.py`); None otherwise.
    reserved_ahead = None

    def __init__(self, engine, session):
        self.engine = engine
        self.session = session
        self._pooled = None
        self.commit_in_doubt = False
        self.endpoints = ()  # the webhook endpoints to write the event's deliveries for
        self.reached: list = []  # budget thresholds the event's reservations reached

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

    def _sent_together(self, connection):
        """A psycopg pipeline where `pipelined`, else nothing: statements one by one."""
        return connection.pipeline() if self.pipelined else nullcontext()

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
        """psycopg's error as SQLAlchemy would have raised it (`database_error`); a
        connection it invalidates is no longer this writer's."""
        error = database_error(exc, statement, self.engine, self._pooled)
        if error.connection_invalidated:
            self._pooled = None
        return error

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
        after = cursor.fetchone()
        if after is None:
            self.reached += used_up(self.engine, campaign_id, budget_limit, max_redemptions,
                                    lambda: self._driver_connection().execute(
                                        _PG_CAMPAIGN_USAGE, {"campaign_id": campaign_id})
                                    .fetchone())
            return False
        self.reached += thresholds_reached(campaign_id, after[0], after[1], budget_limit,
                                           max_redemptions)
        return True

    def lock_user(self, *, user_id: str, occurred_at: datetime, now: datetime,
                  client_id: str, event_id: str, find_stored: bool = True,
                  mature: bool = False, device_id: str | None = None,
                  zone: tzinfo = timezone.utc,
                  with_risk: bool = False) -> tuple[UserState, StoredEvent | None, int]:
        """The user locked, its due pending points matured (with `mature`: where points
        can be pending) and its counters, in one round trip; with `find_stored`, also the
        event as stored if it was recorded before (in the counters' statement: the replay
        lookup costs no round trip or statement of its own; `Ledger.record` asks Redis's
        replay cache only for events that do not come this way). With a
        `device_id`, the device's row locked after the user's and its uses; with
        `with_risk` (a risk policy in force), the risk counters of the event's day in
        `zone`: in the same round trip. An event with neither sends nothing more.
        Returns the state, the stored event, and the user's pending points."""
        denied = denylist.denied(self.engine, user_id, device_id)  # before any lock
        first_day, last_day = day_range(occurred_at)
        connection = self._driver_connection()
        device_rows = risk_rows = None
        try:
            with self._sent_together(connection):
                connection.execute(_PG_LOCK_USER, {"user_id": user_id, "now": now})
                if mature:
                    connection.execute(_PG_MATURE, {"user_id": user_id, "now": now})
                if find_stored:
                    counters = connection.execute(_PG_USER_COUNTERS_STORED, {
                        "user_id": user_id, "first_day": first_day, "last_day": last_day,
                        "client_id": client_id, "event_id": event_id})
                else:
                    counters = connection.execute(_PG_USER_COUNTERS, {
                        "user_id": user_id, "first_day": first_day, "last_day": last_day})
                if device_id is not None:
                    connection.execute(abuse_counts.PG_LOCK_DEVICE,
                                       {"device_id": device_id, "now": now})
                    device_rows = connection.execute(abuse_counts.PG_DEVICE_USES, {
                        "device_id": device_id, "first_day": first_day, "last_day": last_day})
                if with_risk:
                    risk_params, risk_day = abuse_counts.pg_risk_params(
                        user_id=user_id, device_id=device_id, occurred_at=occurred_at,
                        zone=zone)
                    risk_rows = connection.execute(abuse_counts.PG_RISK, risk_params)
            rows = counters.fetchall()
            device_rows = device_rows.fetchall() if device_rows is not None else ()
            risk_rows = risk_rows.fetchall() if risk_rows is not None else None
        except psycopg.Error as exc:
            raise self._error(exc, _PG_LOCK_USER) from exc
        [(_, _, activations, payments, balance, pending, last_paid_at, *stored_row)] = [
            row for row in rows if row[0] is None]
        stored_row = stored_row[0] if stored_row else None  # [request_hash, response]
        campaign_uses, daily_uses = uses_from_rows(
            [row[:3] for row in rows if row[0] is not None])
        if last_paid_at is not None:  # in the session's TimeZone: UTC, as the ORM reads it
            last_paid_at = last_paid_at.astimezone(timezone.utc)
        device_uses, device_daily = uses_from_rows(device_rows)
        risk = (abuse_counts.risk_from_rows(risk_rows, user_id=user_id, device_id=device_id,
                                            day=risk_day) if risk_rows is not None else None)
        state = UserState(user_id=user_id, activations=activations, payments=payments,
                          points_balance=balance, campaign_uses=campaign_uses,
                          daily_uses=daily_uses, last_payment_at=last_paid_at,
                          device_uses=device_uses, device_daily_uses=device_daily,
                          denied=denied, risk=risk)
        return state, (StoredEvent(*stored_row) if stored_row is not None else None), pending

    def write(self, rows: EventRows) -> None:
        """Write and commit in one round trip; a copy of the event committed meanwhile
        raises IntegrityError with nothing written."""
        statement, params = self.statement_for(rows)
        thresholds = self._thresholds(rows.event["created_at"])
        connection = self._driver_connection()
        try:
            with self._sent_together(connection):
                if thresholds is not None:
                    connection.execute(PG_THRESHOLDS, thresholds)
                connection.execute(statement, params)
                if statement is not _PG_WRITE_EVENT_COUNTED and (
                        rows.counts is not None or rows.held):  # a rewarded event
                    connection.execute(abuse_counts.PG_WRITE_COUNTS,
                                       abuse_counts.pg_write_params(
                                           rows.counts, rows.event["user_id"],
                                           rows.event["device_id"], rows.held,
                                           rows.event["created_at"]))
                # Until PostgreSQL answers, the commit may have happened unknown to us (the
                # connection lost after the COMMIT arrived): the caller must then keep the
                # event's Redis reservations, which settle at their deadline.
                self.commit_in_doubt = True
                connection.commit()
        except psycopg.Error as exc:
            error = self._error(exc, statement)
            # An error PostgreSQL reported on a live connection means no COMMIT happened.
            self.commit_in_doubt = self.commit_in_doubt and error.connection_invalidated
            raise error from exc
        self.commit_in_doubt = False

    def statement_for(self, rows: EventRows) -> tuple[str, dict]:
        """The write's statement and its parameters (psycopg caches a statement's parsed
        form only with at most 50 of them: keep to that)."""
        params = dict(rows.event)
        del params["refunded_minor"], params["original_event_id"]  # always 0 and NULL here
        for column in _REWARD_COLUMNS:
            params["r_" + column] = [row[column] for row in rows.rewards]
        per_campaign, per_day = use_counts(rows.uses)
        params["u_campaign_id"], params["u_uses"] = list(per_campaign), list(per_campaign.values())
        params["d_campaign_id"] = [campaign_id for campaign_id, _ in per_day]
        params["d_day"] = [day for _, day in per_day]
        params["d_uses"] = list(per_day.values())
        params.update(activated=rows.activated, paid=rows.paid, balance=rows.balance,
                      pending=rows.pending)
        for column in _LOT_COLUMNS:
            params["l_" + column] = [lot[column] for lot in rows.lots]
        first_lot = rows.lots[0] if rows.lots else {}  # an event's lots share their times
        params["l_available_at"] = first_lot.get("available_at")
        params["l_pending"] = first_lot.get("pending", False)
        params["l_expires_at"] = first_lot.get("expires_at")
        for column in _VOUCHER_COLUMNS:
            params["v_" + column] = [voucher[column] for voucher in rows.vouchers]
        statement = _PG_WRITE_EVENT
        deliveries = event_delivery_rows(self.endpoints, rows)
        risk = abuse_counts.pg_risk_counted(rows.counts, rows.held)
        if risk is not None and not deliveries:
            statement, params["risk"] = _PG_WRITE_EVENT_COUNTED, risk
        elif deliveries:
            statement = _PG_WRITE_EVENT_ANNOUNCED
            for column in ("message_id", "endpoint_id", "type", "payload"):
                params["w_" + column] = [row[column] for row in deliveries]
        return statement, params

    def _thresholds(self, now) -> dict | None:
        """The parameters of `PG_THRESHOLDS` for thresholds this process has not seen
        announced, or None."""
        fresh = announced_thresholds.new(self.engine, self.reached)
        if not fresh:
            return None
        params = {"now": now, "t_campaign_id": [r.campaign_id for r in fresh],
                  "t_threshold": [r.threshold for r in fresh],
                  "t_measure": [r.measure for r in fresh]}
        messages = {(r.campaign_id, r.threshold): threshold_message(
            r.campaign_id, r.threshold, r.measure, now) for r in fresh}
        keys, deliveries = [], []
        for key, message in messages.items():
            for row in delivery_rows(self.endpoints, [message], now):
                keys.append(key)
                deliveries.append(row)
        params["w_campaign_id"] = [campaign_id for campaign_id, _ in keys]
        params["w_threshold"] = [threshold for _, threshold in keys]
        for column in ("message_id", "endpoint_id", "payload"):
            params["w_" + column] = [row[column] for row in deliveries]
        return params
