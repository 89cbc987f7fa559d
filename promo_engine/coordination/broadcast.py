"""Changes pushed to every API worker through Redis pub/sub, one channel per kind of change.

Campaigns: whoever changes them (`campaigns apply`, the scheduler, pause/resume, the portal)
bumps the revision number in the database (`lifecycle.bump_revision`); once that
transaction commits, the new revision is published. API clients: creating or revoking one
publishes once its transaction commits (ledger/api_clients.py). Workers listen on a thread of their
own and reload at once. A message can be lost (a worker reconnecting), so a listener that
(re)connects also reloads everything, and workers still poll, as a safety net.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Mapping

import redis
from sqlalchemy import event

log = logging.getLogger(__name__)

CHANGED = "promo_campaigns_changed"  # session.info flag set by lifecycle.bump_revision
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def campaigns_channel(prefix: str) -> str:
    return f"{prefix}:campaigns"


def clients_channel(prefix: str) -> str:
    return f"{prefix}:clients"


class Publisher:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix

    def publish(self) -> None:
        """The campaigns changed."""
        self._publish(campaigns_channel(self.prefix), "a campaign change")

    def publish_clients_changed(self) -> None:
        """An API client was created or revoked."""
        self._publish(clients_channel(self.prefix), "an API client change")

    def _publish(self, channel: str, what: str) -> None:
        try:
            self.client.publish(channel, "changed")
        except redis.RedisError as exc:
            # Workers still poll: the change arrives, only later.
            log.warning("could not broadcast %s: %s", what, exc)


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
    """Calls a channel's handler for every broadcast on it, and every handler on every
    (re)connection."""

    def __init__(self, redis_url: str, handlers: Mapping[str, Callable[[], None]]):
        # No socket timeout: the connection mostly waits; health checks find a dead one.
        self.client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0,
                                           socket_keepalive=True, health_check_interval=10)
        self.handlers = {channel.encode("utf-8"): handler
                         for channel, handler in handlers.items()}
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
        self._thread = threading.Thread(target=self._run, name="promo-broadcast-listener",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*self.handlers)
                self.connected.set()
                for handler in self.handlers.values():  # anything missed while not listening
                    handler()
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.handlers[message["channel"]]()
            except (redis.RedisError, OSError, ValueError) as exc:
                self.connected.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("broadcasts lost (%s); reconnecting in %.1f s", exc, delay)
                self._stop.wait(delay)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass
        self.connected.clear()

