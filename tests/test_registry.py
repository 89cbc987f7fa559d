"""The plugin manager and the registry of campaign and event types it builds."""
from __future__ import annotations

import logging
import sys
import textwrap

import pluggy
import pytest
from marshmallow import RAISE, Schema

from promo_engine import hookimpl
from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.event import Event
from promo_engine.core.registry import (DEFAULT_PLUGINS, ENTRY_POINT_GROUP, PluginError,
                                        build_registry, get_plugin_manager)
from promo_engine.core.rewards import POINTS, points_reward

from factories import DEFAULT_AT, make_campaign, make_engine, make_user, rewards

BUILTIN_TYPES = {"first_activation_bonus", "holiday_discount", "points_multiplier",
                 "points_exchange"}
BUILTIN_EVENT_TYPES = frozenset({"activation", "payment", "refund", "redemption", "cancel"})


class CheckinParams(Schema):
    class Meta:
        unknown = RAISE


class CheckinBonus(CampaignType):
    """A third-party type: 5 points for every `checkin` event."""
    name = "checkin_bonus"
    params_schema = CheckinParams

    def triggers(self, params):
        return frozenset({"checkin"})

    def reward_unit(self, params):
        return "points"

    def compile(self, campaign):
        def evaluate(ctx):
            return points_reward(5, campaign.id)
        return evaluate


class CheckinPlugin:
    """A plugin object as a third party would write it, registered with pm.register."""

    @hookimpl
    def promo_campaign_types(self):
        return [CheckinBonus()]

    @hookimpl
    def promo_event_types(self):
        return ["checkin"]


class Provides:
    """A plugin whose promo_campaign_types returns exactly `types`."""

    def __init__(self, *types):
        self.types = list(types)

    @hookimpl
    def promo_campaign_types(self):
        return self.types


def builtin_manager() -> pluggy.PluginManager:
    return get_plugin_manager(load_entry_points=False)


# --- built-ins ----------------------------------------------------------------------------

def test_builtin_campaign_types_are_registered():
    assert set(build_registry(builtin_manager()).campaign_types) == BUILTIN_TYPES


def test_each_builtin_type_is_registered_under_its_own_name():
    registry = build_registry(builtin_manager())
    assert {name: type(t).name for name, t in registry.campaign_types.items()} == \
        {name: name for name in BUILTIN_TYPES}


def test_builtin_event_types_are_activation_payment_refund_redemption_and_cancel():
    assert build_registry(builtin_manager()).event_types == BUILTIN_EVENT_TYPES


def test_builtin_plugins_are_registered_by_module_name():
    pm = builtin_manager()
    assert [name for name in DEFAULT_PLUGINS if pm.has_plugin(name)] == list(DEFAULT_PLUGINS)


def test_unknown_campaign_type_is_none():
    assert build_registry(builtin_manager()).campaign_type("no_such_type") is None


def test_build_registry_without_a_manager_builds_one(monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "0")
    assert set(build_registry().campaign_types) == BUILTIN_TYPES


def test_each_plugin_manager_is_a_fresh_one():
    first, second = builtin_manager(), builtin_manager()
    first.register(CheckinPlugin(), name="checkin")
    assert "checkin_bonus" in build_registry(first).campaign_types
    assert set(build_registry(second).campaign_types) == BUILTIN_TYPES


def test_hookimpl_is_exported_by_the_package():
    import promo_engine
    from promo_engine.core import hookspecs
    assert promo_engine.hookimpl is hookspecs.hookimpl


# --- plugins registered programmatically ------------------------------------------------------

def test_registered_plugin_adds_a_campaign_type():
    pm = builtin_manager()
    pm.register(CheckinPlugin(), name="checkin")
    registry = build_registry(pm)
    assert set(registry.campaign_types) == BUILTIN_TYPES | {"checkin_bonus"}
    assert isinstance(registry.campaign_type("checkin_bonus"), CheckinBonus)


def test_registered_plugin_adds_an_event_type():
    pm = builtin_manager()
    pm.register(CheckinPlugin(), name="checkin")
    assert build_registry(pm).event_types == BUILTIN_EVENT_TYPES | {"checkin"}


def test_registered_module_plugin_adds_a_type_and_an_event_type(tmp_path, monkeypatch):
    module = tmp_path / "promo_test_module_plugin.py"
    module.write_text(textwrap.dedent("""
        from promo_engine import hookimpl
        from promo_engine.plugins.points_multiplier import PointsMultiplier

        class TripleTuesday(PointsMultiplier):
            name = "triple_tuesday"

        @hookimpl
        def promo_campaign_types():
            return [TripleTuesday()]

        @hookimpl
        def promo_event_types():
            return ["referral"]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "promo_test_module_plugin", raising=False)
    import promo_test_module_plugin
    pm = builtin_manager()
    pm.register(promo_test_module_plugin)
    registry = build_registry(pm)
    assert "triple_tuesday" in registry.campaign_types
    assert "referral" in registry.event_types


def test_plugin_type_is_evaluated_by_the_engine_for_its_event_type():
    pm = builtin_manager()
    pm.register(CheckinPlugin(), name="checkin")
    registry = build_registry(pm)
    engine = make_engine(make_campaign("daily-checkin", "checkin_bonus", {}, registry=registry),
                         registry=registry)
    event = Event(type="checkin", user_id="u_1", occurred_at=DEFAULT_AT)
    assert rewards(engine.evaluate(event, make_user())) == [("daily-checkin", POINTS, 5)]


def test_plugin_returning_none_adds_nothing():
    class Silent:
        @hookimpl
        def promo_campaign_types(self):
            return None

        @hookimpl
        def promo_event_types(self):
            return None

    pm = builtin_manager()
    pm.register(Silent(), name="silent")
    registry = build_registry(pm)
    assert set(registry.campaign_types) == BUILTIN_TYPES
    assert registry.event_types == BUILTIN_EVENT_TYPES


# --- broken plugins ------------------------------------------------------------------------

def test_duplicate_campaign_type_name_raises_plugin_error():
    from promo_engine.plugins.holiday_discount import HolidayDiscount
    pm = builtin_manager()
    pm.register(Provides(HolidayDiscount()), name="copycat")
    with pytest.raises(PluginError, match="^campaign type 'holiday_discount' is registered twice$"):
        build_registry(pm)


def test_plugin_returning_the_same_name_twice_raises_plugin_error():
    pm = builtin_manager()
    pm.register(Provides(CheckinBonus(), CheckinBonus()), name="twice")
    with pytest.raises(PluginError, match="^campaign type 'checkin_bonus' is registered twice$"):
        build_registry(pm)


def test_plugin_returning_something_other_than_a_campaign_type_raises_plugin_error():
    pm = builtin_manager()
    pm.register(Provides("holiday_discount"), name="strings")
    with pytest.raises(PluginError, match="not a named CampaignType instance"):
        build_registry(pm)


def test_plugin_returning_a_campaign_type_class_instead_of_an_instance_raises_plugin_error():
    pm = builtin_manager()
    pm.register(Provides(CheckinBonus), name="class")
    with pytest.raises(PluginError, match="not a named CampaignType instance"):
        build_registry(pm)


def test_plugin_returning_an_unnamed_campaign_type_raises_plugin_error():
    class Unnamed(CheckinBonus):
        name = ""

    pm = builtin_manager()
    pm.register(Provides(Unnamed()), name="unnamed")
    with pytest.raises(PluginError, match="not a named CampaignType instance"):
        build_registry(pm)


def test_misspelled_hook_is_refused_when_checked():
    class Misspelled:
        @hookimpl
        def promo_campaign_type(self):
            return []

    pm = builtin_manager()
    pm.register(Misspelled(), name="misspelled")
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


# --- entry points ----------------------------------------------------------------------------

@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A distribution on sys.path that declares a plugin in the promo_engine.plugins group."""
    (tmp_path / "promo_test_ep_plugin.py").write_text(textwrap.dedent("""
        from promo_engine import hookimpl

        @hookimpl
        def promo_event_types():
            return ["ep_checkin"]
    """))
    dist_info = tmp_path / "promo_test_ep_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: promo-test-ep-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nep_checkin = promo_test_ep_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "promo_test_ep_plugin", raising=False)
    return "ep_checkin"


def test_entry_point_plugins_are_loaded_by_default(installed_plugin, monkeypatch):
    monkeypatch.delenv("PROMO_LOAD_ENTRY_POINTS", raising=False)
    pm = get_plugin_manager()
    assert pm.has_plugin(installed_plugin)
    assert "ep_checkin" in build_registry(pm).event_types


def test_entry_point_plugins_are_loaded_when_the_variable_is_one(installed_plugin, monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "1")
    assert get_plugin_manager().has_plugin(installed_plugin)


def test_promo_load_entry_points_zero_keeps_entry_point_plugins_out(installed_plugin,
                                                                     monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "0")
    pm = get_plugin_manager()
    assert not pm.has_plugin(installed_plugin)
    assert build_registry(pm).event_types == BUILTIN_EVENT_TYPES


def test_promo_load_entry_points_zero_keeps_the_builtins(installed_plugin, monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "0")
    assert set(build_registry(get_plugin_manager()).campaign_types) == BUILTIN_TYPES


def test_explicit_argument_overrides_the_environment(installed_plugin, monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "1")
    assert not get_plugin_manager(load_entry_points=False).has_plugin(installed_plugin)
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "0")
    assert get_plugin_manager(load_entry_points=True).has_plugin(installed_plugin)


def test_entry_point_plugin_with_a_misspelled_hook_fails_at_start(tmp_path, monkeypatch):
    (tmp_path / "promo_test_bad_plugin.py").write_text(textwrap.dedent("""
        from promo_engine import hookimpl

        @hookimpl
        def promo_event_type():
            return ["oops"]
    """))
    dist_info = tmp_path / "promo_test_bad_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: promo-test-bad-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbad = promo_test_bad_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "promo_test_bad_plugin", raising=False)
    with pytest.raises(pluggy.PluginValidationError):
        get_plugin_manager(load_entry_points=True)


# --- tracing ---------------------------------------------------------------------------------

def test_promo_trace_hooks_logs_every_hook_call(monkeypatch, caplog):
    monkeypatch.setenv("PROMO_TRACE_HOOKS", "1")
    pm = get_plugin_manager(load_entry_points=False)
    with caplog.at_level(logging.DEBUG, logger="promo_engine.registry"):  # docs/plugins.md
        build_registry(pm)
    traced = " ".join(record.getMessage() for record in caplog.records)
    assert "promo_campaign_types" in traced
    assert "promo_event_types" in traced


def test_hook_calls_are_not_logged_without_promo_trace_hooks(monkeypatch, caplog):
    monkeypatch.delenv("PROMO_TRACE_HOOKS", raising=False)
    pm = get_plugin_manager(load_entry_points=False)
    with caplog.at_level(logging.DEBUG, logger="promo_engine.registry"):  # docs/plugins.md
        build_registry(pm)
    assert caplog.records == []

