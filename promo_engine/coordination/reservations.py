"""Campaign budgets and redemption limits held in Redis, reserved for a whole event in one
server-side script, while the database stays the ledger of record.

Why Redis: in the database every event granted from one campaign would wait on that
campaign's usage row until commit, so one popular campaign serialises the whole program.
A Lua script is atomic in Redis and takes microseconds, so a hot campaign costs no more
than a quiet one.

The one invariant: a campaign's counter is never below what its committed rewards plus the
reservations of transactions still running take from it. A counter above that only
under-spends, so every doubt (a crash, a lost reply, a Redis restart) resolves upwards,
and reconciliation brings counters back down to the ledger only where that is provably safe:

- A reservation is written with a deadline. The ledger refuses to commit after it, so an
  in-flight reservation whose deadline (plus a grace period) has passed can never turn into
  a ledger row that is not already in the ledger; reconciliation drops it.
- After commit the worker confirms the reservation: it leaves the in-flight set for a
  confirmed log stamped with Redis time. Reconciliation reads the Redis clock (T0) before
  it reads the ledger; a reservation confirmed before T0 was committed before T0 and so is
  in the ledger sums, and one confirmed later is counted again (twice at worst: upwards).
- Refunds give budget back only once committed: their intent is recorded first and applied
  at confirmation, only if it is still in flight. Reconciliation discards refund intents
  it finds in flight (the ledger sums have them or will), so a refund is never applied twice.
- After Redis lost its data (a restart without persistence) reservations of transactions
  still running are gone; no counter is rebuilt until every deadline of that time has
  passed (the settle period), and events that need one get 503 with Retry-After until then.
  A prefix without an epoch is either that or new, which Redis alone cannot tell apart:
  `begin_epoch` asks the caller's judge (counter_epochs.py, which asks the database), and
  a new prefix begins settled at once.
- A prefix holds the counters of one program database. The first reservation under it
  records the database's program id; a reservation or reconciliation from a database with
  another id is refused (503), where it would otherwise spend from, or rebuild from its own
  ledger, counters that another program's events are counted in.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple

import redis

from promo_engine.coordination import reservation_scripts as scripts
from promo_engine.coordination.throttled_log import ThrottledWarning

log = logging.getLogger(__name__)
misconfigured = ThrottledWarning(log)

NO_LIMIT = -1  # how the scripts are told a limit is absent (scripts.RESERVE)
BUILD_LOCK_MS = 30_000  # longest a ledger read for missing counters may hold the build lock


class Request(NamedTuple):
    """What one reward takes from one campaign."""
    campaign_id: str
    cost: int
    redemptions: int
    budget_limit: int | None
    max_redemptions: int | None


class NotReady(Exception):
    """Redis lost its data and is settling; retry after `retry_after_ms`. Nothing was
    recorded. `reason` says why, for /readyz: `settling`, `counters_building` or
    `foreign_prefix`."""

    reason = "settling"

    def __init__(self, retry_after_ms: int, reason: str | None = None):
        super().__init__(f"budget counters are being rebuilt; retry in {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms
        if reason is not None:
            self.reason = reason


class EpochMissing(NotReady):
    """The prefix has no epoch (new, or Redis lost its data): `Reservations.begin_epoch`
    must run, outside any transaction, before anything is reserved."""


class ForeignPrefix(NotReady):
    """The Redis prefix holds the counters of another program database (two databases were
    given the same PROMO_REDIS_PREFIX). Nothing is reserved or rebuilt until that is put
    right: an operator's fix, so the wait asked for is long."""

    reason = "foreign_prefix"

    def __init__(self, prefix: str, owner: str, program_id: str):
        super().__init__(retry_after_ms=60_000)
        self.prefix, self.owner, self.program_id = prefix, owner, program_id

    def __str__(self) -> str:
        return (f"the Redis prefix {self.prefix} holds the counters of another program "
                f"database (program id {self.owner}; this database's is {self.program_id}): "
                f"give each database a PROMO_REDIS_PREFIX of its own")


@dataclass
class Reservation:
    id: str
    deadline_ms: int
    requests: tuple[Request, ...]
    refund: bool = False
    done: bool = field(default=False, compare=False)
    # Each request's campaign counters (spent, redemptions) right after it was reserved
    after: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    def expired(self) -> bool:
        return now_ms() >= self.deadline_ms


@dataclass(frozen=True)
class Readiness:
    """What a reservation would meet now: `problem` is None when it could go ahead."""
    problem: NotReady | None = None
    new_epoch: bool = False  # no epoch: `begin_epoch` first
    missing: frozenset[str] = frozenset()  # campaigns whose counters are not built yet


@dataclass(frozen=True)
class Outcome:
    reservation: Reservation | None = None
    full: frozenset[str] = frozenset()  # campaigns without room for their reward
    missing: frozenset[str] = frozenset()  # campaigns whose counters are not built yet


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _payload(requests: Iterable[Request]) -> str:
    return json.dumps([[r.campaign_id, r.cost, r.redemptions] for r in requests],
                      separators=(",", ":"))


class Reservations:
    """The Redis side of budgets and limits; see the module's docstring for the invariant."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_ms: int, grace_ms: int,
                 program_id: Callable[[], str], keep_confirmed_ms: int = 120_000,
                 epoch_judge: Callable[["Reservations"], None] | None = None):
        self.client = client
        # Called by `begin_epoch`; it must call `start_epoch`. Without one every missing
        # epoch is taken for a data loss and waits out the settle period.
        self._epoch_judge = epoch_judge
        self.prefix = prefix
        self._read_program_id = program_id  # read once, when first needed
        self._program_id: str | None = None
        self.ttl_ms = ttl_ms
        self.grace_ms = grace_ms
        self.keep_confirmed_ms = keep_confirmed_ms
        self.epoch_key = f"{prefix}:epoch"
        self.inflight_key = f"{prefix}:inflight"
        self.payloads_key = f"{prefix}:reservations"
        self.confirmed_key = f"{prefix}:confirmed"
        self.owner_key = f"{prefix}:owner"
        self._reserve = client.register_script(scripts.RESERVE)
        self._intend = client.register_script(scripts.INTEND_REFUND)
        self._release = client.register_script(scripts.RELEASE)
        self._confirm = client.register_script(scripts.CONFIRM)
        self._clock = client.register_script(scripts.CLOCK)
        self._reconcile = client.register_script(scripts.RECONCILE)
        self._begin_epoch = client.register_script(scripts.BEGIN_EPOCH)
        self._readiness = client.register_script(scripts.READINESS)
        self._unlock = client.register_script(scripts.UNLOCK)

    @property
    def settle_ms(self) -> int:
        """How long after Redis lost its data every reservation of that time is settled."""
        return self.ttl_ms + self.grace_ms

    def usage_key(self, campaign_id: str) -> str:
        return f"{self.prefix}:usage:{campaign_id}"

    @property
    def program_id(self) -> str:
        """The id of the program database whose counters this prefix must hold, read once."""
        if self._program_id is None:
            self._program_id = self._read_program_id()
        return self._program_id

    def load_program_id(self) -> str:
        """The program id, read now if not yet: reading it may write (`program_state.program_id`),
        so the ledger calls this before an event's transaction, not inside it."""
        return self.program_id

    def _refuse_foreign(self, owner) -> None:
        refused = ForeignPrefix(self.prefix, _text(owner), self.program_id)
        misconfigured.warning("%s", refused)  # an operator's fix: say it where they look
        raise refused

    # -- the epoch: since when counters may be rebuilt ------------------------------------

    def begin_epoch(self) -> None:
        """Give the prefix an epoch if it has none; outside any database transaction, since
        the judge may write (it records that this database now uses the prefix)."""
        if self._epoch_judge is None:
            self.start_epoch(self.settle_ms)
        else:
            self._epoch_judge(self)

    def start_epoch(self, settle_ms: int) -> str | None:
        """Begin the epoch, settled `settle_ms` from now (0: a prefix known to be new);
        the value set, or None when the prefix had an epoch already."""
        value = self._begin_epoch(keys=[self.epoch_key], args=[settle_ms])
        return None if value is None else _text(value)

    def undo_epoch(self, value: str) -> None:
        """Take back an epoch this process set (`start_epoch`'s value), if still the same:
        the judge's record of it did not commit."""
        self._unlock(keys=[self.epoch_key], args=[value])

    def readiness(self, campaign_ids: Iterable[str]) -> Readiness:
        """Whether an event reserving for `campaign_ids` would go ahead now; changes nothing."""
        ids = list(campaign_ids)
        reply = self._readiness(keys=[self.epoch_key, self.owner_key,
                                      *(self.usage_key(c) for c in ids)],
                                args=[self.program_id])
        status = _text(reply[0])
        if status == "new":
            return Readiness(problem=EpochMissing(self.settle_ms), new_epoch=True)
        if status == "wait":
            return Readiness(problem=NotReady(int(_text(reply[1]))))
        if status == "foreign":
            return Readiness(problem=ForeignPrefix(self.prefix, _text(reply[1]), self.program_id))
        if status == "init":
            return Readiness(missing=frozenset(ids[int(i) - 1] for i in reply[1:]))
        return Readiness()

    def _epoch_missing(self) -> NotReady:
        """What a reservation or rebuild that found no epoch raises: without a judge the
        epoch begins here (settling); with one, the caller begins it outside its
        transaction and tries again."""
        if self._epoch_judge is None:
            self.start_epoch(self.settle_ms)
            return NotReady(self.settle_ms)
        return EpochMissing(self.settle_ms)

    # -- the event path ----------------------------------------------------------------

    def reserve(self, requests: list[Request]) -> Outcome:
        """All of `requests` or none, in one round trip."""
        reservation, keys, args = self._reserving(requests)
        reply = self._reserve(keys=keys, args=args)
        status = _text(reply[0])
        if status == "ok":
            reservation.after = tuple(zip(reply[1::2], reply[2::2]))
            return Outcome(reservation=reservation)
        if status == "wait":
            raise NotReady(int(_text(reply[1])))
        if status == "new":
            raise self._epoch_missing()
        if status == "foreign":
            self._refuse_foreign(reply[1])
        named = frozenset(requests[int(i) - 1].campaign_id for i in reply[1:])
        return Outcome(full=named) if status == "full" else Outcome(missing=named)

    def reserve_ahead(self, request_lists: list[list[Request]]) -> list[Reservation | None]:
        """Many events' reservations in one round trip, each all or none as `reserve`
        makes it, in the order given: a batch's, before its events are recorded. None
        where `reserve` would not have returned a reservation (no room, counters not built,
        Redis not ready, its scripts lost): such an event reserves again, in its turn,
        the usual way (which reports the problem). Nothing is held for it."""
        if not request_lists:
            return []
        pipe = self.client.pipeline(transaction=False)
        made = []
        for requests in request_lists:
            reservation, keys, args = self._reserving(requests)
            made.append(reservation)
            # By digest alone (as `confirm`): a script in a pipeline otherwise costs a
            # SCRIPT EXISTS round trip first. Lost scripts answer NoScriptError, changing nothing.
            pipe.evalsha(self._reserve.sha, len(keys), *keys, *args)
        ahead: list[Reservation | None] = []
        for reservation, reply in zip(made, pipe.execute(raise_on_error=False)):
            if isinstance(reply, list) and _text(reply[0]) == "ok":
                reservation.after = tuple(zip(reply[1::2], reply[2::2]))
                ahead.append(reservation)
            else:
                ahead.append(None)
        return ahead

    def _reserving(self, requests: list[Request]) -> tuple[Reservation, list, list]:
        """A new reservation of `requests`, and the keys and arguments of its script."""
        reservation = Reservation(id="r:" + secrets.token_hex(12),
                                  deadline_ms=now_ms() + self.ttl_ms, requests=tuple(requests))
        args: list = [reservation.id, reservation.deadline_ms, self.settle_ms, _payload(requests),
                      self.program_id]
        for r in requests:
            args += [r.cost, r.redemptions,
                     NO_LIMIT if r.budget_limit is None else r.budget_limit,
                     NO_LIMIT if r.max_redemptions is None else r.max_redemptions]
        keys = [self.epoch_key, self.inflight_key, self.payloads_key, self.owner_key,
                *(self.usage_key(r.campaign_id) for r in requests)]
        return reservation, keys, args

    def intend_refund(self, returns: list[Request]) -> Reservation:
        """Record that a refund will give budget back once it commits (`returns` are negative)."""
        reservation = Reservation(id="f:" + secrets.token_hex(12),
                                  deadline_ms=now_ms() + self.ttl_ms, requests=tuple(returns),
                                  refund=True)
        self._intend(keys=[self.inflight_key, self.payloads_key],
                     args=[reservation.id, reservation.deadline_ms, _payload(returns)])
        return reservation

    def release(self, reservation: Reservation) -> None:
        """The transaction rolled back: give back what the reservation took."""
        if reservation.done:
            return
        args: list = [reservation.id, int(reservation.refund)]
        for r in reservation.requests:
            args += [r.cost, r.redemptions]
        self._release(keys=[self.inflight_key, self.payloads_key,
                            *(self.usage_key(r.campaign_id) for r in reservation.requests)],
                      args=args)
        reservation.done = True

    def confirm(self, reservation: Reservation, pipeline=None) -> None:
        """The transaction committed. With a `pipeline`, the script is sent by its digest
        alone: a script in a redis-py pipeline otherwise costs a SCRIPT EXISTS round trip
        first, on every event. If Redis has lost its scripts (a restart), the pipeline
        raises NoScriptError and the caller confirms again without one: a confirmation
        that did not run changed nothing."""
        args: list = [reservation.id, int(reservation.refund), self.keep_confirmed_ms]
        for r in reservation.requests:
            args += [r.cost, r.redemptions]
        keys = [self.inflight_key, self.payloads_key, self.confirmed_key,
                *(self.usage_key(r.campaign_id) for r in reservation.requests)]
        if pipeline is None:
            self._confirm(keys=keys, args=args)
        else:
            pipeline.evalsha(self._confirm.sha, len(keys), *keys, *args)
        reservation.done = True

    def counters(self, campaign_ids: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        """(spent, redemptions) per campaign as Redis holds them; None where not built."""
        ids = list(campaign_ids)
        pipe = self.client.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hmget(self.usage_key(campaign_id), "s", "r")
        result = {}
        for campaign_id, (spent, redemptions) in zip(ids, pipe.execute()):
            result[campaign_id] = None if spent is None else (int(spent), int(redemptions))
        return result

    # -- reconciliation ----------------------------------------------------------------

    def try_build(self) -> str | None:
        """A token if this worker may build these counters now, None if another is on it.

        After Redis lost its data every worker finds every counter missing at once; one
        reads the ledger while the others answer 503 for a moment, instead of all of them
        running the same aggregate over the rewards table."""
        token = secrets.token_hex(8)
        key = f"{self.prefix}:building"
        return token if self.client.set(key, token, nx=True, px=BUILD_LOCK_MS) else None

    def building(self) -> bool:
        """Whether some worker is building counters now."""
        return bool(self.client.exists(f"{self.prefix}:building"))

    def built(self, token: str) -> None:
        """Let the next build go (only if the lock is still this worker's)."""
        self._unlock(keys=[f"{self.prefix}:building"], args=[token])

    def clock_ms(self) -> int:
        """Redis's clock: read before the ledger sums that are passed to `rebuild`."""
        return int(self._clock(keys=[], args=[]))

    def rebuild(self, t0_ms: int, ledger: Mapping[str, tuple[int, int]], *,
                only_missing: bool = False) -> int:
        """Set counters from the ledger sums read after `t0_ms`; the number set.

        Raises NotReady while Redis is settling after a data loss (ForeignPrefix where the
        prefix holds another program's counters, EpochMissing where it has no epoch);
        returns -1 when the ledger sums are too old to be used safely (nothing was changed)."""
        if not ledger:
            return 0
        args: list = [t0_ms, now_ms() - self.grace_ms, self.keep_confirmed_ms,
                      int(only_missing), self.program_id]
        for campaign_id, (spent, redemptions) in ledger.items():
            args += [campaign_id, spent, redemptions]
        reply = self._reconcile(
            keys=[self.epoch_key, self.inflight_key, self.payloads_key, self.owner_key,
                  self.confirmed_key, *(self.usage_key(c) for c in ledger)], args=args)
        if isinstance(reply, list):
            self._refuse_foreign(reply[1])
        if int(reply) == -2:
            raise NotReady(self.settle_ms)
        if int(reply) == -3:
            raise self._epoch_missing()
        return int(reply)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(redis_url: str) -> redis.Redis:
    """A client that fails fast: an unreachable Redis gives a 503 in well under a second
    instead of holding a worker thread."""
    return redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                                health_check_interval=15)
