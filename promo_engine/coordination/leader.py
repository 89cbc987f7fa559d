"""A leader lease in Redis, renewed and fenced, so that one process of many acts at a time.

`RedisLease` is the lease itself: a key holding `<token>:<owner>` with a time to live.
Taking it draws a new fencing token from a counter beside the key; renewing and releasing
are compare-and-set scripts, so a process can only extend or drop a lease that is still
its own. The token goes with every act into the database (`lifecycle.check_fence`), where
the highest token that has acted wins: a leader that was paused past its lease and wakes up
believing it still leads finds a newer token there and cannot act.

`LeaseKeeper` is the thread that keeps trying to take the lease, renews it every third of
its time to live, and tells its owner when it is elected and the moment it is not (a
renewal that fails for any reason, Redis unreachable included, means "stop acting now").
Nothing here knows what the leader does.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

log = logging.getLogger(__name__)

# KEYS[1] the lease, KEYS[2] the token counter; ARGV owner, ttl in ms, token floor.
# The floor is the highest token that has acted (kept in the database): if the counter was
# lost (Redis flushed or failed over), tokens carry on above it instead of starting again
# below it, which would fence out every future leader.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def default_owner() -> str:
    """host:pid:random, unique to this process's lease even across pid reuse."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLease:
    """The lease at key `name` (its token counter at `name:token`), held for `ttl_ms`.

    Not thread-safe by itself: one thread (the keeper) takes, renews and releases it.
    `valid()` may be read from any thread.
    """

    def __init__(self, redis_client, name: str, ttl_ms: int, owner: str | None = None):
        if ttl_ms < 100:
            raise ValueError("a lease shorter than 100 ms cannot be renewed reliably")
        self.redis = redis_client
        self.name = name
        self.counter = f"{name}:token"
        self.ttl_ms = ttl_ms
        self.owner = owner or default_owner()
        self.token: int | None = None
        self._valid_until = 0.0  # time.monotonic() after which we no longer count on it
        self._drift = ttl_ms / 1000 * 0.01 + 0.002  # Redis's clock may run a little faster
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._renew = redis_client.register_script(_RENEW)
        self._release = redis_client.register_script(_RELEASE)

    @property
    def value(self) -> str | None:
        return None if self.token is None else f"{self.token}:{self.owner}"

    def acquire(self, floor: int = 0) -> int | None:
        """Take the lease if nobody holds it: returns the new fencing token (> floor), or None."""
        started = time.monotonic()
        token = self._acquire(keys=[self.name, self.counter],
                              args=[self.owner, self.ttl_ms, int(floor)])
        if token is None:
            return None
        self.token = int(token)
        self._valid_until = started + self.ttl_ms / 1000
        return self.token

    def renew(self) -> bool:
        """Extend the lease if it is still ours; False (and no longer held) otherwise."""
        if self.token is None:
            return False
        started = time.monotonic()
        if self._renew(keys=[self.name], args=[self.value, self.ttl_ms]) == 1:
            self._valid_until = started + self.ttl_ms / 1000
            return True
        self._forget()
        return False

    def release(self) -> bool:
        """Give the lease up if it is still ours (so another process need not wait it out)."""
        value = self.value
        self._forget()
        if value is None:
            return False
        return self._release(keys=[self.name], args=[value]) == 1

    def valid(self) -> bool:
        """Held, and its time to live (counted from before the last renewal was sent, less
        an allowance for the two clocks' drift) not up."""
        return self.token is not None and time.monotonic() < self._valid_until - self._drift

    def holder(self) -> str | None:
        """The `<token>:<owner>` holding the lease now, whoever it is."""
        value = self.redis.get(self.name)
        return value.decode() if isinstance(value, bytes) else value

    def _forget(self) -> None:
        self.token = None
        self._valid_until = 0.0


class LeaseKeeper:
    """Keeps trying to take `lease`; while held, renews it every ttl/3.

    `on_elected(token)` is called when the lease is taken, `on_deposed()` as soon as a
    renewal fails (the lease was lost, or Redis did not answer: either way this process
    must stop acting at once, since another may take over when the time to live ends).
    `floor()` gives the highest token that has acted; when it raises, no attempt is made.
    Both callbacks run on the keeper's thread.
    """

    def __init__(self, lease: RedisLease, *, on_elected: Callable[[int], None],
                 on_deposed: Callable[[], None], floor: Callable[[], int] = lambda: 0,
                 retry_interval: float | None = None):
        self.lease = lease
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.floor = floor
        ttl = lease.ttl_ms / 1000
        self.renew_interval = ttl / 3
        # How long a follower waits between attempts: a tenth of the lease (at most 0.5 s),
        # so that it takes over soon after a dead leader's lease runs out.
        self.retry_interval = retry_interval if retry_interval is not None else min(ttl / 10, 0.5)
        self._stop = threading.Event()
        self._step_down = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self.lease.valid()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="promo-lease", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, releasing the lease if held (on_deposed is called first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def step_down(self) -> None:
        """Give the lease up now (e.g. when an act was fenced out) and compete again."""
        self._step_down.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.lease.token is None:
                    self._try_acquire()
                    if self.lease.token is None:
                        self._stop.wait(self.retry_interval)
                    continue
                next_renewal = time.monotonic() + self.renew_interval
                while not self._stop.is_set() and not self._step_down.is_set() \
                        and time.monotonic() < next_renewal:
                    self._stop.wait(min(0.05, max(0.0, next_renewal - time.monotonic())))
                if self._stop.is_set():
                    break
                if self._step_down.is_set():
                    self._step_down.clear()
                    self._lose("stepping down")
                    self._stop.wait(self.retry_interval)
                    continue
                self._renew()
        finally:
            if self.lease.token is not None:
                self._lose("stopping")

    def _try_acquire(self) -> None:
        try:
            floor = self.floor()
            token = self.lease.acquire(floor)
        except Exception as exc:  # Redis or the database unreachable: try again later
            log.warning("cannot compete for the lease %s: %s", self.lease.name, exc)
            return
        if token is not None:
            log.info("took the lease %s (token %d, owner %s)", self.lease.name, token,
                     self.lease.owner)
            self.on_elected(token)

    def _renew(self) -> None:
        try:
            renewed = self.lease.renew()
        except Exception as exc:
            log.warning("renewing the lease %s failed: %s", self.lease.name, exc)
            renewed = False
        if not renewed:
            self._lose("lease lost")

    def _lose(self, why: str) -> None:
        token = self.lease.token
        try:
            self.on_deposed()
        finally:
            try:
                released = self.lease.release()
            except Exception as exc:
                released = False
                log.warning("releasing the lease %s failed: %s", self.lease.name, exc)
            log.info("no longer leading (%s; token %s%s)", why, token,
                     ", released" if released else "")
