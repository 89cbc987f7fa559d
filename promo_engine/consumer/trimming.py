"""Retention of the streams a consumer reads and writes (`PROMO_RETENTION_DAYS`).

A stream keeps its messages until trimmed, and they are events as the wallet sent them:
user ids, device ids, attributes. With a retention period the consumer trims, about once
an hour, its dead-letter and results streams of what is older than the period, and the
event stream of what is older and settled by every consumer group reading it (a message
not yet read, or still pending, is kept whatever its age, so nothing is lost unread).
Trimming goes by message id, which is the time the message was added.
"""
from __future__ import annotations

import logging

import redis

from promo_engine.consumer.options import ConsumerOptions

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 3600.0
DAY_MS = 86_400_000


def _id(value) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def settled_floor(client: redis.Redis, stream: str) -> tuple[int, int] | None:
    """The lowest message id some group of `stream` still needs (pending, or not yet read):
    every message below it was read and acknowledged by every group. None: no group."""
    floor = None
    for group in client.xinfo_groups(stream):
        needed = _id(group["last-delivered-id"])
        needed = (needed[0], needed[1] + 1)  # the first message not delivered yet
        if group["pending"]:
            needed = min(needed, _id(client.xpending(stream, group["name"])["min"]))
        floor = needed if floor is None else min(floor, needed)
    return floor


def trim_streams(client: redis.Redis, options: ConsumerOptions, *, retention_days: int,
                 now_ms: int) -> dict[str, int]:
    """Trim what the retention period no longer allows keeping; returns the messages
    removed, by stream."""
    cutoff = (now_ms - retention_days * DAY_MS, 0)
    trimmed = {}
    for name in (options.dead_letters, options.results_stream):
        if name:
            trimmed[name] = client.xtrim(name, minid=f"{cutoff[0]}-0", approximate=False)
    if client.exists(options.stream):
        floor = settled_floor(client, options.stream)
        below = cutoff if floor is None else min(cutoff, floor)
        trimmed[options.stream] = client.xtrim(options.stream, minid=f"{below[0]}-{below[1]}",
                                               approximate=False)
    return trimmed
