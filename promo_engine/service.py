"""The promo service of one process: the compiled engine of the open campaigns, kept
current, and the ledger that records events against it.

Workers recompile only when the campaigns' revision number changed, and the hot path never
touches the campaign tables. Without Redis they poll that number at most once a second;
with Redis a change is broadcast (broadcast.py) and the poll is only a safety net.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from promo_engine.config import Settings
from promo_engine.core.campaign import Campaign
from promo_engine.core.engine import RulesEngine
from promo_engine.core.registry import Registry
from promo_engine.ledger.lots import LotPolicy
from promo_engine.ledger.recorder import Ledger

log = logging.getLogger(__name__)

RELOAD_INTERVAL_SECONDS = 1.0
BROADCAST_RELOAD_INTERVAL_SECONDS = 30.0  # polling while broadcasts arrive: a safety net


class PromoService:
    def __init__(self, settings: Settings, registry: Registry, *,
                 clock: Callable[[], datetime] | None = None,
                 reload_interval: float = RELOAD_INTERVAL_SECONDS,
                 broadcast_reload_interval: float = BROADCAST_RELOAD_INTERVAL_SECONDS):
        self.settings = settings
        self.registry = registry
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.reload_interval = reload_interval
        self.broadcast_reload_interval = broadcast_reload_interval
        self.redis = None
        self.reservations = None
        self.publisher = None
        self.listener = None
        replays = None
        if settings.redis_url:
            from promo_engine.coordination.broadcast import (Listener,
                                                             Publisher,
                                                             campaigns_channel,
                                                             clients_channel)
            from promo_engine.coordination.replay_cache import ReplayCache
            from promo_engine.coordination.reservations import (Reservations,
                                                                connect)
            from promo_engine.ledger.counter_epochs import judge_epoch
            self.redis = connect(settings.redis_url)
            self.reservations = Reservations(
                self.redis, prefix=settings.redis_prefix, ttl_ms=settings.reservation_ttl_ms,
                grace_ms=settings.reservation_grace_ms, program_id=_read_program_id,
                epoch_judge=judge_epoch)
            replays = ReplayCache(self.redis, prefix=settings.redis_prefix,
                                  ttl_seconds=settings.replay_ttl_seconds)
            self.publisher = Publisher(self.redis, settings.redis_prefix)
            self.listener = Listener(settings.redis_url, {
                campaigns_channel(settings.redis_prefix): self.invalidate,
                clients_channel(settings.redis_prefix): lambda: self.on_clients_changed()})
        self.ledger = Ledger(currency=settings.currency, reservations=self.reservations,
                             replays=replays, policy=LotPolicy.from_settings(settings),
                             clock=lambda: self.clock(), zone=ZoneInfo(settings.timezone))
        # Called with (campaign id, campaign type, exception) whenever a campaign is skipped
        # because its plugin raised or is not installed.
        self.on_campaign_error: Callable[[str, str, BaseException], None] | None = None
        self.on_engine_loaded: Callable[[RulesEngine], None] | None = None
        # Called when another process created or revoked an API client (ledger/api_clients.py).
        self.on_clients_changed: Callable[[], None] = lambda: None
        self.request_schemas: dict = {}  # request schemas of the API and consumer (api/recording.py)
        self._engine: RulesEngine | None = None
        self._revision: int | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop listening for broadcasts and close Redis connections (tests, shutdown)."""
        if self.listener is not None:
            self.listener.stop()
        if self.redis is not None:
            self.redis.close()

    def _report_error(self, campaign: Campaign, exc: BaseException) -> None:
        log.error("campaign %s (type %s) raised %r; skipped for this event", campaign.id,
                  campaign.type, exc, exc_info=exc)
        if self.on_campaign_error is not None:
            self.on_campaign_error(campaign.id, campaign.type, exc)

    def _interval(self) -> float:
        if self.listener is None:
            return self.reload_interval
        self.listener.ensure_running()
        return (self.broadcast_reload_interval if self.listener.connected.is_set()
                else self.reload_interval)

    def engine(self) -> RulesEngine:
        """The engine for the campaigns open now; needs an app context."""
        interval = self._interval()
        if time.monotonic() - self._checked_at < interval and self._engine is not None:
            return self._engine
        with self._lock:
            if time.monotonic() - self._checked_at >= interval or self._engine is None:
                self._refresh()
        return self._engine

    def counters_not_ready(self):
        """Why events that reserve budget would be refused now (a NotReady), or None; with
        Redis only. Does what the first such event would: begins a new prefix's epoch and
        builds missing counters, so that a deployment is ready as soon as it can be."""
        from promo_engine.coordination.reservations import NotReady
        if self.reservations is None:
            return None
        campaign_ids = list(self.engine().campaigns)
        if not campaign_ids:  # events reserve nothing, and so are never refused
            return None
        self.reservations.load_program_id()
        state = self.reservations.readiness(campaign_ids)
        if state.new_epoch:
            self.reservations.begin_epoch()
            state = self.reservations.readiness(campaign_ids)
        if state.missing and state.problem is None:
            try:
                self.ledger.build_counters(state.missing)
            except NotReady as exc:
                return exc
            state = self.reservations.readiness(campaign_ids)
            if state.missing:  # another worker was building them
                return NotReady(1000, "counters_building")
        return state.problem

    def invalidate(self) -> None:
        """Check the campaigns again on the next event (after an apply in this process)."""
        self._checked_at = float("-inf")

    def _refresh(self) -> None:
        from promo_engine.campaigns import store as campaign_store
        from promo_engine.ledger.extensions import db
        revision = campaign_store.campaigns_revision()
        if revision != self._revision or self._engine is None:
            campaigns = campaign_store.load_open_campaigns(
                registry=self.registry, currency=self.settings.currency,
                default_timezone=self.settings.timezone, on_error=self.on_campaign_error)
            # Applied with the campaigns under the same revision: reloaded with them.
            risk_policy = campaign_store.stored_risk_policy(currency=self.settings.currency)
            db.session.commit()
            self._engine = RulesEngine.compile(
                campaigns, self.registry, currency=self.settings.currency,
                points_per_unit=self.settings.points_per_unit,
                point_value=self.settings.point_value,
                minor_digits=self.settings.minor_digits, on_error=self._report_error,
                risk_policy=risk_policy)
            self._revision = revision
            if self.on_engine_loaded is not None:
                self.on_engine_loaded(self._engine)
            log.info("loaded %d open campaigns (revision %s)", len(self._engine), revision)
        self._checked_at = time.monotonic()


def promo_service(app=None) -> PromoService:
    """The promo service of `app` (the current app by default)."""
    from flask import current_app
    return (app or current_app).extensions["promo"]


def _read_program_id() -> str:
    """The program database's id, in a transaction of its own (it may have to be made):
    read before the first event's transaction begins (`Ledger.record`)."""
    from promo_engine.ledger.database import run_in_transaction
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.program_state import program_id
    return run_in_transaction(db.session, lambda: program_id(db.session))
