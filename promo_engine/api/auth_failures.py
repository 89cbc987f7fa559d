"""A limit on failed authentications per remote address (`PROMO_AUTH_FAILURE_LIMIT`).

After `limit` failed authentications (401) from one address within the window, that
address's /v1/ requests get 429 with Retry-After until the window passes, before any key
is looked up or any HMAC computed: guessing key ids or signatures, or loading the service
with unsigned requests, stops being free.

Only failures are counted, so a wallet whose requests pass pays nothing for this: no Redis
round trip, one dictionary lookup. Without Redis each process counts alone (a moving window
in memory); with Redis the count is shared by all workers and hosts (fixed windows). Whether
an address is blocked is kept in each process: a worker learns it when one of its own
failures reaches the limit, so each other worker answers at most one more failure from that
address before it blocks it too. A Redis that cannot be reached lets requests through: the
limit protects the service, it is not a business rule.

An IPv6 address counts as its /64, the block one subscriber is usually given; otherwise one
machine could fail from 2^64 addresses.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict

import redis
from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from promo_engine.api.errors import ApiError
from promo_engine.coordination.throttled_log import ThrottledWarning

log = logging.getLogger(__name__)
unavailable = ThrottledWarning(log)

NAMESPACE = "auth-failures"
MAX_BLOCKED = 100_000  # blocked addresses one process remembers; the oldest go first
_EXTENSION = "promo_auth_failures"

# KEYS: the address's counter for this window; ARGV: its lifetime (ms). Returns the count.
_COUNT = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return failures
"""


def address_key(remote_addr: str | None) -> str:
    """What failures are counted under: the address, or an IPv6 address's /64."""
    if not remote_addr:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return remote_addr[:100]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address.packed, 64), strict=False))
    return str(address)


def _blocked(seconds_left: float) -> ApiError:
    return ApiError(429, "rate_limited",
                    "too many failed authentications from this address; retry later",
                    headers={"Retry-After": str(max(1, math.ceil(seconds_left)))})


class FailureLimit:
    """The blocked addresses of this process; subclasses count the failures."""

    def __init__(self, rate: str, clock=time.time):
        self.item = parse(rate)
        self.clock = clock
        self._blocked: OrderedDict[str, float] = OrderedDict()  # address -> blocked until
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """429 with Retry-After while `address` is blocked."""
        until = self._blocked.get(address)
        if until is None:
            return
        seconds_left = until - self.clock()
        if seconds_left > 0:
            raise _blocked(seconds_left)
        with self._lock:
            if self._blocked.get(address) == until:
                del self._blocked[address]

    def record_failure(self, address: str) -> None:
        until = self._count(address)
        if until is None:
            return
        with self._lock:
            self._blocked[address] = until
            self._blocked.move_to_end(address)
            while len(self._blocked) > MAX_BLOCKED:
                self._blocked.popitem(last=False)

    def _count(self, address: str) -> float | None:
        """Count one failure; when the address has now reached the limit, until when it is
        blocked (the clock's time), else None."""
        raise NotImplementedError


class InProcessFailureLimit(FailureLimit):
    """One process counts alone (no Redis): a moving window in memory."""

    def __init__(self, rate: str):
        super().__init__(rate)  # the `limits` memory storage keeps time.time()
        self.limiter = MovingWindowRateLimiter(storage_from_string("memory://"))
        # The memory storage is not thread-safe (see rate_limit.InProcessRateLimit).
        self._count_lock = threading.Lock()

    def _count(self, address: str) -> float | None:
        with self._count_lock:
            self.limiter.hit(self.item, NAMESPACE, address)
            stats = self.limiter.get_window_stats(self.item, NAMESPACE, address)
        return stats.reset_time if stats.remaining == 0 else None


class SharedFailureLimit(FailureLimit):
    """Fixed windows counted in Redis, shared by every worker and host."""

    def __init__(self, rate: str, client: redis.Redis, prefix: str, clock=time.time):
        super().__init__(rate, clock)
        self.window_seconds = self.item.get_expiry()
        self.prefix = prefix
        self.count = client.register_script(_COUNT)

    def _count(self, address: str) -> float | None:
        window = int(self.clock() // self.window_seconds)
        key = f"{self.prefix}:{NAMESPACE}:{window}:{address}"  # the address last: it has ':'
        try:
            failures = self.count(keys=[key],
                                  args=[math.ceil(self.window_seconds * 1000) + 1000])
        except redis.RedisError as exc:
            unavailable.warning("authentication failure counts unavailable, not counted: %s",
                                exc)
            return None
        return (window + 1) * self.window_seconds if failures >= self.item.amount else None


def install_auth_failure_limit(app: Flask) -> None:
    settings = app.config.get("PROMO_SETTINGS")
    if settings is None or not settings.auth_failure_limit:
        return
    client = app.extensions["promo"].redis
    app.extensions[_EXTENSION] = (
        SharedFailureLimit(settings.auth_failure_limit, client, settings.redis_prefix)
        if client is not None else InProcessFailureLimit(settings.auth_failure_limit))


def auth_failure_limit() -> FailureLimit | None:
    return current_app.extensions.get(_EXTENSION)
