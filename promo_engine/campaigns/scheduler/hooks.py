"""The hooks `promo_campaign_opened` / `promo_campaign_closed`, called after commit.

`HookNotifier` calls them on a thread of its own, in the order the transitions were made,
each plugin's implementation on its own. Apart from the scheduler because it is the only
part that runs plugin code: what a plugin gets (the campaign, rebuilt from its stored
spec) and what happens when one is slow or raises (nothing, for the scheduler) is decided
here. Errors are logged on this module's logger, a child of `promo_engine.campaigns.scheduler`.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from promo_engine.campaigns.lifecycle import OPEN, Transition
from promo_engine.core.campaign import Campaign

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 0.5
OPENED_HOOK = "promo_campaign_opened"
CLOSED_HOOK = "promo_campaign_closed"


@dataclass(frozen=True)
class HookRow:
    """What the hooks need of a campaign's record, read in the transaction that made its
    transition: the hook thread works without a database session."""
    id: str
    type: str
    name: str
    spec: dict
    starts_at: datetime
    ends_at: datetime


class HookNotifier:
    """Calls promo_campaign_opened / promo_campaign_closed after commit, in order, on its
    own thread (a slow plugin must not hold up the next transition). Each implementation
    is called on its own: one that raises is logged and the others are still called."""

    def __init__(self, pm, registry, settings, idle: threading.Event | None = None):
        self.pm = pm
        self.registry = registry
        self.settings = settings
        # Set while the scheduler is not in a transaction: calls wait for it (up to
        # IDLE_WAIT_SECONDS), so that building campaigns for plugins never slows a burst
        # of transitions down (they share the interpreter lock).
        self.idle = idle
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def wanted(self) -> bool:
        if self.pm is None:
            return False
        return bool(getattr(self.pm.hook, OPENED_HOOK).get_hookimpls()
                    or getattr(self.pm.hook, CLOSED_HOOK).get_hookimpls())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="promo-scheduler-hooks",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the calls already queued (for at most `timeout`), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def notify(self, made: list[Transition], rows: Mapping[str, HookRow]) -> None:
        if made and rows:
            if self._thread is None:
                self.deliver(made, rows)
            else:
                self._queue.put((made, rows))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.deliver(*item)

    def deliver(self, made: list[Transition], rows: Mapping[str, HookRow]) -> None:
        for change in made:
            name = OPENED_HOOK if change.to_status == OPEN else CLOSED_HOOK
            row = rows.get(change.campaign_id)
            if row is None:
                continue
            if self.idle is not None and self._thread is not None:
                self.idle.wait(IDLE_WAIT_SECONDS)
            try:
                campaign = self.campaign(row)
                self._call(name, campaign=campaign, at=change.at)
            except Exception:  # never let a plugin stop the scheduler
                log.exception("calling %s for campaign %s failed", name, change.campaign_id)

    def campaign(self, row: HookRow) -> Campaign:
        """The stored campaign; when its spec no longer loads (its type's plugin was
        uninstalled), a Campaign with what the record still tells: id, type, name,
        timezone, starts_at, ends_at and currency, empty params and default rules."""
        from promo_engine.campaigns.schema import load_campaign
        try:
            return load_campaign(row.spec, registry=self.registry,
                                 currency=self.settings.currency,
                                 default_timezone=self.settings.timezone)
        except Exception as exc:
            log.warning("campaign %s: stored spec does not load (%s); its hooks get the "
                        "record's fields only", row.id, exc)
            zone = row.spec.get("timezone") if isinstance(row.spec, dict) else None
            return Campaign(id=row.id, type=row.type, name=row.name,
                            timezone=zone if isinstance(zone, str) else self.settings.timezone,
                            starts_at=row.starts_at, ends_at=row.ends_at,
                            currency=self.settings.currency, params={})

    def _call(self, name: str, **kwargs) -> None:
        """Each plugin's implementation on its own (through pluggy, so PROMO_TRACE_HOOKS
        still traces it), in pluggy's order: one that raises does not silence the others."""
        plugins = [impl.plugin for impl in reversed(getattr(self.pm.hook, name).get_hookimpls())]
        for plugin in plugins:
            only = self.pm.subset_hook_caller(name, [p for p in plugins if p is not plugin])
            try:
                only(**kwargs)
            except Exception:
                log.exception("plugin %s raised in %s for campaign %s; the transition "
                              "stands", self.pm.get_name(plugin), name, kwargs["campaign"].id)
