"""Per-client request rate limits on the signed API, counted after the signature is checked
(so nobody can spend another client's allowance by sending its key id).

Without Redis the `limits` library counts in process memory (a moving window). With Redis the
limit must hold across workers and hosts, and asking Redis on every request would cost a
round trip on the hot path, as much as the reservation of a budget. So each worker leases
its allowance in blocks: one script call takes up to `lease` requests of the current fixed
window from the client's counter in Redis, and the worker spends them locally. A small limit
leases one request at a time and is exact; a large one (the default, 5000/second, leases 50)
may leave up to `lease` requests per worker unspent in a window, never more granted than the
limit. A Redis that cannot be reached lets requests through: the limit protects the service,
it is not a business rule.
"""
from __future__ import annotations

import logging
import math
import threading
import time

import redis
from flask import current_app
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from promo_engine.api.errors import ApiError
from promo_engine.coordination.throttled_log import ThrottledWarning

log = logging.getLogger(__name__)
unavailable = ThrottledWarning(log)

NAMESPACE = "api-client"
LEASE_SHARE = 100  # a lease is at most 1/100 of the limit: what one worker may hold unspent

# KEYS: the client's counter for this window; ARGV: requests wanted, window length (ms).
# Returns the counter after taking them; the caller is granted what fits under the limit.
_TAKE = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return used
"""


def _too_many(item: RateLimitItem, retry_after_seconds: float) -> ApiError:
    return ApiError(429, "rate_limited",
                    f"more than {item.amount} requests per {item.multiples} "
                    f"{item.GRANULARITY.name} for this client; retry later",
                    headers={"Retry-After": str(max(1, math.ceil(retry_after_seconds)))})


class InProcessRateLimit:
    """One process counts alone (no Redis): a moving window in memory."""

    def __init__(self, rate: str):
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(storage_from_string("memory://"))
        # The memory storage is not thread-safe: two threads scheduling its expiry timer at
        # once start the same timer twice (RuntimeError), as the concurrency tests found.
        self._lock = threading.Lock()

    def check(self, client_id: str) -> None:
        with self._lock:
            if self.limiter.hit(self.item, NAMESPACE, client_id):
                return
            reset_at = self.limiter.get_window_stats(self.item, NAMESPACE, client_id).reset_time
        raise _too_many(self.item, reset_at - time.time())


class LeasedRateLimit:
    """Fixed windows counted in Redis, taken by each worker in leases (see the module)."""

    def __init__(self, rate: str, client: redis.Redis, prefix: str,
                 clock=time.time):
        self.item = parse(rate)
        self.window_seconds = self.item.get_expiry()
        self.lease = max(1, self.item.amount // LEASE_SHARE)
        self.prefix = prefix
        self.clock = clock
        self.take = client.register_script(_TAKE)
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[int, int]] = {}  # client id -> (window, requests left)

    def check(self, client_id: str) -> None:
        """Count one request of `client_id`; 429 with Retry-After when over the limit."""
        now = self.clock()
        window = int(now // self.window_seconds)
        with self._lock:
            leased_window, left = self._leases.get(client_id, (window, 0))
            if leased_window == window and left > 0:
                self._leases[client_id] = (window, left - 1)
                return
        granted = self._take(client_id, window)
        if granted is None:  # Redis unreachable: let it through
            return
        if granted == 0:
            raise _too_many(self.item, (window + 1) * self.window_seconds - now)
        with self._lock:
            # Requests of this lease not spent by this one; a lease taken meanwhile by
            # another thread of the worker for the same window adds up.
            leased_window, left = self._leases.get(client_id, (window, 0))
            self._leases[client_id] = (window, (left if leased_window == window else 0)
                                       + granted - 1)

    def _take(self, client_id: str, window: int) -> int | None:
        # The client id's length keeps ("a:b", "c") and ("a", "b:c") apart.
        key = f"{self.prefix}:rate:{len(client_id)}:{client_id}:{window}"
        try:
            used = self.take(keys=[key], args=[self.lease,
                                               math.ceil(self.window_seconds * 1000) + 1000])
        except redis.RedisError as exc:
            unavailable.warning("rate limit storage unavailable, requests let through: %s", exc)
            return None
        return max(0, min(self.lease, self.item.amount - (used - self.lease)))


def client_rate_limit(rate: str, client: redis.Redis | None, prefix: str):
    return LeasedRateLimit(rate, client, prefix) if client is not None else InProcessRateLimit(rate)


def check_client_rate(client_id: str) -> None:
    limit = current_app.extensions.get("promo_rate_limit")
    if limit is not None:
        limit.check(client_id)
