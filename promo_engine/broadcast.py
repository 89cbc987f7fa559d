"""Campaign changes pushed to every API worker through Redis pub/sub.

Whoever changes campaigns (`campaigns apply`, the scheduler, pause/resume, the portal)
bumps the revision number in the database (`lifecycle.bump_revision`); once that
transaction commits, the new revision is published. Workers listen on a thread of their own
and reload at once. A message can be lost (a worker reconnecting), so a listener that
(re)connects also reloads, and workers still poll the revision, slowly, as a safety net.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import redis
from sqlalchemy import event

log = logging.getLogger(__name__)

CHANGED = "promo_campaigns_changed"  # session.info flag set by lifecycle.bump_revision
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def channel(prefix: str) -> str:
    return f"{prefix}:campaigns"


class Publisher:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.channel = channel(prefix)

    def publish(self) -> None:
        try:
            self.client.publish(self.channel, "changed")
        except redis.RedisError as exc:
            # Workers still poll the revision: the change arrives, only later.
            log.warning("could not broadcast a campaign change: %s", exc)


def publish_after_commit(session_class, publisher_for: Callable[[], Publisher | None]) -> None:
    """Publish once a transaction that bumped the revision has committed (never before:
    a worker reloading early would read the old campaigns)."""
    if getattr(session_class, "_promo_broadcast_installed", False):
        return
    session_class._promo_broadcast_installed = True

    @event.listens_for(session_class, "after_commit")
    def _after_commit(session):
        if session.info.pop(CHANGED, False):
            publisher = publisher_for()
            if publisher is not None:
                publisher.publish()

    @event.listens_for(session_class, "after_rollback")
    def _after_rollback(session):
        session.info.pop(CHANGED, None)


def mark_changed(session) -> None:
    session.info[CHANGED] = True


class Listener:
    """Calls `on_change` for every broadcast, and on every (re)connection."""

    def __init__(self, redis_url: str, prefix: str, on_change: Callable[[], None]):
        # No socket timeout: the connection mostly waits; health checks find a dead one.
        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0,
                                           socket_keepalive=True, health_check_interval=10)
        self.channel = channel(prefix)
        self.on_change = on_change
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._pid = None
        self._thread: threading.Thread | None = None

    def ensure_running(self) -> None:
        """Start the thread in this process (a forked worker does not inherit threads)."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self.connected.clear()
        self._thread = threading.Thread(target=self._run, name="promo-campaign-listener",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.connected.set()
                self.on_change()  # anything missed while not listening
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.on_change()
            except (redis.RedisError, OSError, ValueError) as exc:
                self.connected.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("campaign broadcasts lost (%s); reconnecting in %.1f s", exc, delay)
                self._stop.wait(delay)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass
        self.connected.clear()

