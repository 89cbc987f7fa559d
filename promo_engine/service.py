"""The promo service of one process: the compiled engine of the open campaigns, kept
current, and the ledger that records events against it.

Workers poll one revision number (at most once a second) and recompile only when it
changed, so an applied campaign reaches every worker within about a second and the
hot path never touches the campaign tables.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from .campaign import Campaign
from .config import Settings
from .engine import RulesEngine
from .ledger import Ledger
from .registry import Registry

log = logging.getLogger(__name__)

RELOAD_INTERVAL_SECONDS = 1.0


class PromoService:
    def __init__(self, settings: Settings, registry: Registry, *,
                 clock: Callable[[], datetime] | None = None,
                 reload_interval: float = RELOAD_INTERVAL_SECONDS):
        self.settings = settings
        self.registry = registry
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.reload_interval = reload_interval
        self.ledger = Ledger(currency=settings.currency)
        # Called with (campaign id, campaign type, exception) whenever a campaign is skipped
        # because its plugin raised or is not installed.
        self.on_campaign_error: Callable[[str, str, BaseException], None] | None = None
        self.on_engine_loaded: Callable[[RulesEngine], None] | None = None
        self._engine: RulesEngine | None = None
        self._revision: int | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def _report_error(self, campaign: Campaign, exc: BaseException) -> None:
        log.error("campaign %s (type %s) raised %r; skipped for this event", campaign.id,
                  campaign.type, exc, exc_info=exc)
        if self.on_campaign_error is not None:
            self.on_campaign_error(campaign.id, campaign.type, exc)

    def engine(self) -> RulesEngine:
        """The engine for the campaigns open now; needs an app context."""
        if time.monotonic() - self._checked_at < self.reload_interval and self._engine is not None:
            return self._engine
        with self._lock:
            if time.monotonic() - self._checked_at >= self.reload_interval or self._engine is None:
                self._refresh()
        return self._engine

    def invalidate(self) -> None:
        """Check the campaigns again on the next event (after an apply in this process)."""
        self._checked_at = float("-inf")

    def _refresh(self) -> None:
        from . import campaign_store
        from .extensions import db
        revision = campaign_store.campaigns_revision()
        if revision != self._revision or self._engine is None:
            campaigns = campaign_store.load_open_campaigns(
                registry=self.registry, currency=self.settings.currency,
                default_timezone=self.settings.timezone, on_error=self.on_campaign_error)
            db.session.commit()
            self._engine = RulesEngine.compile(
                campaigns, self.registry, currency=self.settings.currency,
                points_per_unit=self.settings.points_per_unit,
                minor_digits=self.settings.minor_digits, on_error=self._report_error)
            self._revision = revision
            if self.on_engine_loaded is not None:
                self.on_engine_loaded(self._engine)
            log.info("loaded %d open campaigns (revision %s)", len(self._engine), revision)
        self._checked_at = time.monotonic()
