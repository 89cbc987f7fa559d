"""Stream ingestion: events read from a Redis Stream by a consumer group, each applied once.

A consumer group hands every message to one consumer and keeps it in that consumer's
pending list until it is acknowledged (XACK). A message is acknowledged only after the
ledger transaction that recorded its event has committed (or after it was dead-lettered),
so a consumer that dies loses nothing: once its pending messages have been idle longer
than the claim time, another consumer claims them (XAUTOCLAIM) and applies them. Delivery
is therefore at least once, and the ledger's idempotency record (client id + event_id,
unique, the same record the API uses) turns every later delivery of an event into a replay
of its first response: each event is applied exactly once.

Every message ends one of three ways:

* applied (or replayed): acknowledged, with its response on the results stream if one is
  configured;
* never able to succeed (malformed, invalid, an idempotency conflict, a refund the ledger
  refuses): written to the dead-letter stream with the error and acknowledged, in one
  MULTI, so it is neither retried forever nor lost;
* stopped by an unavailable database or Redis (or budget counters that Redis is
  rebuilding): not acknowledged. The consumer pauses (doubling up to MAX_PAUSE_SECONDS, or
  as long as it is told to) and reads its own pending messages again, for as long as it
  takes.

An unexpected error (a bug: the API would answer 500) is retried like an unavailable
service, since a fix may be on its way, but only MAX_ATTEMPTS times: then the message is
dead-lettered as `internal_error`, so that one poisonous message cannot hold up its
consumer for ever.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import redis
from flask import Flask
from sqlalchemy.exc import DataError

from promo_engine.api.errors import UNAVAILABLE_ERRORS, ApiError
from promo_engine.api.recording import record_event_body
from promo_engine.api.requests import canonical_json, parse_json
from promo_engine.api.schemas import disallowed_attributes
from promo_engine.config import MAX_BODY_BYTES
from promo_engine.consumer.batching import BatchedApply
from promo_engine.consumer.options import ConsumerOptions
from promo_engine.consumer.settlement import (DEAD_LETTERED, DELETED, RECORDED, REPLAYED,
                                              Entry, Rejected, Settlement)
from promo_engine.consumer.trimming import TRIM_INTERVAL_SECONDS, trim_streams
from promo_engine.coordination.reservations import NotReady
from promo_engine.ledger.batches import batches_supported
from promo_engine.ledger.extensions import db
from promo_engine.ledger.outcomes import Recorded
from promo_engine.metrics import metrics
from promo_engine.service import promo_service

log = logging.getLogger(__name__)

EVENT_FIELD = b"event"  # the message field holding the event's JSON, as POSTed to /v1/events

MAX_ATTEMPTS = 5  # of a message failing with an unexpected error; then it is dead-lettered
FIRST_PAUSE_SECONDS = 0.1
MAX_PAUSE_SECONDS = 5.0
PROGRESS_SECONDS = 30.0

# Nothing of a message is acknowledged when one of these stops it: the errors the API answers
# with 503 (NotReady: budget counters in Redis are being rebuilt), and any failure of Redis
# itself, an error reply included: a message is only settled by a Redis write that succeeded.
UNAVAILABLE = UNAVAILABLE_ERRORS + (redis.RedisError, NotReady)

@dataclass
class ConsumerStats:
    """What this consumer has settled (acknowledged), for its log and summary."""
    outcomes: Counter = field(default_factory=Counter)
    claimed: int = 0
    interrupted: int = 0  # rounds stopped by an unavailable service (or a bug), then retried
    first_read_at: float | None = None
    last_settled_at: float | None = None

    @property
    def settled(self) -> int:
        return sum(self.outcomes.values())

    def rate(self) -> float:
        """Messages settled per second, from the first message read to the last settled."""
        if self.first_read_at is None or self.last_settled_at is None:
            return 0.0
        busy = self.last_settled_at - self.first_read_at
        return self.settled / busy if busy > 0 else 0.0

    def summary(self) -> str:
        o = self.outcomes
        return (f"{self.settled:,} messages ({self.rate():,.1f}/s): {o[RECORDED]:,} recorded, "
                f"{o[REPLAYED]:,} replayed, {o[DEAD_LETTERED]:,} dead-lettered, "
                f"{o[DELETED]:,} deleted; {self.claimed:,} claimed from idle consumers; "
                f"{self.interrupted:,} rounds interrupted and retried")


class StreamConsumer:
    """Reads, applies and acknowledges batches of one stream for one consumer of a group.

    `run` loops until stopped and rides out unavailable services; `step` is one round, for
    tests and for callers with a loop of their own (it raises what `run` would pause on).
    `client` must answer in bytes (redis-py's default, decode_responses off): message
    bodies are bytes and are read as the API reads a request body.
    """

    unavailable_errors = UNAVAILABLE  # for consumer/batching.py

    def __init__(self, app: Flask, client: redis.Redis, options: ConsumerOptions, *,
                 clock: Callable[[], float] = time.monotonic):
        self.app, self.redis, self.options = app, client, options
        self.service = promo_service(app)
        self.metrics = metrics(app)
        self.stats = ConsumerStats()
        self._clock = clock
        self._group_ready = False
        # This consumer's own pending messages come first: those of an earlier process of
        # the same name, and, after a failure, the messages it could not finish.
        self._backlog_from: bytes | None = b"0"
        self._claim_from = b"0-0"
        self._claim_due = clock()
        self._failures: Counter = Counter()  # message id -> unexpected errors so far
        self._trim_due = clock()  # the streams' retention (trimming.py), from the start
        self._batched: BatchedApply | None = None  # on PostgreSQL: a transaction per batch
        with app.app_context():
            if batches_supported(db.engine):
                self._batched = BatchedApply(self)

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; a message being applied then is finished first."""
        pause = FIRST_PAUSE_SECONDS
        progress_due = self._clock() + PROGRESS_SECONDS
        while not stop.is_set():
            try:
                self.step(stop)
            except Exception as exc:  # noqa: BLE001 - the consumer must outlive any message
                wait = exc.retry_after_ms / 1000 if isinstance(exc, NotReady) else pause
                self._interrupted(exc, wait)
                stop.wait(wait)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                continue
            pause = FIRST_PAUSE_SECONDS
            self._trim_if_due()
            if self._clock() >= progress_due:
                log.info("%s: %s", self.options.consumer, self.stats.summary())
                progress_due = self._clock() + PROGRESS_SECONDS

    def _trim_if_due(self) -> None:
        """With PROMO_RETENTION_DAYS, trim the streams about hourly (consumer/trimming.py);
        a failure is logged and left to the next hour."""
        days = self.service.settings.retention_days
        if days is None or self._clock() < self._trim_due:
            return
        self._trim_due = self._clock() + TRIM_INTERVAL_SECONDS
        try:
            trimmed = trim_streams(self.redis, self.options, retention_days=days,
                                   now_ms=int(time.time() * 1000))
        except redis.RedisError as exc:
            log.warning("%s: trimming the streams failed (%s); trying again in an hour",
                        self.options.consumer, _first_line(exc))
            return
        if any(trimmed.values()):
            log.info("%s: retention (%d days): trimmed %s", self.options.consumer, days,
                     ", ".join(f"{n} from {name}" for name, n in trimmed.items() if n))

    def step(self, stop: threading.Event | None = None) -> int:
        """One round: read a batch (own pending messages first, then messages claimed from
        idle consumers, then new ones), apply it, acknowledge it; returns how many
        messages were settled."""
        try:
            if not self._group_ready:
                self.ensure_group()
            entries = self._read()
            if not entries:
                return 0
            if self.stats.first_read_at is None:
                self.stats.first_read_at = self._clock()
            with self.app.app_context():
                return self._apply_batch(entries, stop)
        except BaseException:
            # Start the next round from this consumer's own pending messages: the one that
            # failed is among them. The group is checked again (deleting the stream loses it).
            self._backlog_from = b"0"
            self._group_ready = False
            raise

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists; a new group starts at the
        stream's beginning, so events added before the first consumer ran are applied."""
        try:
            self.redis.xgroup_create(self.options.stream, self.options.group, id="0",
                                     mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    def _interrupted(self, exc: Exception, pause: float) -> None:
        self.stats.interrupted += 1
        self.metrics.stream_interrupted.inc()
        if isinstance(exc, UNAVAILABLE):
            log.warning("%s: %s: %s; nothing of it acknowledged, retrying in %.1f s",
                        self.options.consumer, type(exc).__name__, _first_line(exc), pause)
        else:
            log.exception("%s: unexpected error; nothing of it acknowledged, retrying in "
                          "%.1f s", self.options.consumer, pause)

    # -- reading -------------------------------------------------------------------------

    def _read(self) -> list[Entry]:
        options = self.options
        if self._backlog_from is not None:
            entries = self._read_group(self._backlog_from)
            if entries:
                self._backlog_from = entries[-1][0]
                return entries
            self._backlog_from = None
        if self._clock() >= self._claim_due:
            entries = self._claim()
            if entries:
                return entries
        return self._filled(self._read_group(b">", block_ms=options.block_ms))

    def _filled(self, entries: list[Entry]) -> list[Entry]:
        """New messages read until the batch is full or `max_wait_ms` has passed since the
        first arrived: a busy stream fills a batch at once, and a quiet one waits at most
        that long (0: never) before its messages are applied."""
        options = self.options
        if not entries or options.max_wait_ms <= 0:
            return entries
        deadline = self._clock() + options.max_wait_ms / 1000
        while len(entries) < options.batch:
            left_ms = int((deadline - self._clock()) * 1000)
            if left_ms < 1:  # BLOCK 0 would wait for ever
                break
            more = self.redis.xreadgroup(options.group, options.consumer,
                                         {options.stream: b">"},
                                         count=options.batch - len(entries), block=left_ms)
            if not more:
                break
            entries += more[0][1]
        return entries

    def _read_group(self, start: bytes, block_ms: int | None = None) -> list[Entry]:
        options = self.options
        reply = self.redis.xreadgroup(options.group, options.consumer, {options.stream: start},
                                      count=options.batch, block=block_ms)
        return reply[0][1] if reply else []

    def _claim(self) -> list[Entry]:
        """Take over messages idle longer than the claim time, a batch per call; a sweep
        of the whole pending list is spread over calls and repeated every claim interval."""
        options = self.options
        cursor, entries, deleted = self.redis.xautoclaim(
            options.stream, options.group, options.consumer, options.claim_idle_ms,
            start_id=self._claim_from, count=options.batch)
        if cursor == b"0-0":
            self._claim_due = self._clock() + options.claim_interval_seconds
            self._observe_group()
        self._claim_from = cursor
        if deleted:  # XAUTOCLAIM has taken them off the pending list itself
            self._count({DELETED: len(deleted)})
        if entries:
            self.stats.claimed += len(entries)
            self.metrics.stream_claimed.inc(len(entries))
            log.info("%s: claimed %d messages idle longer than %d ms", options.consumer,
                     len(entries), options.claim_idle_ms)
        return entries

    def _observe_group(self) -> None:
        """The group's backlog for the metrics, once per claim sweep."""
        for group in self.redis.xinfo_groups(self.options.stream):
            if group["name"] == self.options.group.encode():
                self.metrics.stream_pending.set(group["pending"])
                if group.get("lag") is not None:  # Redis cannot always tell (after XDEL)
                    self.metrics.stream_lag.set(group["lag"])

    # -- applying ------------------------------------------------------------------------

    def _apply_batch(self, entries: list[Entry], stop: threading.Event | None) -> int:
        if self._batched is not None:
            return self._batched(entries, stop)  # one transaction (consumer/batching.py)
        settlement = Settlement()
        try:
            for message_id, fields in entries:
                if stop is not None and stop.is_set():
                    break  # the rest stay pending: claimed by others, or resumed by our name
                self._apply_message(message_id, fields, settlement)
        finally:
            # What committed before a failure is acknowledged all the same.
            if settlement.acks:
                self._settle(settlement)
        return len(settlement.acks)

    def _apply_message(self, message_id: bytes, fields: dict, settlement: Settlement) -> None:
        source_id = message_id.decode()
        if not fields:  # deleted from the stream (XDEL, trimming) after it was delivered
            settlement.add(message_id, DELETED)
            return
        body = None
        try:
            body = self._parse(fields)
            recorded = self._record(body)
        except Rejected as rejected:
            self._reject(message_id, fields, body, rejected, settlement)
        except UNAVAILABLE:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug (the API would answer 500)
            if not self._gave_up(message_id):
                raise  # not acknowledged: run() logs it, pauses and tries again
            rejected = self._internal_error(message_id, exc)
            self._reject(message_id, fields, body, rejected, settlement)
        else:
            settlement.add(message_id, REPLAYED if recorded.replayed else RECORDED,
                           result={b"source_id": source_id, b"event_id": body["event_id"],
                                   b"status": str(recorded.status), b"body": recorded.body})

    def _internal_error(self, message_id: bytes, exc: Exception) -> Rejected:
        """The dead letter of a message that failed MAX_ATTEMPTS times unexpectedly."""
        log.error("%s: message %s failed %d times", self.options.consumer,
                  message_id.decode(), MAX_ATTEMPTS, exc_info=exc)
        return Rejected("internal_error", f"internal error ({type(exc).__name__}), "
                        f"{MAX_ATTEMPTS} times; the message can be added to the "
                        "stream again once that is fixed")

    def _gave_up(self, message_id: bytes) -> bool:
        """Count an unexpected failure of the message; True once it is the last allowed."""
        if len(self._failures) > 10_000:  # messages since claimed by others, never seen again
            self._failures.clear()
        self._failures[message_id] += 1
        if self._failures[message_id] < MAX_ATTEMPTS:
            return False
        del self._failures[message_id]
        return True

    def _parse(self, fields: dict) -> dict:
        """The event's JSON object, read exactly as the API reads a request body."""
        raw = fields.get(EVENT_FIELD)
        if raw is None:
            raise Rejected("malformed_message", "the message has no `event` field (the "
                           "event's JSON, as POSTed to /v1/events)")
        if len(raw) > MAX_BODY_BYTES:
            raise Rejected("payload_too_large",
                           f"the event is larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            body = parse_json(raw)
        except ApiError as exc:
            raise Rejected.from_api_error(exc) from None
        if not isinstance(body, dict):
            raise Rejected("validation_error", "the event must be a JSON object",
                           {"_schema": ["must be a JSON object"]})
        return body

    def _record(self, body: dict) -> Recorded:
        """Validate and record the event as POST /v1/events does, in one transaction;
        NotReady is raised as it is (the message is retried, not refused)."""
        try:
            event, recorded = record_event_body(self.service, self.options.client_id, body)
        except ApiError as exc:
            raise Rejected.from_api_error(exc) from None
        except DataError:
            # A value the validation let through and the database refused: the API's
            # app-wide error handler (api/errors.py) answers it with this same 422.
            raise Rejected("validation_error",
                           "a value is out of range or cannot be stored") from None
        self._count_event(event, recorded)
        return recorded

    def _count_event(self, event, recorded: Recorded) -> None:
        """The API's metrics of a committed (or replayed) event."""
        self.metrics.events.labels(type=event.type,
                                   outcome=REPLAYED if recorded.replayed else RECORDED).inc()
        if recorded.decision is not None:
            for grant in recorded.decision.grants:
                self.metrics.rewards.labels(kind=grant.reward.kind).inc()

    def _reject(self, message_id: bytes, fields: dict, body: dict | None, rejected: Rejected,
                settlement: Settlement) -> None:
        source_id = message_id.decode()
        log.warning("%s: message %s dead-lettered to %s: %s: %s", self.options.consumer,
                    source_id, self.options.dead_letters, rejected.code, rejected.message)
        error = rejected.error_json()
        refused = disallowed_attributes(body, self.service.settings.allowed_attributes)
        if refused:
            # Data minimisation: attributes refused as not allowed are not kept in the dead
            # letter either (their names are, in the error); the rest of the event is.
            kept = {name: value for name, value in body["attributes"].items()
                    if name not in refused}
            fields = {**fields, EVENT_FIELD: canonical_json({**body, "attributes": kept})}
        dead_letter = {**fields, b"source_id": source_id,
                       b"consumer": self.options.consumer, b"error": error}
        result = {b"source_id": source_id, b"status": str(rejected.status), b"body": error}
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if isinstance(event_id, str):
            result[b"event_id"] = event_id
        settlement.add(message_id, DEAD_LETTERED, result=result, dead_letter=dead_letter)

    # -- acknowledging -------------------------------------------------------------------

    def _settle(self, settlement: Settlement) -> None:
        """Dead letters, results and acknowledgements of a batch in one MULTI: a dead letter
        is never written without its acknowledgement, nor acknowledged without it."""
        options = self.options
        pipe = self.redis.pipeline(transaction=True)
        for dead_letter in settlement.dead_letters:
            pipe.xadd(options.dead_letters, dead_letter)
        if options.results_stream:
            for result in settlement.results:
                pipe.xadd(options.results_stream, result)
        pipe.xack(options.stream, options.group, *settlement.acks)
        pipe.execute()
        self.stats.last_settled_at = self._clock()
        self._count(settlement.outcomes)

    def _count(self, outcomes: dict[str, int]) -> None:
        for outcome, count in outcomes.items():
            self.stats.outcomes[outcome] += count
            self.metrics.stream_messages.labels(outcome=outcome).inc(count)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
