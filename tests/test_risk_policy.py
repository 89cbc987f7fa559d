"""The program's risk policy document: read from campaigns/ like a campaign (every problem as
`file:line: message`), applied with the campaigns in one transaction (created, unchanged,
updated, removed with --prune), and in force on a running service within seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from wallet import OPEN_RANGE, new_wallet_client, payment

from conftest import reused_schema_url
from promo_engine.campaigns.files import load_paths
from promo_engine.campaigns.risk_policy import load_risk_policy
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.campaigns.spec import spec_hash
from promo_engine.cli import main
from promo_engine.core.registry import build_registry, get_plugin_manager
from promo_engine.core.risk import RiskPolicy

POLICY = """\
risk_policy:
  per_user_daily:   {rewarded_events: 5, reward_amount: "200.00"}
  per_device_daily: {rewarded_events: 10, reward_amount: "300.00", users: 3}
  per_user_monthly: {cashback: "2000.00"}
  hold: {cashback_above: "100.00"}
"""

CAMPAIGN = f"""\
id: cashback-week
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, cashback: "150.00"}}
"""

FULL = RiskPolicy(
    user_daily_rewarded_events=5, user_daily_reward_amount=Decimal("200.00"),
    device_daily_rewarded_events=10, device_daily_reward_amount=Decimal("300.00"),
    device_daily_users=3, user_monthly_cashback=Decimal("2000.00"),
    hold_cashback_above=Decimal("100.00"))


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


@pytest.fixture
def write(tmp_path):
    def write(name: str, content: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
        return str(path)
    return write


def validate(*paths, currency="CNY"):
    return CliRunner().invoke(main, ["campaigns", "validate", *map(str, paths)], env={
        "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": currency,
        "PROMO_LOAD_ENTRY_POINTS": "0"})


# -- reading ----------------------------------------------------------------------------

def test_the_document_reads_into_every_rule(registry, write):
    path = write("campaigns/risk-policy.yaml", POLICY)
    write("campaigns/cashback.yaml", CAMPAIGN)
    result = load_paths([os.path.dirname(path)], registry=registry, currency="CNY",
                        default_timezone="Asia/Shanghai")
    assert result.problems == []
    assert [c.campaign.id for c in result.campaigns] == ["cashback-week"]
    loaded = result.risk_policy
    assert (loaded.policy, loaded.path, loaded.line) == (FULL, path, 1)
    assert loaded.spec == {"risk_policy": {
        "per_user_daily": {"rewarded_events": 5, "reward_amount": "200.00"},
        "per_device_daily": {"rewarded_events": 10, "reward_amount": "300.00", "users": 3},
        "per_user_monthly": {"cashback": "2000.00"}, "hold": {"cashback_above": "100.00"}}}
    assert loaded.spec_hash == spec_hash(loaded.spec)
    assert load_risk_policy(loaded.spec, currency="CNY") == FULL


def test_every_rule_is_optional(registry):
    assert load_risk_policy({"risk_policy": {}}, currency="CNY") == RiskPolicy()
    assert load_risk_policy({"risk_policy": {"hold": {"cashback_above": "5"}}},
                            currency="CNY") == RiskPolicy(hold_cashback_above=Decimal("5.00"))
    assert load_risk_policy({"risk_policy": {"per_device_daily": {"users": 2}}},
                            currency="JPY") == RiskPolicy(device_daily_users=2)


def test_problems_come_as_field_paths():
    with pytest.raises(CampaignInvalid) as info:
        load_risk_policy({"risk_policy": {"hold": {"cashback_above": 5.5}}, "x": 1},
                         currency="CNY")
    assert info.value.messages == {
        "risk_policy": {"hold": {"cashback_above": [
            'write money as a quoted string, e.g. "30.00"']}},
        "x": ["Unknown field."]}


def test_validate_prints_the_policy_with_the_campaigns(write):
    path = write("campaigns/risk-policy.yaml", POLICY)
    write("campaigns/cashback.yaml", CAMPAIGN)
    result = validate(os.path.dirname(path))
    assert (result.exit_code, result.stdout) == (
        0, "1 campaign and the risk policy in 2 files are valid\n")


def test_every_problem_is_file_line_message(write):
    path = write("risk.yaml", """\
        risk_policy:
          per_user_daly: {rewarded_events: 5}
          per_device_daily:
            rewarded_events: 0
            reward_amount: 300.5
            users: "3"
          per_user_monthly: {cashback: "2000.001"}
          hold:
            cashback_above: "-1"
            review: true
        owner: risk-team
        """)
    result = validate(path)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2: risk_policy.per_user_daly: Unknown field.",
        f"{path}:4: risk_policy.per_device_daily.rewarded_events: must be a whole number "
        "from 1 to 1000000000",
        f'{path}:5: risk_policy.per_device_daily.reward_amount: write money as a quoted '
        'string, e.g. "30.00"',
        f"{path}:6: risk_policy.per_device_daily.users: Not a valid integer.",
        f"{path}:7: risk_policy.per_user_monthly.cashback: at most 2 decimal places for CNY",
        f"{path}:9: risk_policy.hold.cashback_above: must be greater than 0",
        f"{path}:10: risk_policy.hold.review: Unknown field.",
        f"{path}:11: owner: Unknown field."]
    assert result.stderr == "8 problems in 1 file\n"


def test_amounts_have_the_currencys_digits(write):
    path = write("risk.yaml", 'risk_policy:\n  hold: {cashback_above: "100.50"}\n')
    result = validate(path, currency="JPY")
    assert (result.exit_code, result.stdout) == (
        1, f"{path}:2: risk_policy.hold.cashback_above: at most 0 decimal places for JPY\n")


@pytest.mark.parametrize("content, message", [
    ("risk_policy:\n", "1: risk_policy: must not be empty: give a value or remove the key"),
    ("risk_policy: 5\n", "1: risk_policy: must be a mapping of rules (per_user_daily, "
                         "per_device_daily, per_user_monthly, hold)"),
    ("risk_policy:\n  hold: 100\n",
     '2: risk_policy.hold: must be a mapping such as {cashback_above: "100.00"}'),
    ("risk_policy:\n  per_user_daily: {rewarded_events: 1.5}\n",
     "2: risk_policy.per_user_daily.rewarded_events: Not a valid integer."),
    ("risk_policy:\n  per_user_daily: {rewarded_events: true}\n",
     "2: risk_policy.per_user_daily.rewarded_events: must be a whole number"),
])
def test_bad_shapes(write, content, message):
    path = write("risk.yaml", content)
    result = validate(path)
    assert (result.exit_code, result.stdout) == (1, f"{path}:{message}\n")


def test_a_second_policy_anywhere_is_an_error_at_its_line(write):
    first = write("a/risk.yaml", POLICY)
    second = write("b/more.yaml", f"{CAMPAIGN}---\n# the old one\nrisk_policy:\n  hold: "
                                  '{cashback_above: "50.00"}\n')
    result = validate(os.path.dirname(first), os.path.dirname(second))
    assert (result.exit_code, result.stdout) == (
        1, f"{second}:8: a second risk_policy document: the program has one risk policy, "
           f"first defined at {first}:1\n")


# -- applying ---------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def apply(database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key-0123456789",
           "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
           "PROMO_LOAD_ENTRY_POINTS": "0"}

    def apply(*args):
        result = CliRunner().invoke(main, ["campaigns", "apply", *map(str, args)], env=env)
        return result.exit_code, result.stdout, result.stderr
    return apply


def stored(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            policy = conn.execute(text("SELECT id, spec, spec_hash FROM risk_policy")).all()
            revision = conn.execute(text("SELECT campaigns_revision FROM program_state")).scalar()
            campaigns = conn.execute(text("SELECT id FROM campaigns ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    return [(row[0], row[1] if isinstance(row[1], dict) else json.loads(row[1]), row[2])
            for row in policy], revision, campaigns


def test_apply_creates_keeps_updates_and_prunes_the_policy(apply, write, database_url):
    folder = os.path.dirname(write("campaigns/risk-policy.yaml", POLICY))
    write("campaigns/cashback.yaml", CAMPAIGN)

    assert apply("--dry-run", folder) == (0, "created cashback-week\nrisk policy: created\n"
                                             "1 created, 0 updated, 0 unchanged\n"
                                             "dry run: nothing was written\n", "")
    assert apply(folder) == (0, "created cashback-week\nrisk policy: created\n"
                                "1 created, 0 updated, 0 unchanged\n", "")
    [(row_id, spec, digest)], revision, _ = stored(database_url)
    assert (row_id, digest) == (1, spec_hash(spec))
    assert spec["risk_policy"]["hold"] == {"cashback_above": "100.00"}

    assert apply(folder) == (0, "unchanged cashback-week\nrisk policy: unchanged\n"
                                "0 created, 0 updated, 1 unchanged\n", "")
    assert stored(database_url)[1] == revision  # nothing changed: no reload

    write("campaigns/risk-policy.yaml", POLICY.replace('"100.00"', '"80.00"'))
    assert apply("--dry-run", folder)[1] == ("unchanged cashback-week\nrisk policy: updated\n"
                                             "0 created, 0 updated, 1 unchanged\n"
                                             "dry run: nothing was written\n")
    assert stored(database_url)[0][0][1]["risk_policy"]["hold"] == {"cashback_above": "100.00"}
    assert apply(folder)[1] == ("unchanged cashback-week\nrisk policy: updated\n"
                                "0 created, 0 updated, 1 unchanged\n")
    [(_, spec, _)], updated_revision, _ = stored(database_url)
    assert spec["risk_policy"]["hold"] == {"cashback_above": "80.00"}
    assert updated_revision == revision + 1  # every worker reloads

    os.remove(os.path.join(folder, "risk-policy.yaml"))
    # Without --prune a policy not given is left as it is.
    assert apply(folder)[1] == "unchanged cashback-week\n0 created, 0 updated, 1 unchanged\n"
    assert len(stored(database_url)[0]) == 1
    assert apply("--prune", folder)[1] == ("unchanged cashback-week\nrisk policy: removed\n"
                                           "0 created, 0 updated, 1 unchanged, 0 retired\n")
    assert stored(database_url)[0:2] == ([], updated_revision + 1)
    assert apply("--prune", folder)[1] == ("unchanged cashback-week\n"
                                           "0 created, 0 updated, 1 unchanged, 0 retired\n")


def test_nothing_is_applied_with_a_bad_campaign(apply, write, database_url):
    folder = os.path.dirname(write("campaigns/risk-policy.yaml", POLICY))
    write("campaigns/cashback.yaml", CAMPAIGN)
    bad = write("campaigns/typo.yaml", f"id: typo\ntype: holiday_discount\n{OPEN_RANGE}"
                                       "params: {percnt: 5}\n")
    code, out, err = apply(folder)
    assert (code, out) == (1, f"{bad}:5: params.percnt: Unknown field.\n")
    assert err == "1 problem in 1 file\nnothing was applied\n"
    assert stored(database_url) == ([], 0, [])


def test_nothing_is_applied_when_the_database_refuses_a_campaign(apply, write, database_url):
    """A campaign that validates but cannot be stored (its id belongs to a portal campaign):
    the policy is not stored either."""
    from promo_engine.ledger.schema import upgrade
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO campaigns (id, type, name, source, spec, spec_hash, starts_at, "
            "ends_at, created_at, updated_at, status) VALUES ('cashback-week', "
            "'holiday_discount', 'p', 'portal', '{}', 'x', '2026-01-01', '2030-01-01', "
            "'2026-01-01', '2026-01-01', 'open')"))
    engine.dispose()
    folder = os.path.dirname(write("campaigns/risk-policy.yaml", POLICY))
    write("campaigns/cashback.yaml", CAMPAIGN)
    code, out, err = apply(folder)
    assert (code, out) == (1, "")
    assert err == ("promo-engine: campaign cashback-week is managed in the portal, not in "
                   "YAML files; give the YAML campaign another id; nothing was applied\n")
    assert stored(database_url)[0:2] == ([], 0)


# -- in force on a running service ---------------------------------------------------------

def _apply_from_cli(database_url: str, *paths) -> str:
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY="test-secret-key-0123456789",
               PROMO_LOAD_ENTRY_POINTS="0")
    result = subprocess.run([sys.executable, "-m", "promo_engine.cli", "campaigns", "apply",
                             *map(str, paths)], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _cashback(body: dict) -> list:
    return [(r["amount"], r.get("held", False)) for r in body["rewards"]
            if r["campaign_id"] == "cashback-week"]


def test_a_running_service_enforces_an_applied_policy_within_seconds(app, write):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    campaign = write("live/cashback.yaml", CAMPAIGN)
    assert "created cashback-week" in _apply_from_cli(url, campaign)
    wallet = new_wallet_client(app)
    time.sleep(1.2)
    assert _cashback(wallet.event(**payment("p0", "500.00", user_id="early")).get_json()) == [
        ("150.00", False)]

    policy = write("live/risk-policy.yaml", POLICY)
    assert "risk policy: created" in _apply_from_cli(url, campaign, policy)
    applied = time.monotonic()
    held_after, n = None, 1
    while time.monotonic() - applied < 5:
        body = wallet.event(**payment(f"p{n}", "500.00", user_id=f"user-{n}")).get_json()
        if _cashback(body) == [("150.00", True)]:
            held_after = time.monotonic() - applied
            break
        assert _cashback(body) == [("150.00", False)]
        n += 1
        time.sleep(0.1)
    assert held_after is not None, "the applied policy never reached the running service"

    os.remove(policy)
    assert "risk policy: removed" in _apply_from_cli(url, "--prune", campaign)
    time.sleep(1.2)
    body = wallet.event(**payment("p-last", "500.00", user_id="late")).get_json()
    assert _cashback(body) == [("150.00", False)]
