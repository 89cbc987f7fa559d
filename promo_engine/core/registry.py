"""Builds the plugin manager and the registry of campaign and event types it provides.

Each call makes a fresh manager (no global), so every app and every test has its own.
"""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Mapping

import pluggy

from promo_engine.core import hookspecs
from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.event import BUILTIN_EVENT_TYPES

ENTRY_POINT_GROUP = "promo_engine.plugins"

DEFAULT_PLUGINS = (
    "promo_engine.plugins.first_activation_bonus",
    "promo_engine.plugins.holiday_discount",
    "promo_engine.plugins.points_multiplier",
    "promo_engine.plugins.points_exchange",
)

log = logging.getLogger("promo_engine.registry")  # the name docs/plugins.md gives plugin authors


class PluginError(Exception):
    """A plugin that cannot be used: duplicate type name, bad return value."""


def get_plugin_manager(load_entry_points: bool | None = None) -> pluggy.PluginManager:
    """Specs, the built-in plugins, then third-party ones from the entry-point group.

    PROMO_LOAD_ENTRY_POINTS=0 keeps third-party plugins out (tests, debugging);
    PROMO_TRACE_HOOKS=1 logs every hook call.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entry_points is None:
        load_entry_points = os.environ.get("PROMO_LOAD_ENTRY_POINTS", "1") != "0"
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    if os.environ.get("PROMO_TRACE_HOOKS") == "1":
        pm.trace.root.setwriter(log.debug)
        pm.enable_tracing()
    return pm


@dataclass(frozen=True)
class Registry:
    campaign_types: Mapping[str, CampaignType]
    event_types: frozenset[str]

    def campaign_type(self, name: str) -> CampaignType | None:
        return self.campaign_types.get(name)


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    pm = pm or get_plugin_manager()
    types: dict[str, CampaignType] = {}
    for provided in pm.hook.promo_campaign_types():
        for campaign_type in provided or ():
            if not isinstance(campaign_type, CampaignType) or not campaign_type.name:
                raise PluginError(f"promo_campaign_types returned {campaign_type!r}, "
                                  "not a named CampaignType instance")
            if campaign_type.name in types:
                raise PluginError(f"campaign type {campaign_type.name!r} is registered twice")
            types[campaign_type.name] = campaign_type
    event_types = set(BUILTIN_EVENT_TYPES)
    for provided in pm.hook.promo_event_types():
        event_types.update(provided or ())
    return Registry(campaign_types=types, event_types=frozenset(event_types))
