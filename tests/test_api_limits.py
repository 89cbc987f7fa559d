"""Limits and budgets through the API: whole rewards only, skipped when they do not fit."""
from __future__ import annotations

import pytest

from wallet import OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment, without_ids


def campaign_ids(response) -> list:
    return [r["campaign_id"] for r in response.get_json()["rewards"]]



@pytest.fixture
def settings(counters_settings):
    """Every rule here holds with counters in the database and with counters in Redis."""
    return counters_settings

@pytest.fixture
def install(app, tmp_path):
    def _install(yaml_text):
        install_campaigns(app, yaml_text, tmp_path)
        return new_wallet_client(app)
    return _install


def test_budget_skips_a_reward_that_does_not_fit_whole(install):
    wallet = install(f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "25.00"}}
params: {{amount_off: "10.00"}}
""")
    assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None, "tenner"]
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]
    third = wallet.event(**payment("p3", "50.00", user_id="c"))
    assert campaign_ids(third) == [None]  # 5.00 left: skipped, not cut down
    small = wallet.event(**payment("p4", "4.00", user_id="d")).get_json()
    assert without_ids(small["rewards"])[1] == {  # amount_off capped at the payment fits
        "campaign_id": "tenner", "kind": "discount", "amount": "4.00", "currency": "CNY"}


def test_points_budget(install):
    wallet = install(f"""
id: double
type: points_multiplier
{OPEN_RANGE}budget: {{points: 150}}
params: {{multiplier: 2}}
""")
    assert campaign_ids(wallet.event(**payment("p1", "100.00"))) == [None, "double"]
    assert campaign_ids(wallet.event(**payment("p2", "100.00"))) == [None]
    assert campaign_ids(wallet.event(**payment("p3", "50.00"))) == [None, "double"]


def test_per_user_limit(install):
    wallet = install(f"""
id: twice
type: holiday_discount
{OPEN_RANGE}limits: {{per_user: 2}}
params: {{amount_off: "1.00"}}
""")
    results = [campaign_ids(wallet.event(**payment(f"p{n}", "10.00"))) for n in range(3)]
    assert results == [[None, "twice"], [None, "twice"], [None]]
    assert campaign_ids(wallet.event(**payment("other", "10.00", user_id="u_2"))) == [None, "twice"]


def test_per_user_daily_limit_follows_the_campaign_timezone(install):
    wallet = install(f"""
id: daily
type: holiday_discount
timezone: Asia/Shanghai
{OPEN_RANGE}limits: {{per_user_daily: 1}}
params: {{amount_off: "1.00"}}
""")
    # 23:30 and 23:59 Shanghai time are the same local day; 00:10 is the next.
    assert campaign_ids(wallet.event(**payment("p1", "10.00", at="2026-06-15T23:30:00+08:00"))) == [None, "daily"]
    assert campaign_ids(wallet.event(**payment("p2", "10.00", at="2026-06-15T15:59:00Z"))) == [None]
    assert campaign_ids(wallet.event(**payment("p3", "10.00", at="2026-06-15T16:10:00Z"))) == [None, "daily"]


def test_max_redemptions(install):
    wallet = install(f"""
id: first-three
type: holiday_discount
{OPEN_RANGE}limits: {{max_redemptions: 3}}
params: {{amount_off: "1.00"}}
""")
    results = [campaign_ids(wallet.event(**payment(f"p{n}", "10.00", user_id=f"u{n}"))) for n in range(4)]
    assert results == [[None, "first-three"]] * 3 + [[None]]


def test_exclusive_campaign_blocks_lower_priority(install):
    wallet = install(f"""
id: vip
type: holiday_discount
{OPEN_RANGE}priority: 10
exclusive: true
conditions: {{attributes: {{segment: [vip]}}}}
params: {{percent: 20}}
---
id: everyone
type: holiday_discount
{OPEN_RANGE}params: {{percent: 5}}
""")
    vip = wallet.event(**payment("p1", "100.00", attributes={"segment": "vip"}))
    assert without_ids(vip.get_json()["rewards"])[1:] == [
        {"campaign_id": "vip", "kind": "discount", "amount": "20.00", "currency": "CNY"}]
    other = wallet.event(**payment("p2", "100.00", attributes={"segment": "student"}))
    assert campaign_ids(other) == [None, "everyone"]


def test_highest_multiplier_wins_without_compounding(install):
    wallet = install(f"""
id: double
type: points_multiplier
{OPEN_RANGE}priority: 50
params: {{multiplier: 2}}
---
id: triple
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 3}}
""")
    body = wallet.event(**payment("p1", "100.00")).get_json()
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 100},
        {"campaign_id": "triple", "kind": "points", "points": 200}]


def test_cashback_and_voucher_bonuses(install):
    wallet = install(f"""
id: cash-on-first-pay
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, cashback: "8.88"}}
---
id: voucher-on-activation
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "10.00", valid_days: 30}}}}
""")
    act = wallet.event(**activation("a1", at="2026-06-15T09:00:00+08:00")).get_json()
    voucher = act["rewards"][0]["voucher"]
    assert without_ids(act["rewards"]) == [{"campaign_id": "voucher-on-activation", "kind": "voucher",
                                            "voucher": {"amount": "10.00", "currency": "CNY",
                                                        "expires_at": "2026-07-15T01:00:00Z"}}]
    assert len(voucher["code"]) == 12
    first = wallet.event(**payment("p1", "20.00")).get_json()
    assert without_ids(first["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 20},
        {"campaign_id": "cash-on-first-pay", "kind": "cashback", "amount": "8.88", "currency": "CNY"}]
    second = wallet.event(**payment("p2", "20.00")).get_json()
    assert campaign_ids_of(second) == [None]


def campaign_ids_of(body):
    return [r["campaign_id"] for r in body["rewards"]]


def test_campaign_outside_its_window_gives_nothing(install):
    wallet = install(f"""
id: lunch
type: holiday_discount
timezone: Asia/Shanghai
{OPEN_RANGE}windows: [{{days: [mon], from: "11:00", to: "14:00"}}]
params: {{amount_off: "1.00"}}
""")
    assert campaign_ids(wallet.event(**payment("p1", "10.00", at="2026-06-15T11:00:00+08:00"))) == [None, "lunch"]
    assert campaign_ids(wallet.event(**payment("p2", "10.00", at="2026-06-15T14:00:00+08:00"))) == [None]
    assert campaign_ids(wallet.event(**payment("p3", "10.00", at="2026-06-16T12:00:00+08:00"))) == [None]


def test_points_per_unit_zero_turns_base_points_off(app, tmp_path):
    from promo_engine.app import create_app
    from conftest import make_settings
    settings = make_settings(app.config["SQLALCHEMY_DATABASE_URI"], points_per_unit=0)
    other = create_app(settings)
    wallet = new_wallet_client(other)
    body = wallet.event(**payment("p1", "100.00")).get_json()
    assert body == {"event_id": "p1", "rewards": [], "points_balance": 0}
