"""GET /v1/users/{user_id}/offers (contract: "GET /v1/users/{user_id}/offers"): what a user
can still earn, judged as events judge them: per-user limits, budgets and stock, the
user's history (`conditions.user`) and the holdout, on SQLite and PostgreSQL, and with the
campaign counters in Redis. The service's clock is fixed: "now" is NOW unless a test moves
it.
"""
from __future__ import annotations

from datetime import datetime

import pytest

from promo_engine.api.offers import summary_language
from promo_engine.core.targeting import holdout_bucket

from conftest import make_redis_settings, make_settings, reused_schema_url
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

CAMPAIGNS = f"""
id: dining
name: Dining 15% off
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}conditions: {{min_amount: "50.00", mcc: ["5812"], channels: [qr]}}
limits: {{per_user: 2, per_user_daily: 1}}
priority: 100
params: {{percent: 15, max_discount: "30.00"}}
---
id: weekend-3x
name: Weekend triple points
type: points_multiplier
{OPEN_RANGE}windows:
  - days: [sat, sun]
    from: "00:00"
    to: "00:00"
priority: 50
params: {{multiplier: 3}}
---
id: mall
name: Points mall voucher
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 1}}
params: {{cost_points: 100, voucher: {{amount: "15.00", valid_days: 10}}}}
---
id: ny-lunch
name: New York lunch
type: holiday_discount
timezone: America/New_York
{OPEN_RANGE}params: {{amount_off: "5.00"}}
---
id: welcome
name: Welcome voucher
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "5.00", valid_days: 7}}}}
"""
NOW = "2026-06-15T04:00:00+00:00"  # Monday 12:00 in Shanghai
TODAY = "2026-06-15T11:00:00+08:00"
TOMORROW = "2026-06-16T11:00:00+08:00"
ALL_IDS = ["dining", "weekend-3x", "mall", "ny-lunch", "welcome"]
QUALIFYING = {"mcc": "5812", "channel": "qr"}  # for dining, at m_100 and 50.00 or more


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """SQLite, then PostgreSQL: an empty migrated database per test, one schema per module."""
    return reused_schema_url(request, tmp_path)


class Wallet:
    def __init__(self, app, tmp_path, campaigns: str = CAMPAIGNS):
        self.app = app
        self.client = new_wallet_client(app)
        install_campaigns(app, campaigns, tmp_path)
        self.set_clock(NOW)

    def set_clock(self, instant: str) -> None:
        from promo_engine.service import promo_service
        fixed = datetime.fromisoformat(instant)
        with self.app.app_context():
            promo_service(self.app).clock = lambda: fixed

    def offers(self, user_id: str = "u_1", query: str = "", language: str | None = None):
        path = f"/v1/users/{user_id}/offers" + (f"?{query}" if query else "")
        headers = self.client.headers("GET", path, b"")
        if language is not None:
            headers["Accept-Language"] = language
        return self.client.client.get(path, headers=headers)

    def ids(self, user_id: str = "u_1", query: str = "") -> list[str]:
        response = self.offers(user_id, query)
        assert response.status_code == 200, response.get_json()
        return [offer["campaign_id"] for offer in response.get_json()["offers"]]

    def offer(self, campaign_id: str, user_id: str = "u_1", language: str | None = None):
        response = self.offers(user_id, language=language)
        assert response.status_code == 200, response.get_json()
        found = [o for o in response.get_json()["offers"] if o["campaign_id"] == campaign_id]
        return found[0] if found else None

    def event(self, body: dict) -> list[str]:
        """The campaigns that rewarded the event (base points left out)."""
        response = self.client.post("/v1/events", body)
        assert response.status_code == 201, response.get_json()
        return [r["campaign_id"] for r in response.get_json()["rewards"]
                if r["campaign_id"] is not None]


@pytest.fixture
def wallet(app, tmp_path):
    return Wallet(app, tmp_path)


def test_every_open_campaign_with_its_terms(wallet):
    response = wallet.offers()
    assert response.status_code == 200
    assert response.get_json() == {"user_id": "u_1", "offers": [
        {"campaign_id": "dining", "name": "Dining 15% off", "type": "holiday_discount",
         "summary": "15% off, at most 30.00 CNY",
         "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2030-01-01T00:00:00+08:00",
         "in_window_now": True, "uses_left": 1, "cost_points": None},
        {"campaign_id": "weekend-3x", "name": "Weekend triple points",
         "type": "points_multiplier", "summary": "3x points",
         "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2030-01-01T00:00:00+08:00",
         "in_window_now": False, "uses_left": None, "cost_points": None},
        {"campaign_id": "mall", "name": "Points mall voucher", "type": "points_exchange",
         "summary": "a 15.00 CNY voucher for 100 points",
         "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2030-01-01T00:00:00+08:00",
         "in_window_now": True, "uses_left": None, "cost_points": 100},
        # in its own zone: New York's offset on those dates
        {"campaign_id": "ny-lunch", "name": "New York lunch", "type": "holiday_discount",
         "summary": "5.00 CNY off",
         "starts_at": "2026-01-01T00:00:00-05:00", "ends_at": "2030-01-01T00:00:00-05:00",
         "in_window_now": True, "uses_left": None, "cost_points": None},
        {"campaign_id": "welcome", "name": "Welcome voucher", "type": "first_activation_bonus",
         "summary": "a 5.00 CNY voucher valid 7 days on your wallet activation",
         "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2030-01-01T00:00:00+08:00",
         "in_window_now": True, "uses_left": None, "cost_points": None}]}
    # Saturday in Shanghai: the weekend window is open
    wallet.set_clock("2026-06-19T16:00:00+00:00")
    assert wallet.offer("weekend-3x")["in_window_now"] is True
    # Friday 23:59:59 in Shanghai: not yet
    wallet.set_clock("2026-06-19T15:59:59+00:00")
    assert wallet.offer("weekend-3x")["in_window_now"] is False
    # before the dates in New York, already inside them in Shanghai
    wallet.set_clock("2026-01-01T04:59:59+00:00")
    assert wallet.offer("ny-lunch")["in_window_now"] is False
    assert wallet.offer("dining")["in_window_now"] is True


@pytest.mark.parametrize("query, expected", [
    ("", ALL_IDS),
    # any payment value: only what a payment earns (no exchange, no activation bonus)
    ("merchant_id=m_100", ["dining", "weekend-3x", "ny-lunch"]),
    ("merchant_id=m_200", ["weekend-3x", "ny-lunch"]),
    ("mcc=5812", ["dining", "weekend-3x", "ny-lunch"]),
    ("mcc=5411", ["weekend-3x", "ny-lunch"]),
    ("channel=qr", ["dining", "weekend-3x", "ny-lunch"]),
    ("channel=in_store", ["weekend-3x", "ny-lunch"]),
    ("amount=50.00", ["dining", "weekend-3x", "ny-lunch"]),
    ("amount=50", ["dining", "weekend-3x", "ny-lunch"]),
    ("amount=49.99", ["weekend-3x", "ny-lunch"]),
    ("merchant_id=m_100&mcc=5812&channel=qr&amount=88.00", ["dining", "weekend-3x", "ny-lunch"]),
    ("merchant_id=m_100&mcc=5812&channel=in_store&amount=88.00", ["weekend-3x", "ny-lunch"]),
])
def test_payment_values_narrow_the_list_exactly(wallet, query, expected):
    assert wallet.ids(query=query) == expected


def test_the_users_limits_leave_uses_and_a_used_up_campaign_is_gone(wallet):
    # another user's uses are not this one's
    assert "dining" in wallet.event(payment("other", "60.00", user_id="u_9", at=TODAY,
                                            **QUALIFYING))
    assert wallet.offer("dining")["uses_left"] == 1
    assert "dining" in wallet.event(payment("p1", "60.00", at=TODAY, **QUALIFYING))
    assert wallet.offer("dining") is None  # per_user_daily: none left today
    assert "dining" not in wallet.ids(query="merchant_id=m_100&mcc=5812")
    wallet.set_clock("2026-06-15T15:59:59+00:00")  # 23:59:59 in Shanghai: still today
    assert wallet.offer("dining") is None
    wallet.set_clock("2026-06-15T16:00:00+00:00")  # tomorrow in Shanghai
    assert wallet.offer("dining")["uses_left"] == 1  # min(per_user 2 - 1, daily 1 - 0)
    wallet.set_clock("2026-06-16T04:00:00+00:00")
    assert "dining" in wallet.event(payment("p2", "60.00", at=TOMORROW, **QUALIFYING))
    wallet.set_clock("2026-06-20T04:00:00+00:00")
    assert wallet.offer("dining") is None  # per_user: used up for good
    assert wallet.offer("dining", user_id="u_9")["uses_left"] == 1


BUDGETED = f"""
id: small
name: Ten off, once
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "10.00"}}
params: {{amount_off: "10.00"}}
---
id: mall
name: Points mall voucher
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 1}}
params: {{cost_points: 100, voucher: {{amount: "15.00", valid_days: 10}}}}
"""


@pytest.mark.parametrize("counters", ["database-counters", "redis-counters"])
def test_a_campaign_out_of_budget_or_stock_is_gone(request, database_url, tmp_path, counters):
    from conftest import running_app
    settings = (make_settings(database_url) if counters == "database-counters" else
                make_redis_settings(database_url, request.getfixturevalue("redis_prefix")))
    with running_app(settings) as app:
        wallet = Wallet(app, tmp_path, BUDGETED)
        assert wallet.ids("u_1") == ["mall", "small"]
        assert wallet.event(payment("p1", "120.00", at=TODAY)) == ["small"]
        assert wallet.ids("u_2") == ["mall"]  # the budget is spent, for everyone
        response = wallet.client.post("/v1/events", {
            "event_id": "swap-1", "type": "redemption", "user_id": "u_1",
            "campaign_id": "mall", "occurred_at": TODAY})
        assert response.status_code == 201, response.get_json()
        assert wallet.ids("u_1") == [] and wallet.ids("u_2") == []  # out of stock


HELD = f"""
id: held
name: Five percent, with a control group
type: holiday_discount
{OPEN_RANGE}holdout: 50
params: {{percent: 5}}
"""


def test_held_out_users_neither_see_nor_get_the_campaign(app, tmp_path):
    wallet = Wallet(app, tmp_path, HELD)
    # the documented hash: below 5000 is held out at 50%
    assert [holdout_bucket("held", u) for u in ("u_1", "u_2", "u_3", "u_4")] == [
        7080, 387, 8846, 2767]
    assert [wallet.ids(u) for u in ("u_1", "u_2", "u_3", "u_4")] == [
        ["held"], [], ["held"], []]
    rewarded = [wallet.event(payment(f"p-{u}", "100.00", user_id=u, at=TODAY))
                for u in ("u_1", "u_2", "u_3", "u_4")]
    assert rewarded == [["held"], [], ["held"], []]


HISTORY = f"""
id: win-back
name: Come back
type: holiday_discount
{OPEN_RANGE}conditions: {{user: {{min_payments: 1, inactive_days: 30}}}}
params: {{amount_off: "4.00"}}
---
id: first-three
name: First three payments
type: holiday_discount
{OPEN_RANGE}conditions: {{user: {{max_payments: 2}}}}
params: {{amount_off: "2.00"}}
"""


def test_the_users_history_is_judged_at_the_services_clock(app, tmp_path):
    wallet = Wallet(app, tmp_path, HISTORY)
    assert wallet.ids("u_new") == ["first-three"]  # never paid: not inactive
    wallet.event(payment("p1", "10.00", at="2026-05-16T12:00:00+08:00"))
    # 30 x 24 hours after the payment, to the second (NOW is 2026-06-15T12:00+08:00)
    wallet.set_clock("2026-06-15T03:59:59+00:00")
    assert wallet.ids() == ["first-three"]
    wallet.set_clock(NOW)
    assert wallet.ids() == ["first-three", "win-back"]
    wallet.event(payment("p2", "10.00", at=TODAY))
    assert wallet.ids() == ["first-three"]
    wallet.event(payment("p3", "10.00", at=TODAY))
    assert wallet.ids() == []  # three payments: no longer among the first three
    # the history's values are not payment values: a filter does not bring them back
    assert wallet.ids(query="amount=10.00") == []


def test_summaries_in_the_language_asked(wallet):
    def summaries(language):
        response = wallet.offers(language=language)
        assert response.status_code == 200
        return {o["campaign_id"]: o["summary"] for o in response.get_json()["offers"]}
    assert summaries("zh-CN,zh;q=0.9,en;q=0.8") == {
        "dining": "15% 折扣，最多减 30.00 CNY", "weekend-3x": "3 倍积分",
        "mall": "100 积分兑换 15.00 CNY 优惠券",
        "ny-lunch": "立减 5.00 CNY", "welcome": "开通钱包送 5.00 CNY 优惠券，7 天内有效"}
    english = summaries("en-US,en;q=0.9")
    assert english["dining"] == "15% off, at most 30.00 CNY"
    assert summaries(None) == english
    assert summaries("fr-FR, de;q=0.5") == english
    assert summaries("zh;q=0, en") == english


@pytest.mark.parametrize("header, language", [
    (None, "en"), ("", "en"), ("zh", "zh"), ("ZH-hans-CN", "zh"), ("en-GB,zh", "en"),
    ("fr,zh-TW;q=0.5,en;q=0.4", "zh"), ("en;q=0.3,zh;q=0.7", "zh"), ("zh;q=0,en;q=0.1", "en"),
    ("zh;q=oops,en;q=0.2", "en"), ("*", "en"), ("zh;q=0.5,en;q=0.5", "zh"),
])
def test_the_summary_language_from_accept_language(header, language):
    assert summary_language(header) == language


@pytest.mark.parametrize("query, fields", [
    ("amount=abc", {"amount": ['must be a decimal string such as "12.50"']}),
    ("amount=0", {"amount": ["must be greater than 0"]}),
    ("amount=10.005", {"amount": ["at most 2 decimal places for CNY"]}),
    ("amount=.5", {"amount": ['must be digits with an optional point followed by digits, '
                              'e.g. "12.50"']}),
    ("mcc=12", {"mcc": ["must be 4 digits"]}),
    ("channel=in%20store", {"channel": ["must be 1-32 characters of A-Z a-z 0-9 _ . : -"]}),
    ("merchant_id=m%20100", {"merchant_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}),
    ("mcc=5812&mcc=5814", {"mcc": ["give it once"]}),
    ("device_id=d%201", {"device_id": ["must be 1-128 characters of A-Z a-z 0-9 _ . : -"]}),
    ("device_id=" + "d" * 129, {"device_id": ["must be 1-128 characters of A-Z a-z 0-9 _ . : -"]}),
    ("device_id=d_1&device_id=d_2", {"device_id": ["give it once"]}),
    ("merchant=m_100&mcc=12", {"merchant": ["is not a parameter of this endpoint; known: "
                                            "merchant_id, mcc, channel, amount, device_id"],
                               "mcc": ["must be 4 digits"]}),
])
def test_bad_query_parameters_are_422_naming_the_field(wallet, query, fields):
    response = wallet.offers(query=query)
    assert response.status_code == 422
    assert response.get_json() == {"error": {"code": "validation_error",
                                             "message": "invalid query parameters",
                                             "fields": fields}}


def test_a_bad_user_id_is_422(wallet):
    response = wallet.offers(user_id="u%20x")
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "user_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}


def test_unsigned_requests_get_401(wallet):
    response = wallet.app.test_client().get("/v1/users/u_1/offers")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    headers = wallet.client.headers("GET", "/v1/users/u_1/offers", b"")
    # signed for another path: refused too
    response = wallet.app.test_client().get("/v1/users/u_2/offers", headers=headers)
    assert response.status_code == 401

