"""Answers to recorded events, kept in Redis so that a wallet's retries are answered
without touching the database.

The database's unique (client_id, event_id) stays the guarantee: the cache is filled only
after an event committed, and a miss, or Redis being unreachable, simply falls through to
the database. An entry holds the request's hash, so a different body under a used event_id
is still a conflict.
"""
from __future__ import annotations

import logging

import redis

from promo_engine.coordination.throttled_log import ThrottledWarning

log = logging.getLogger(__name__)
unavailable = ThrottledWarning(log)


class ReplayCache:
    def __init__(self, client: redis.Redis, *, prefix: str, ttl_seconds: int):
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def key(self, client_id: str, event_id: str) -> str:
        # The client id's length keeps ("a:b", "c") and ("a", "b:c") apart.
        return f"{self.prefix}:replay:{len(client_id)}:{client_id}:{event_id}"

    def get(self, client_id: str, event_id: str) -> tuple[str, str] | None:
        """(request hash, response body) of a recorded event, or None."""
        try:
            value = self.client.get(self.key(client_id, event_id))
        except redis.RedisError as exc:
            unavailable.warning("replay cache unavailable, asking the database: %s", exc)
            return None
        if value is None:
            return None
        request_hash, _, body = value.decode().partition("\n")
        return request_hash, body

    def put(self, pipeline, client_id: str, event_id: str, request_hash: str, body: str) -> None:
        pipeline.set(self.key(client_id, event_id), f"{request_hash}\n{body}",
                     ex=self.ttl_seconds)
