"""Many events in one transaction: the stream consumer's batches.

One transaction per event (`recorder.py`) pays a commit, a connection checkout and Redis
round trips for every event. A stream consumer has many events at hand, so `EventBatch`
records them in one PostgreSQL transaction on one connection. An event that fails (refused
by the ledger, a value PostgreSQL refuses, a copy committed first) takes nothing of its
neighbours with it: they commit with the batch.

Built on the per-event path, not beside it: the same steps of `Ledger` (`_record_grants`,
`_record_spending`, `_record_refund`, `_record_cancel`) write through the same writes
classes, made batch-aware:

* at its start, the batch locks the users of its plain payments and activations and reads
  their counters in one round trip (`prefetch_users`, `batch_reads.py`), then evaluates
  each one's first event on them and reserves what they ask for in one Redis round trip
  (`reserve_ahead`): in its turn such an event sends its write alone;
* PostgreSQL's writes (`PostgresEventWrites`) get the batch's connection
  (`savepoints.py`). A batch is first applied without savepoints: an event that fails
  before sending a statement leaves nothing to undo, and one that fails after rolls the
  whole batch back (`NeedsSavepoints`), to be applied again with each event between a
  SAVEPOINT and its RELEASE, sent with its own statements at no round trip of their own;
* the ORM session (refunds, redemptions, cancels, payments with points or vouchers) is
  bound to the batch's connection with `join_transaction_mode="create_savepoint"`, so its
  commit releases a savepoint and its rollback returns to it.

Redis: an event's reservations are made ahead or as it is recorded, as over HTTP. Those of
an event that fails are given back at once, those made ahead for events not recorded when
the batch ends; the others are confirmed, with the replay cache's answers, in one round
trip after the batch committed, and given back if the batch does not commit. A COMMIT
whose outcome is unknown (the connection lost during it) keeps them: they settle at their
deadline, an under-spend, never over. Every reservation's deadline is checked again just
before the COMMIT (`refuse_expired`).

Events of one user wait for each other's locks, which a batch holds until it commits;
callers record a batch's events in order of user id (keeping each user's own order), and
the prefetch locks its users in that order, so two batches take users' locks in one order
and do not deadlock on them.
"""
from __future__ import annotations

import logging

import psycopg
import redis
from psycopg import pq
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from promo_engine.coordination.reservations import Reservation, now_ms
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision, RulesEngine
from promo_engine.core.event import CANCEL, REFUND, Event
from promo_engine.ledger.batch_reads import UserReads
from promo_engine.ledger.event_writes import (AlreadyRecorded, SqlEventWrites, StoredEvent,
                                              needs_session)
from promo_engine.ledger.extensions import db
from promo_engine.ledger.gates import CollectingGate
from promo_engine.ledger.outcomes import Recorded
from promo_engine.ledger.postgres_writes import PostgresEventWrites, database_error
from promo_engine.ledger.recorder import Ledger
from promo_engine.ledger.reserving import Ahead, refuse_expired
from promo_engine.ledger.savepoints import SavepointConnection
from promo_engine.ledger.webhook_outbox import announced_thresholds
from promo_engine.ledger.webhook_outbox import directory as webhook_endpoints

log = logging.getLogger(__name__)

class BatchAborted(RuntimeError):
    """The batch's transaction is no longer usable (an event could not be rolled back to
    its savepoint): nothing of it commits, and it is applied again."""


class NeedsSavepoints(BatchAborted):
    """In a batch without savepoints, an event failed after it had sent statements, which
    cannot be undone alone: the batch is rolled back, to be applied again with savepoints."""


def batches_supported(engine) -> bool:
    """Batches need PostgreSQL (its writes and savepoints); elsewhere one event a transaction."""
    return engine.dialect.name == "postgresql"


class _BatchPostgresWrites(PostgresEventWrites):
    """PostgreSQL's round trips of an event on the batch's connection: the lock and read
    (with the event's SAVEPOINT), then the write, where `commit` now only marks the
    savepoint for release with the next event's."""

    def __init__(self, batch: EventBatch):
        super().__init__(db.engine, batch.session)
        self._batch = batch
        self._pooled = batch.pooled  # the batch's: `close` never hands it back per event

    def _driver_connection(self):
        return self._batch.savepoints

    def lock_user(self, **read):
        # The user's first event in the batch: locked and read with the others' at its start.
        prefetched = self._batch.users.take(
            self.engine, user_id=read["user_id"], event_id=read["event_id"],
            occurred_at=read["occurred_at"], find_stored=read.get("find_stored", True),
            mature=read.get("mature", False), device_id=read.get("device_id"),
            with_risk=read.get("with_risk", False))
        if prefetched is None:
            return super().lock_user(**read)
        self.reserved_ahead = self._batch.ahead.pop(read["event_id"], None)
        return prefetched

    def write(self, rows) -> None:
        # A read through the session during the event (counters built for Redis, say)
        # opened a savepoint of the session's inside the event's: release it first, or the
        # event's RELEASE would take it along behind the session's back.
        self._batch.end_session(ok=True)
        try:
            super().write(rows)
            self._batch.users.written(rows.event["user_id"])
        finally:
            # Only the batch's COMMIT can be in doubt: a write lost with its connection
            # took its whole (uncommitted) transaction with it.
            self.commit_in_doubt = False

    def rollback(self) -> None:
        self._batch.end_session(ok=False)
        self._batch.savepoints.end_event(ok=False)
        # Raised here, not only where `record` ends: after a rollback the ledger goes on
        # (it looks up the copy of an event that lost an INSERT race), and that must not
        # run in a transaction that already failed.
        if self._batch.savepoints.spoiled:
            raise NeedsSavepoints("an event failed in a batch without savepoints")
        self._batch.savepoints.begin_event()

    def close(self) -> None:
        self.commit_in_doubt = False


class EventBatch:
    """One transaction of many events on one connection; `record` each (in the order of
    their users), then `commit` or `rollback`, then `close`. Use inside an app context."""

    def __init__(self, ledger: Ledger, *, savepoints: bool = True):
        """`savepoints` False: events go without savepoints, cheaper by a pipeline each,
        until one fails after sending statements (`NeedsSavepoints`)."""
        self.ledger = ledger
        self.held: list[Reservation] = []  # reservations of the events recorded so far
        self.reached: list = []  # budget thresholds the recorded events reached
        self.answers: list[tuple[str, str, str, str]] = []  # for the replay cache
        self.cached: dict[tuple[str, str], tuple[str, str]] = {}
        self.users = UserReads()  # users locked and read at the start (`prefetch_users`)
        self.ahead: dict[str, Ahead] = {}  # event_id -> it, evaluated and reserved for ahead
        self.made_ahead: list[Reservation] = []  # every reservation `reserve_ahead` made
        self.recorded = 0
        self.broken = False  # an event could not be rolled back to its savepoint
        self.first_deadline_ms: int | None = None  # of the batch's earliest reservation
        if ledger.reservations is not None:
            ledger.reservations.load_program_id()  # may write: before the transaction
        db.session.remove()  # a read the caller left open ends: the batch's session replaces it
        self.connection = db.engine.connect()
        try:
            self.transaction = self.connection.begin()
            self.pooled = self.connection.connection
            self.savepoints = SavepointConnection(self.pooled.driver_connection,
                                                   protected=savepoints)
            # Refunds, redemptions and cancels go through the ORM session: this one, in
            # the batch's transaction, each event's work a savepoint of its own.
            self.session = Session(bind=self.connection,
                                   join_transaction_mode="create_savepoint")
            db.session.registry.set(self.session)
        except BaseException:
            self.connection.close()
            raise

    def prefetch_replays(self, client_id: str, events: list[Event]) -> None:
        """Look the batch's events up in the replay cache in one round trip (a Redis
        failure only means the database answers them). Only refunds, redemptions, cancels
        and payments spending points or vouchers: a plain payment or activation finds its
        stored copy in its user lock's round trip, as over HTTP (`Ledger.record`)."""
        keys = [(client_id, event.event_id) for event in events if needs_session(event)]
        replays = self.ledger.replays
        if replays is None or not keys:
            return
        try:
            pipe = replays.client.pipeline(transaction=False)
            for client_id, event_id in keys:
                pipe.get(replays.key(client_id, event_id))
            values = pipe.execute()
        except redis.RedisError as exc:
            log.warning("replay cache unavailable, asking the database: %s", exc)
            return
        for key, value in zip(keys, values):
            if value is not None:
                request_hash, _, body = value.decode().partition("\n")
                self.cached[key] = (request_hash, body)

    def prefetch_users(self, client_id: str, events: list[Event], engine: RulesEngine) -> None:
        """Lock the users of the batch's plain payments and activations, and read what
        their first events need, in one round trip (`batch_reads.py`); each such event then
        saves the round trip of its own user lock. Call before recording any event, with the
        events in the order they will be recorded. Nothing is prefetched where every event
        reads more (pending points, a risk policy), nor for a user with an event that goes
        through the session (a refund, say, which may change the counters first) or with a
        device."""
        if self.ledger.policy.pending_days > 0 or engine.risk is not None:
            return
        reads_more = {event.user_id for event in events
                      if needs_session(event) or event.device_id is not None}
        plain = [event for event in events if event.user_id not in reads_more]
        try:
            self.users.prefetch(self.savepoints._driver, client_id, plain, self.ledger.clock())
        except psycopg.Error as exc:
            raise self._database_error(exc, "prefetch the batch's users") from exc

    def reserve_ahead(self, events: list[Event], engine: RulesEngine) -> None:
        """Evaluate each prefetched user's first event on the counters read, and reserve
        the budgets they ask for in one Redis round trip (`Reservations.reserve_ahead`).
        In its turn the event, on the same state, takes its decision and reservation from
        here (`evaluate_reserving`'s `ahead`) and saves its own round trip. One refused
        reserves nothing and is evaluated again in its turn, as ever. Reservations no event
        took are given back when the batch ends. Call after `prefetch_users`."""
        reservations = self.ledger.reservations
        if reservations is None or not len(self.users):
            return
        evaluated: dict[str, tuple[Event, UserState, Decision, list]] = {}  # by event_id
        for event in events:
            state = self.users.peek(db.engine, event)
            if state is None or event.event_id in evaluated:
                continue  # not prefetched for, or a copy of the event just before it
            gate = CollectingGate(self.ledger.minor_digits, set())
            try:
                decision = engine.evaluate(event, state, gate)
            except Exception:  # noqa: BLE001 - the event meets it again in its turn
                continue
            evaluated[event.event_id] = (event, state, decision, gate.requests)
        made = iter(reservations.reserve_ahead([requests for *_, requests
                                                in evaluated.values() if requests]))
        for event_id, (event, state, decision, requests) in evaluated.items():
            reservation = next(made) if requests else None
            if reservation is not None:
                self.made_ahead.append(reservation)
            elif requests:
                continue  # refused (or not ready): evaluated and reserved in its turn
            self.ahead[event_id] = Ahead(event, state, engine, decision, reservation)

    def _untaken_ahead(self) -> list[Reservation]:
        """Reservations made ahead that no recorded event holds nor gave back."""
        held = {reservation.id for reservation in self.held}
        return [reservation for reservation in self.made_ahead
                if not reservation.done and reservation.id not in held]

    def record(self, *, client_id: str, event: Event, request_hash: str,
               engine: RulesEngine) -> Recorded:
        """Record the event in the batch, or replay it; an exception rolls back this event
        alone (its reservations given back) and leaves the batch usable, unless the
        connection itself was lost."""
        ledger = self.ledger
        cached = self.cached.get((client_id, event.event_id))
        if cached is not None:
            return ledger._replayed(StoredEvent(*cached), request_hash)
        held: list[Reservation] = []
        session_event = needs_session(event)
        writes = (SqlEventWrites(self.session) if session_event
                  else _BatchPostgresWrites(self))
        writes.endpoints = webhook_endpoints.endpoints(db.engine)
        # A read the session began between events must not be left inside a savepoint
        # that the next RELEASE would take along behind its back.
        self.end_session(ok=True)
        if not session_event:
            self.savepoints.begin_event()
        try:
            recorded = self._attempt(client_id, event, request_hash, engine, held, writes)
            self.end_session(ok=True)  # a session event's savepoint (or a read's)
            if not session_event:
                self.savepoints.end_event(ok=True)
        except BaseException as exc:
            ledger._release(held)
            self._back_to_savepoint(session_event)
            lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
            if self.savepoints.spoiled and not lost and not isinstance(exc, NeedsSavepoints):
                raise NeedsSavepoints("an event failed in a batch without savepoints") \
                    from exc
            raise
        if not recorded.replayed:
            if held:
                first = min(reservation.deadline_ms for reservation in held)
                self.first_deadline_ms = min(self.first_deadline_ms or first, first)
            self.held += held
            self.reached += writes.reached
            self.recorded += 1
        if session_event:  # the others' replays the database answers (prefetch_replays)
            self.answers.append((client_id, event.event_id, request_hash, recorded.body))
        return recorded

    def commit_due(self) -> bool:
        """True once half the time its earliest reservation had is gone: the batch should
        commit now rather than record more, or it would outlive that deadline and have to
        be rolled back (`refuse_expired`) on a slow machine or a slow run of events."""
        reservations = self.ledger.reservations
        if self.first_deadline_ms is None or reservations is None:
            return False
        return now_ms() >= self.first_deadline_ms - reservations.ttl_ms // 2

    def end_reads(self) -> None:
        """End what a read through the session began between events (an idempotency
        conflict looked up, say), so the next event's savepoint is not nested in it."""
        self.end_session(ok=False)

    def end_session(self, ok: bool) -> None:
        """Release (ok) or roll back the session's savepoint, if it has one open."""
        if self.session.in_transaction():
            if ok:
                self.session.commit()
            else:
                self.session.rollback()

    def _back_to_savepoint(self, session_event: bool) -> None:
        try:
            self.end_session(ok=False)
            if not session_event:
                self.savepoints.end_event(ok=False)
        except Exception:  # noqa: BLE001 - the connection is gone: the batch fails with it
            log.debug("could not roll back to the event's savepoint", exc_info=True)
            self.savepoints.open = self.savepoints.opening = False
            self.savepoints.release_due = False
            self.broken = True

    def _attempt(self, client_id: str, event: Event, request_hash: str, engine: RulesEngine,
                 held: list[Reservation], writes) -> Recorded:
        """`Ledger._record`'s attempt, in the event's savepoint."""
        ledger = self.ledger
        try:
            if ledger.replays is None and not writes.finds_stored_event:
                replay = ledger._replayed(writes.find_stored(client_id, event.event_id),
                                          request_hash)
                if replay is not None:
                    return replay
            if event.type == REFUND:
                return ledger._record_refund(client_id, event, request_hash, held)
            if event.type == CANCEL:
                return ledger._record_cancel(client_id, event, request_hash, held)
            if needs_session(event):
                return ledger._record_spending(client_id, event, request_hash, engine, held,
                                               writes)
            return ledger._record_grants(client_id, event, request_hash, engine, held, writes)
        except (IntegrityError, AlreadyRecorded):
            # A copy of this event is in the ledger (committed, or earlier in this batch):
            # back to the savepoint, and answer as a replay.
            ledger._release(held)
            writes.rollback()
            replay = ledger._replayed(writes.find_stored(client_id, event.event_id),
                                      request_hash)
            if replay is None:
                raise
            return replay

    def commit(self) -> None:
        """Commit the batch, then confirm its reservations and remember its answers in one
        Redis round trip. Raises (with everything given back, unless the COMMIT's outcome
        is unknown) when it cannot commit."""
        try:
            refuse_expired(self.held)  # past a deadline, reconciliation may give it back
            # PostgreSQL answers the COMMIT of a failed transaction with a ROLLBACK, and no
            # error: never take that for a commit.
            if self.savepoints.spoiled:
                raise NeedsSavepoints("an event failed in a batch without savepoints")
            if self.broken or (self.savepoints._driver.info.transaction_status
                               == pq.TransactionStatus.INERROR):
                raise BatchAborted("the batch's transaction failed; nothing of it committed")
            self._drop_unused_users()
            self.ledger._release(self._untaken_ahead())
            self.end_session(ok=True)
            self.transaction.commit()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                self._release_all()
            else:  # the COMMIT may have happened: the reservations settle at their deadline
                self.held = []
            raise
        except BaseException:
            self._release_all()
            raise
        announced_thresholds.remember(db.engine, self.reached)
        self._after_commit()

    def _drop_unused_users(self) -> None:
        """The rows the prefetch made for users none of whose events was written."""
        try:
            self.users.drop_unused(self.savepoints._driver)
        except psycopg.Error as exc:
            raise self._database_error(exc, "drop the batch's unused users") from exc

    def _database_error(self, exc: psycopg.Error, doing: str):
        """psycopg's error as the writes raise it (a DBAPIError; the connection invalidated
        if it was lost), for a statement of the batch's own."""
        return database_error(exc, doing, db.engine, self.pooled)

    def rollback(self) -> None:
        """Nothing of the batch is written; its reservations are given back."""
        try:
            if self.transaction.is_active:
                self.transaction.rollback()
        except Exception:  # noqa: BLE001 - a lost connection: PostgreSQL rolled it back
            log.debug("rolling back a batch failed", exc_info=True)
        finally:
            self._release_all()

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            db.session.remove()
            self.connection.close()

    def _release_all(self) -> None:
        self.ledger._release(self.held + self._untaken_ahead())
        self.held = []

    def _after_commit(self) -> None:
        ledger = self.ledger
        if ledger.reservations is None and ledger.replays is None:
            return
        held, self.held = self.held, []

        def add(pipe) -> None:
            for reservation in held:
                ledger.reservations.confirm(reservation, pipeline=pipe)
            if ledger.replays is not None:
                for client_id, event_id, request_hash, body in self.answers:
                    ledger.replays.put(pipe, client_id, event_id, request_hash, body)

        def retry() -> None:  # Redis restarted: scripts load again
            for reservation in held:
                ledger.reservations.confirm(reservation)
        try:
            ledger._sender.send(add, retry)  # as `Ledger._after_commit` sends an event's
        except redis.RedisError as exc:
            log.warning("a batch committed, but Redis could not be told (its reservations "
                        "settle at their deadline; replays are answered by the database): "
                        "%s", exc)
