"""Where the scheduler's leader lease lives in Redis and how long it lasts.

The `PROMO_SCHEDULER_LEASE_*` settings and the `RedisLease` built from them. Apart from the
scheduler itself because they are read by the command line (to fail on a bad setting
before anything starts) and by the benchmark, neither of which needs a running scheduler.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from promo_engine.config import (DEFAULT_REDIS_PREFIX, REDIS_PREFIX_ENV, ConfigError,
                                 redis_prefix_from_env)

DEFAULT_LEASE_MS = 5000
LEASE_KEY_SUFFIX = ":scheduler:leader"  # after PROMO_REDIS_PREFIX: one leader per program
LEASE_MS_ENV = "PROMO_SCHEDULER_LEASE_MS"
LEASE_KEY_ENV = "PROMO_SCHEDULER_LEASE_KEY"
MIN_LEASE_MS, MAX_LEASE_MS = 1000, 300_000


@dataclass(frozen=True)
class LeaseSettings:
    """Where the leader lease lives in Redis and how long it lasts (`PROMO_SCHEDULER_*`)."""
    ttl_ms: int = DEFAULT_LEASE_MS
    key: str = DEFAULT_REDIS_PREFIX + LEASE_KEY_SUFFIX

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LeaseSettings":
        env = os.environ if environ is None else environ
        raw_ttl = env.get(LEASE_MS_ENV) or str(DEFAULT_LEASE_MS)
        try:
            ttl_ms = int(raw_ttl)
        except ValueError:
            ttl_ms = None
        if ttl_ms is None or not MIN_LEASE_MS <= ttl_ms <= MAX_LEASE_MS:
            raise ConfigError(f"{LEASE_MS_ENV}: {raw_ttl!r} must be a whole number of "
                              f"milliseconds from {MIN_LEASE_MS} to {MAX_LEASE_MS}")
        # Under the program's prefix, so that programs sharing a Redis database each have
        # a leader of their own.
        key = env.get(LEASE_KEY_ENV) or (
            redis_prefix_from_env(env.get(REDIS_PREFIX_ENV, DEFAULT_REDIS_PREFIX)) + LEASE_KEY_SUFFIX)
        if len(key) > 200 or any(c.isspace() for c in key):
            raise ConfigError(f"{LEASE_KEY_ENV}: {key!r} must be a Redis key of at most 200 "
                              "characters without spaces")
        return cls(ttl_ms=ttl_ms, key=key)


def redis_lease(redis_url: str, lease_settings: LeaseSettings, owner: str | None = None):
    """A `RedisLease` on `redis_url`, with socket timeouts well inside a renewal period."""
    # Imported here: a scheduler without Redis (the embedded one of `serve`) never needs
    # the client library.
    import redis

    from promo_engine.coordination.leader import RedisLease
    timeout = min(1.0, lease_settings.ttl_ms / 1000 / 6)
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    return RedisLease(client, lease_settings.key, lease_settings.ttl_ms, owner)
