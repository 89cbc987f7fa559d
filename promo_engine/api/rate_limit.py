"""Per-client request rate limits on the signed API, counted after the signature is checked
(so nobody can spend another client's allowance by sending its key id).

The `limits` library does the counting: in Redis when it is configured, so the limit holds
across workers and hosts, and in process memory otherwise. A Redis that cannot be reached
lets requests through: the limit protects the service, it is not a business rule.
"""
from __future__ import annotations

import logging
import math
import time

from flask import current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..throttled_log import ThrottledWarning
from .errors import ApiError

log = logging.getLogger(__name__)
unavailable = ThrottledWarning(log)

NAMESPACE = "api-client"


class ClientRateLimit:
    def __init__(self, rate: str, redis_url: str | None, prefix: str):
        self.item = parse(rate)
        storage = (storage_from_string(redis_url, key_prefix=f"{prefix}:limits",
                                       socket_timeout=0.5, socket_connect_timeout=0.5)
                   if redis_url else storage_from_string("memory://"))
        self.limiter = MovingWindowRateLimiter(storage)

    def check(self, client_id: str) -> None:
        """Count one request of `client_id`; 429 with Retry-After when over the limit."""
        try:
            if self.limiter.hit(self.item, NAMESPACE, client_id):
                return
            reset_at = self.limiter.get_window_stats(self.item, NAMESPACE, client_id).reset_time
        except Exception as exc:  # the storage's own errors vary by backend and version
            unavailable.warning("rate limit storage unavailable, requests let through: %s", exc)
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(429, "rate_limited",
                       f"more than {self.item.amount} requests per {self.item.multiples} "
                       f"{self.item.GRANULARITY.name} for this client; retry later",
                       headers={"Retry-After": str(retry_after)})


def check_client_rate(client_id: str) -> None:
    limit: ClientRateLimit | None = current_app.extensions.get("promo_rate_limit")
    if limit is not None:
        limit.check(client_id)
