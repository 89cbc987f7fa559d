"""Third-party plugins: a real distribution found through its entry point, end to end.

tests/plugin_package is the `promo-tiered-cashback` distribution that docs/plugins.md shows
as its complete example. It is built and installed for real (pip, setuptools) into a folder
that is put on sys.path only while this module runs, so `importlib.metadata` finds its
`promo_engine.plugins` entry point exactly as it would in a site-packages.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from marshmallow import RAISE, Schema, validate

from promo_engine import hookimpl
from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.params import StrictInteger
from promo_engine.core.registry import ENTRY_POINT_GROUP, build_registry, get_plugin_manager
from promo_engine.core.rewards import points_reward

from conftest import running_app
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, without_ids

PACKAGE_DIR = Path(__file__).parent / "plugin_package"
EXAMPLE_CAMPAIGNS = PACKAGE_DIR / "examples" / "tiered-cashback.yaml"
DISTRIBUTION = "promo-tiered-cashback"
MODULE = "promo_tiered_cashback"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """A folder holding promo-tiered-cashback as pip installs it: module and dist-info."""
    work = tmp_path_factory.mktemp("plugin")
    # setuptools builds in the source tree; a copy keeps build/ and *.egg-info out of tests/.
    source = work / "source"
    shutil.copytree(PACKAGE_DIR, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--target", str(site)]
    offline = subprocess.run([*pip_install, "--no-build-isolation", "--no-index", str(source)],
                             capture_output=True, text=True)
    if offline.returncode != 0:
        # The environment's setuptools cannot build a wheel by itself (before 70.1 it needs
        # the `wheel` package): let pip fetch the build requirements instead.
        shutil.rmtree(site, ignore_errors=True)
        isolated = subprocess.run([*pip_install, str(source)], capture_output=True, text=True)
        if isolated.returncode != 0:
            pytest.fail("could not install tests/plugin_package:\n"
                        f"{offline.stderr}\n{isolated.stderr}")
    return site


@pytest.fixture(scope="module")
def installed_plugin(plugin_site):
    """The plugin's folder on sys.path for this module's tests, and off it afterwards."""
    sys.path.insert(0, str(plugin_site))
    importlib.invalidate_caches()
    yield plugin_site
    sys.path.remove(str(plugin_site))
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()


@pytest.fixture
def app(settings, installed_plugin):
    """The API with the installed plugins (entry points loaded)."""
    with running_app(settings, build_registry(get_plugin_manager(load_entry_points=True))) as app:
        yield app


def promo_engine_cli(*args: str, cwd: Path, site: Path, **env: str):
    """`promo-engine ARGS` in a fresh process that sees the plugin's folder on PYTHONPATH."""
    environ = {key: value for key, value in os.environ.items()
               if key not in ("PROMO_LOAD_ENTRY_POINTS", "PROMO_TRACE_HOOKS")}
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(site)] + ([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else []))
    environ.update(env)
    executable = Path(sys.executable).with_name("promo-engine")
    return subprocess.run([str(executable), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120)


# --- discovery ------------------------------------------------------------------------------

def test_the_distribution_declares_the_entry_point(installed_plugin):
    from importlib.metadata import distribution, entry_points
    assert distribution(DISTRIBUTION).version == "1.0.0"
    (entry_point,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP)
                      if ep.dist.name == DISTRIBUTION]
    assert (entry_point.name, entry_point.value) == ("tiered_cashback", MODULE)


def test_plugin_manager_registers_the_installed_plugin(installed_plugin, monkeypatch):
    monkeypatch.delenv("PROMO_LOAD_ENTRY_POINTS", raising=False)
    pm = get_plugin_manager()
    plugin = pm.get_plugin("tiered_cashback")
    assert plugin is not None and plugin.__name__ == MODULE
    assert (plugin, DISTRIBUTION) in [(p, dist.project_name)
                                      for p, dist in pm.list_plugin_distinfo()]
    registry = build_registry(pm)
    assert {"first_activation_bonus", "holiday_discount", "points_multiplier",
            "points_exchange", "tiered_cashback"} <= set(registry.campaign_types)
    assert type(registry.campaign_type("tiered_cashback")).__module__ == MODULE


def test_load_entry_points_0_keeps_installed_plugins_out(installed_plugin, monkeypatch):
    monkeypatch.setenv("PROMO_LOAD_ENTRY_POINTS", "0")
    pm = get_plugin_manager()
    assert pm.get_plugin("tiered_cashback") is None
    assert pm.list_plugin_distinfo() == []
    assert set(build_registry(pm).campaign_types) == {"first_activation_bonus",
                                                      "holiday_discount", "points_multiplier",
                                                      "points_exchange"}


def test_hook_promo_campaign_types(installed_plugin):
    pm = get_plugin_manager(load_entry_points=True)
    provided = pm.get_plugin("tiered_cashback").promo_campaign_types()
    assert [campaign_type.name for campaign_type in provided] == ["tiered_cashback"]
    assert isinstance(provided[0], CampaignType)
    # One list per implementation; the registry combines them by name.
    names = sorted(t.name for result in pm.hook.promo_campaign_types() for t in result)
    assert names == sorted(build_registry(pm).campaign_types)


# --- from YAML to reward --------------------------------------------------------------------

def test_campaigns_validate_accepts_the_example_campaign(installed_plugin, tmp_path):
    result = promo_engine_cli("campaigns", "validate", str(EXAMPLE_CAMPAIGNS),
                              cwd=tmp_path, site=installed_plugin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "1 campaign in 1 file is valid\n"


def test_campaigns_validate_reports_a_bad_tier_at_its_line(installed_plugin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_CAMPAIGNS.read_text().replace(
        '{min_amount: "300.00", cashback: "20.00"}', '{min_amount: "300.00", cashback: 20.5}'))
    line = bad.read_text().splitlines().index(
        '    - {min_amount: "300.00", cashback: 20.5}') + 1
    result = promo_engine_cli("campaigns", "validate", str(bad), cwd=tmp_path,
                              site=installed_plugin)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f'{bad}:{line}: params.tiers[1].cashback: write money as a quoted string, e.g. "30.00"']


def test_campaigns_validate_reports_tiers_out_of_order(installed_plugin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"""id: backwards
type: tiered_cashback
{OPEN_RANGE}params:
  tiers:
    - {{min_amount: "300.00", cashback: "20.00"}}
    - {{min_amount: "100.00", cashback: "5.00"}}
""")
    result = promo_engine_cli("campaigns", "validate", str(bad), cwd=tmp_path,
                              site=installed_plugin)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{bad}:6: params.tiers: list the tiers by min_amount, lowest first"]


def test_without_the_plugin_the_type_is_unknown(installed_plugin, tmp_path):
    result = promo_engine_cli("campaigns", "validate", str(EXAMPLE_CAMPAIGNS), cwd=tmp_path,
                              site=installed_plugin, PROMO_LOAD_ENTRY_POINTS="0")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{EXAMPLE_CAMPAIGNS}:4: type: unknown campaign type 'tiered_cashback'; installed "
        "types: first_activation_bonus, holiday_discount, points_exchange, points_multiplier"]


@pytest.fixture
def wallet(app, settings, installed_plugin, tmp_path):
    """The example campaign applied with `promo-engine campaigns apply`, and a signed client."""
    result = promo_engine_cli("campaigns", "apply", str(EXAMPLE_CAMPAIGNS), cwd=tmp_path,
                              site=installed_plugin, DATABASE_URL=settings.database_url,
                              SECRET_KEY=settings.secret_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["created spend-more-get-more",
                                          "1 created, 0 updated, 0 unchanged"]
    return new_wallet_client(app)


@pytest.mark.parametrize("amount, cashback", [
    ("100.00", "5.00"),
    ("299.99", "5.00"),
    ("300.00", "20.00"),
    ("999.99", "20.00"),
    ("1000.00", "88.00"),
    ("25000.00", "88.00"),
])
def test_payment_earns_the_cashback_of_the_highest_tier_reached(wallet, amount, cashback):
    response = wallet.event(**payment("evt_1", amount))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    points = int(amount.split(".")[0])
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": points},
        {"campaign_id": "spend-more-get-more", "kind": "cashback", "amount": cashback,
         "currency": "CNY"},
    ]
    assert body["points_balance"] == points


def test_payment_below_the_lowest_tier_earns_no_cashback(wallet):
    body = wallet.event(**payment("evt_1", "99.99")).get_json()
    assert without_ids(body["rewards"]) == [{"campaign_id": None, "kind": "points", "points": 99}]


def test_merchant_outside_the_campaign_earns_no_cashback(wallet):
    body = wallet.event(**payment("evt_1", "500.00", merchant_id="m_999")).get_json()
    assert without_ids(body["rewards"]) == [{"campaign_id": None, "kind": "points", "points": 500}]


def test_quote_shows_the_cashback_without_granting_it(wallet):
    quoted = wallet.post("/v1/quote", payment("q_1", "300.00"))
    assert quoted.status_code == 200
    assert without_ids(quoted.get_json()["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 300},
        {"campaign_id": "spend-more-get-more", "kind": "cashback", "amount": "20.00",
         "currency": "CNY"},
    ]
    assert quoted.get_json()["dry_run"] is True
    points = wallet.get("/v1/users/u_1/points").get_json()
    assert (points["points_balance"], points["entries"]) == (0, [])


# --- a plugin that adds an event type -------------------------------------------------------

class CheckinParams(Schema):
    class Meta:
        unknown = RAISE

    points = StrictInteger(required=True, validate=validate.Range(min=1))


class CheckinPoints(CampaignType):
    name = "checkin_points"
    params_schema = CheckinParams

    def triggers(self, params):
        return frozenset({"loyalty_checkin"})

    def reward_unit(self, params):
        return "points"

    def compile(self, campaign):
        reward = points_reward(campaign.params["points"], campaign.id)
        return lambda ctx: reward


class LoyaltyCheckinPlugin:
    @hookimpl
    def promo_event_types(self):
        return ["loyalty_checkin"]

    @hookimpl
    def promo_campaign_types(self):
        return [CheckinPoints()]


CHECKIN_CAMPAIGN = f"""
id: daily-checkin
type: checkin_points
{OPEN_RANGE}limits: {{per_user_daily: 1}}
params: {{points: 10}}
"""


def checkin(event_id: str, at: str = "2026-06-15T08:00:00+08:00") -> dict:
    return {"event_id": event_id, "type": "loyalty_checkin", "user_id": "u_1",
            "occurred_at": at}


def test_hook_promo_event_types(settings, tmp_path):
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(LoyaltyCheckinPlugin(), name="loyalty-checkin")
    registry = build_registry(pm)
    assert registry.event_types == {"activation", "payment", "refund", "redemption", "cancel",
                                    "loyalty_checkin"}
    with running_app(settings, registry) as app:
        install_campaigns(app, CHECKIN_CAMPAIGN, tmp_path)
        wallet = new_wallet_client(app)
        first = wallet.event(**checkin("chk_1"))
        assert first.status_code == 201, first.get_json()
        assert without_ids(first.get_json()["rewards"]) == [
            {"campaign_id": "daily-checkin", "kind": "points", "points": 10}]
        assert first.get_json()["points_balance"] == 10
        # The campaign's limits hold for plugin events like any other.
        again = wallet.event(**checkin("chk_2", at="2026-06-15T20:00:00+08:00")).get_json()
        assert (again["rewards"], again["points_balance"]) == ([], 10)
        next_day = wallet.event(**checkin("chk_3", at="2026-06-16T08:00:00+08:00")).get_json()
        assert next_day["points_balance"] == 20


def test_an_event_type_no_plugin_registers_is_refused(settings):
    with running_app(settings, build_registry(get_plugin_manager(load_entry_points=False))) as app:
        response = new_wallet_client(app).event(**checkin("chk_1"))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]["type"] == [
        "must be one of: activation, cancel, payment, redemption, refund"]
