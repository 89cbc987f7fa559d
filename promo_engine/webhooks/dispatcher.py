"""The dispatcher: claims due deliveries, sends them, records what became of each.

One thread claims (`deliveries.claim`), hands the rows to their endpoints' lanes and
records outcomes in batched UPDATEs; a pool of threads sends. Each endpoint is a lane with
at most `per_endpoint` sends in flight, so a slow or dead receiver holds up only its own
lane. When an endpoint gives no answer (refused, reset, timed out), its lane stops sending
until the endpoint's next retry (5 s, then growing by the retry schedule while it keeps
failing): the rest of its claimed rows, and those claimed meanwhile, are handed back unsent,
due then, rather than each waiting out the timeout. A lane's queue is bounded (claims pass
an endpoint by while half a batch waits for it), and a row not started well within its
lease is handed back as it was, so a lease never runs out under a send.

Nothing here is state that matters: a dispatcher killed at any point leaves rows that come
due again when their leases end (`deliveries.py`). Several dispatchers may run at once, in
any processes (`promo-engine scheduler`, `promo-engine webhooks run`).

Times of record (due, leases, retries) come from `clock`, which tests replace; a request's
signature timestamp is always the real time (receivers check it against theirs).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy.engine import Engine

from promo_engine.coordination.throttled_log import ThrottledWarning
from promo_engine.webhooks.deliveries import (DELIVERED, FAILED, PENDING, Attempted, Claimed,
                                              NotAttempted, claim, oldest_due, record)
from promo_engine.webhooks.endpoints import ENDPOINT_REMOVED, SecretBook
from promo_engine.webhooks.retry_schedule import RetrySchedule
from promo_engine.webhooks.sender import DEFAULT_TIMEOUT_SECONDS, Answer, Sender

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0  # well past a send's timeout (10 s)
DEFAULT_BATCH = 200  # rows per claim
DEFAULT_PER_ENDPOINT = 8  # sends in flight to one endpoint
DEFAULT_WORKERS = 32  # sends in flight in all
POLL_SECONDS = 0.5  # between claims when nothing is waiting: deliveries go out within 5 s
GAUGE_SECONDS = 1.0  # between two reads of the oldest due delivery
STOP_GRACE_SECONDS = 5.0  # sends still in flight at stop are waited for this long


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RoundCounts:
    """Deliveries claimed, and what became of those recorded."""
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0  # tried, not accepted, to be tried again
    failed: int = 0  # given up: the retry window has passed
    put_back: int = 0  # handed back unsent, due again later
    dropped: int = 0  # of removed endpoints, never sent

    def add(self, other: "RoundCounts") -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclass(frozen=True)
class _Queued:
    claimed: Claimed
    round: int  # of the claim that took it
    start_by: datetime  # hand it back unsent after this: its lease would run out mid-send


class _Lane:
    """One endpoint's claimed rows waiting to be sent, and its last failure."""

    def __init__(self):
        self.queue: deque[_Queued] = deque()
        self.running = 0  # drain tasks
        self.failures = 0  # rounds in a row in which the endpoint gave no answer
        self.failed_round = -1  # rows claimed in this round or before go back unsent...
        self.retry_at: datetime | None = None  # ...and so do rows claimed before this
        self.error: str | None = None

    def sending(self, queued: _Queued, now: datetime) -> bool:
        return queued.round > self.failed_round and (self.retry_at is None
                                                      or now >= self.retry_at)


class Dispatcher:
    """Sends the outbox of `engine`'s database. `run_once()` for one round; `start()` and
    `stop()` for a thread that runs rounds until stopped."""

    def __init__(self, engine: Engine, secret_key: str, *, metrics=None,
                 clock: Callable[[], datetime] | None = None,
                 schedule: RetrySchedule | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 lease: float = DEFAULT_LEASE_SECONDS, batch_size: int = DEFAULT_BATCH,
                 per_endpoint: int = DEFAULT_PER_ENDPOINT, workers: int = DEFAULT_WORKERS,
                 poll_interval: float = POLL_SECONDS):
        if lease <= timeout:
            raise ValueError("the lease must be longer than the timeout")
        self.engine = engine
        self.metrics = metrics  # a promo_engine.metrics.Metrics, or None
        self.clock = clock or utcnow
        self.schedule = schedule or RetrySchedule()
        self.lease = timedelta(seconds=lease)
        # Rows still unsent this close to the end of their lease go back as they were.
        self.start_margin = timedelta(seconds=timeout + min(5.0, (lease - timeout) / 2))
        self.batch_size = batch_size
        self.per_endpoint = per_endpoint
        self.poll_interval = poll_interval
        self.secrets = SecretBook(secret_key)
        self.sender = Sender(timeout=timeout, per_endpoint=per_endpoint)
        self.totals = RoundCounts()
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="promo-webhook-send")
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified as rows are decided
        self._lanes: dict[str, _Lane] = {}
        self._outstanding = 0  # rows claimed and not yet decided
        self._round = 0
        self._attempted: list[Attempted] = []
        self._not_attempted: list[NotAttempted] = []
        self._warnings: dict[str, ThrottledWarning] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gauge_due = 0.0
        self._db_warning = ThrottledWarning(log)

    # -- running ----------------------------------------------------------------------

    def run_once(self) -> RoundCounts:
        """One round, to its end: claim, send everything claimed, record. Not while the
        thread runs."""
        claimed = self._claim()
        with self._settled:
            self._settled.wait_for(lambda: self._outstanding == 0)
        counts = self._flush()
        counts.claimed = claimed
        if self.metrics is not None:
            self.lag_seconds()
        return counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="promo-webhooks", daemon=True)
        self._thread.start()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Claim nothing more, hand back the rows not started, wait up to `grace` seconds
        for the sends in flight, and record. Rows of sends still in flight then come due
        again when their leases end."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            for lane in self._lanes.values():
                while lane.queue:
                    queued = lane.queue.popleft()
                    self._decided_locked(NotAttempted(queued.claimed, PENDING,
                                                      queued.claimed.due, None))
        with self._settled:
            self._settled.wait_for(lambda: self._outstanding == 0, timeout=grace)
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001 (rows come due again when their leases end)
            log.warning("could not record the last webhook outcomes (%s); those deliveries "
                        "are due again when their leases end", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.sender.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the round: a lane emptied during it wakes the next
            claimed = 0
            try:
                self._flush()
                claimed = self._claim()
                self._update_gauge()
            except Exception as exc:  # noqa: BLE001 (the database is away, say: try again)
                self._db_warning.warning("webhook dispatcher: %s; trying again in a second",
                                         exc)
                self._stopping.wait(1.0)
                continue
            if claimed < self.batch_size:  # a full batch: more are probably due
                self._wake.wait(self.poll_interval)

    # -- claiming -------------------------------------------------------------------------

    def _claim(self) -> int:
        now = self.clock()
        with self._lock:
            half = max(1, self.batch_size // 2)
            exclude = {endpoint_id for endpoint_id, lane in self._lanes.items()
                       if len(lane.queue) >= half}
        claimed = claim(self.engine, now, now + self.lease, self.batch_size, exclude)
        if not claimed:
            return 0
        with self._lock:
            self.totals.claimed += len(claimed)
            self._round += 1
            for row in claimed:
                self._outstanding += 1
                if row.endpoint_removed:  # removed since the row was written
                    self._decided_locked(NotAttempted(row, FAILED, row.due, ENDPOINT_REMOVED))
                    continue
                lane = self._lanes.get(row.endpoint_id)
                if lane is None:
                    lane = self._lanes[row.endpoint_id] = _Lane()
                lane.queue.append(_Queued(row, self._round, row.lease_until - self.start_margin))
            for endpoint_id, lane in self._lanes.items():
                while lane.running < min(self.per_endpoint, len(lane.queue)):
                    lane.running += 1
                    self._pool.submit(self._drain, endpoint_id, lane)
        return len(claimed)

    # -- sending ------------------------------------------------------------------------

    def _drain(self, endpoint_id: str, lane: _Lane) -> None:
        """Send the lane's rows, one at a time, until its queue is empty."""
        while True:
            with self._lock:
                if not lane.queue:
                    lane.running -= 1
                    return
                queued = lane.queue.popleft()
                if not lane.queue:
                    self._wake.set()  # claim more for it
                now = self.clock()
                sending = lane.sending(queued, now)
                error, retry_at = lane.error, lane.retry_at
            try:
                if not sending:
                    decided = self._hand_back(queued.claimed, error, retry_at, now)
                elif now > queued.start_by:
                    decided = NotAttempted(queued.claimed, PENDING, queued.claimed.due, None)
                else:
                    decided = self._send(endpoint_id, lane, queued)
            except Exception:  # a bug: the row stays leased, and comes due after the lease
                log.exception("webhook delivery %s: unexpected error", queued.claimed.id)
                decided = None
            with self._lock:
                self._decided_locked(decided)

    def _send(self, endpoint_id: str, lane: _Lane, queued: _Queued) -> Attempted:
        row = queued.claimed
        secret = self.secrets.secret(endpoint_id, row.secret_ciphertext)
        if secret is None:
            answer = Answer(None, "cannot decrypt the endpoint's secret: is SECRET_KEY the one "
                                  "it was added with?")
        else:
            answer = self.sender.send(row.url, secret, row.message_id, row.payload)
        now = self.clock()
        with self._lock:
            if not answer.unreachable:
                lane.failures = 0
            elif lane.failed_round < queued.round:  # the first failure of its round
                lane.failures += 1
                lane.failed_round, lane.error = queued.round, answer.error
                lane.retry_at = now + self.schedule.delay(lane.failures)
        if answer.unreachable:
            self._warn(endpoint_id, answer.error)
        if answer.accepted:
            return Attempted(row, DELIVERED, now, now, answer.status, None)
        retry_at = self.schedule.after_failure(row.created_at, row.attempts + 1, now)
        return Attempted(row, PENDING if retry_at else FAILED, now, retry_at or now,
                         answer.status, answer.error)

    def _hand_back(self, row: Claimed, error: str | None, retry_at: datetime,
                   now: datetime) -> NotAttempted:
        """A row of an endpoint that gave no answer a moment ago: due again at the
        endpoint's next retry, or failed if its retry window has passed."""
        reason = f"not sent after an earlier delivery to this endpoint failed: {error}"
        if self.schedule.after_failure(row.created_at, row.attempts, now) is None:
            return NotAttempted(row, FAILED, row.due, reason)
        return NotAttempted(row, PENDING, retry_at, reason)

    def _decided_locked(self, decided) -> None:
        if isinstance(decided, Attempted):
            self._attempted.append(decided)
        elif isinstance(decided, NotAttempted):
            self._not_attempted.append(decided)
        self._outstanding -= 1
        self._settled.notify_all()

    def _warn(self, endpoint_id: str, error: str | None) -> None:
        warning = self._warnings.get(endpoint_id)
        if warning is None:
            warning = self._warnings.setdefault(endpoint_id, ThrottledWarning(log, 60.0))
        # The endpoint's id, never its URL (it may hold a token).
        warning.warning("webhook endpoint %s: %s; its deliveries are retried later",
                        endpoint_id, error)

    # -- recording ------------------------------------------------------------------------

    def _flush(self) -> RoundCounts:
        with self._lock:
            attempted, self._attempted = self._attempted, []
            not_attempted, self._not_attempted = self._not_attempted, []
        if not attempted and not not_attempted:
            return RoundCounts()
        try:
            record(self.engine, attempted, not_attempted)
        except Exception:
            # Kept to record at the next round, unless their leases have ended meanwhile
            # (the rows are someone else's then).
            now = self.clock()
            with self._lock:
                self._attempted[:0] = [a for a in attempted if a.claimed.lease_until > now]
                self._not_attempted[:0] = [n for n in not_attempted
                                           if n.claimed.lease_until > now]
            raise
        counts = RoundCounts()
        for a in attempted:
            outcome = {DELIVERED: "delivered", PENDING: "retrying", FAILED: "failed"}[a.status]
            setattr(counts, outcome, getattr(counts, outcome) + 1)
            self._count(a.claimed.type, outcome)
        for n in not_attempted:
            if n.last_error == ENDPOINT_REMOVED:
                counts.dropped += 1
            elif n.status == FAILED:
                counts.failed += 1
                self._count(n.claimed.type, "failed")
            else:
                counts.put_back += 1
        with self._lock:
            self.totals.add(counts)
        return counts

    def _count(self, message_type: str, outcome: str) -> None:
        if self.metrics is None:
            return
        self.metrics.webhook_deliveries.labels(message_type, outcome).inc()
        if outcome == "failed":
            self.metrics.webhook_failures.labels(message_type).inc()

    def _update_gauge(self) -> None:
        if self.metrics is not None and time.monotonic() >= self._gauge_due:
            self.lag_seconds()

    def lag_seconds(self) -> float:
        """How long the delivery due longest has waited since it came due (0: none); also
        the gauge's value from now on."""
        now = self.clock()
        due = oldest_due(self.engine, now)
        lag = max(0.0, (now - due).total_seconds()) if due is not None else 0.0
        if self.metrics is not None:
            self.metrics.webhook_oldest_pending.set(lag)
            self._gauge_due = time.monotonic() + GAUGE_SECONDS
        return lag
