"""A batch of messages applied in one ledger transaction (`ledger/batches.py`), on PostgreSQL.

The guarantees are those of one transaction per message (consumer/stream.py), because each
message still has one outcome, decided only by what committed:

* a message is acknowledged only after the transaction holding its event committed (or,
  for a dead letter, after its event was rolled back to its savepoint: nothing of it is
  in the ledger);
* an event the ledger refuses, or PostgreSQL refuses a value of, is rolled back to its own
  savepoint and dead-lettered alone; its neighbours commit;
* anything that stops the batch (PostgreSQL or Redis unavailable, the COMMIT failing, budget
  counters being rebuilt) rolls all of it back and acknowledges none of it: the round is
  retried from the consumer's own pending messages, as before;
* an event that met another batch in a deadlock (or a serialization failure) is rolled back
  to its savepoint and left pending: the rest commits, which releases the locks it waited
  for, and the next round applies it;
* an unexpected error (a bug) leaves its message pending and, once the rest has committed
  and been acknowledged, stops the round as before (MAX_ATTEMPTS, then a dead letter).

A batch is applied in order of user id, each user's events in stream order: two batches
then lock users in one order and never wait for each other in a cycle on them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.exc import DataError

from promo_engine.api.errors import ApiError
from promo_engine.api.recording import conflict_error, validated_event
from promo_engine.api.requests import canonical_body_hash
from promo_engine.consumer.settlement import (DELETED, RECORDED, REPLAYED, Entry, Rejected,
                                              Settlement)
from promo_engine.coordination.reservations import EpochMissing
from promo_engine.core.event import Event
from promo_engine.ledger.batches import EventBatch, NeedsSavepoints
from promo_engine.ledger.database import is_retryable
from promo_engine.ledger.outcomes import IdempotencyConflict, LedgerError, Recorded


@dataclass
class _Item:
    position: int  # in the batch as read: results and dead letters keep the stream's order
    message_id: bytes
    fields: dict
    body: dict
    event: Event
    request_hash: str


class BatchedApply:
    """Applies one batch of entries for a StreamConsumer (whose helpers it uses)."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.failure: Exception | None = None
        self.deferred = 0

    def __call__(self, entries: list[Entry], stop: threading.Event | None) -> int:
        try:
            return self._apply(entries, stop)
        except EpochMissing:
            # New, or Redis lost its data: the epoch begins outside any transaction (the
            # judge writes), then the batch is applied once more.
            self.consumer.service.ledger.reservations.begin_epoch()
            return self._apply(entries, stop)

    def _apply(self, entries: list[Entry], stop: threading.Event | None) -> int:
        consumer = self.consumer
        parts: dict[int, Settlement] = {}  # position -> its settlement
        items: list[_Item] = []
        for position, (message_id, fields) in enumerate(entries):
            item = self._prepare(position, message_id, fields, parts)
            if item is not None:
                items.append(item)
        items.sort(key=lambda item: item.event.user_id)  # stable: a user's order is kept
        if not items:  # deleted or dead-lettered before the database: nothing to record
            return self._settle(parts)
        engine = consumer.service.engine()  # one revision of the campaigns per batch
        try:
            applied = self._record_all(items, parts, engine, stop, savepoints=False)
        except NeedsSavepoints:
            # An event failed after sending statements, which only a savepoint undoes
            # alone: nothing of the batch committed, and it is applied again, each event
            # in a savepoint of its own (a rare case: a copy committed meanwhile, a value
            # PostgreSQL refuses).
            for item in items:
                parts[item.position] = Settlement()
            applied = self._record_all(items, parts, engine, stop, savepoints=True)
        for event, recorded in applied:
            consumer._count_event(event, recorded)
        settled = self._settle(parts)
        if self.deferred or self.failure is not None:
            consumer._backlog_from = b"0"  # their messages are pending: read them again
        if self.failure is not None:
            raise self.failure  # run() logs it and pauses, as for one event a transaction
        return settled

    def _record_all(self, items: list[_Item], parts: dict, engine, stop,
                    *, savepoints: bool) -> list[tuple[Event, Recorded]]:
        """Record the items in one batch and commit it; what each got goes in `parts`."""
        consumer = self.consumer
        applied: list[tuple[Event, Recorded]] = []
        self.failure = None
        self.deferred = 0
        batch = EventBatch(consumer.service.ledger, savepoints=savepoints)
        try:
            client_id = consumer.options.client_id
            events = [item.event for item in items]
            batch.prefetch_replays(client_id, events)
            batch.prefetch_users(client_id, events, engine)
            batch.reserve_ahead(events, engine)
            for item in items:
                if stop is not None and stop.is_set():
                    break  # the rest stay pending: claimed by others, or resumed by our name
                if batch.commit_due():  # its reservations' time is half gone: commit now
                    self.deferred += 1  # the rest are pending: the next round reads them
                    break
                recorded = self._record(batch, engine, item, parts)
                if recorded is not None:
                    applied.append((item.event, recorded))
            batch.commit()
        except BaseException:
            batch.rollback()
            raise
        finally:
            batch.close()
        return applied

    def _prepare(self, position: int, message_id: bytes, fields: dict, parts: dict):
        """The message's event, validated; or None with its settlement in `parts`."""
        consumer = self.consumer
        part = parts[position] = Settlement()
        if not fields:  # deleted from the stream (XDEL, trimming) after it was delivered
            part.add(message_id, DELETED)
            return None
        body = None
        try:
            body = consumer._parse(fields)
            event = validated_event(consumer.service, body)
        except ApiError as exc:
            consumer._reject(message_id, fields, body, Rejected.from_api_error(exc), part)
            return None
        except Rejected as rejected:
            consumer._reject(message_id, fields, body, rejected, part)
            return None
        return _Item(position, message_id, fields, body, event, canonical_body_hash(body))

    def _record(self, batch: EventBatch, engine, item: _Item, parts: dict) -> Recorded | None:
        consumer = self.consumer
        client_id = consumer.options.client_id
        part = parts[item.position]
        try:
            recorded = batch.record(client_id=client_id, event=item.event,
                                    request_hash=item.request_hash, engine=engine)
        except IdempotencyConflict:
            rejected = Rejected.from_api_error(conflict_error(consumer.service, client_id,
                                                              item.event))
            batch.end_reads()
        except LedgerError as exc:
            rejected = Rejected(exc.code, exc.message, exc.fields)
        except DataError:
            # As the API's error handler answers it (api/errors.py).
            rejected = Rejected("validation_error",
                                "a value is out of range or cannot be stored")
        except (EpochMissing, NeedsSavepoints):
            raise
        except Exception as exc:  # noqa: BLE001 - sorted below
            if is_retryable(exc):  # met another batch: after this one commits
                del parts[item.position]
                self.deferred += 1
                return None
            if isinstance(exc, consumer.unavailable_errors):
                raise  # the batch with it: nothing acknowledged
            if not consumer._gave_up(item.message_id):
                del parts[item.position]
                if self.failure is None:
                    self.failure = exc
                return None
            rejected = consumer._internal_error(item.message_id, exc)
        else:
            part.add(item.message_id,
                     REPLAYED if recorded.replayed else RECORDED,
                     result={b"source_id": item.message_id.decode(),
                             b"event_id": item.event.event_id,
                             b"status": str(recorded.status), b"body": recorded.body})
            return recorded
        consumer._reject(item.message_id, item.fields, item.body, rejected, part)
        return None

    def _settle(self, parts: dict) -> int:
        settlement = Settlement()
        for position in sorted(parts):
            part = parts[position]
            settlement.acks += part.acks
            settlement.results += part.results
            settlement.dead_letters += part.dead_letters
            settlement.outcomes.update(part.outcomes)
        if settlement.acks:
            self.consumer._settle(settlement)
        return len(settlement.acks)

