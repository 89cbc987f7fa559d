"""GET /v1/campaigns: the open campaigns a wallet may show, in their local times."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from promo_engine import hookimpl
from promo_engine.campaigns.lifecycle import PAUSED, RETIRED, transition
from promo_engine.core.registry import build_registry, get_plugin_manager
from promo_engine.service import RELOAD_INTERVAL_SECONDS

from conftest import running_app
from factories import PaymentPointsType
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)

CAMPAIGNS = f"""
id: spring-dining
name: Spring dining 15% off
type: holiday_discount
merchants: [m_200, m_100]
timezone: Asia/Shanghai
{OPEN_RANGE}windows:
  - days: [mon, tue, wed, thu, fri]
    from: "11:30"
    to: "13:30"
  - days: [sun, sat]
    from: "11:00"
    to: "00:00"
conditions:
  min_amount: "50"
  mcc: ["5814", "5812"]
  channels: [qr, in_store]
  attributes: {{segment: [student]}}
budget:
  amount: "50000.00"
limits:
  per_user: 3
  max_redemptions: 10000
priority: 100
params:
  percent: 15
  max_discount: "30.00"
---
id: bank-wide-five
type: holiday_discount
{OPEN_RANGE}priority: 100
params:
  amount_off: "5.00"
---
id: weekend-3x
name: Weekend triple points
type: points_multiplier
merchants: [m_300]
{OPEN_RANGE}priority: 50
params:
  multiplier: 3
---
id: welcome
name: Welcome to the wallet
type: first_activation_bonus
timezone: Europe/London
starts_at: 2026-06-01T00:00:00
ends_at: 2030-01-01T00:00:00
params:
  points: 500
---
id: last-year
type: holiday_discount
starts_at: 2025-01-01T00:00:00
ends_at: 2025-02-01T00:00:00
params: {{percent: 10}}
---
id: next-decade
type: holiday_discount
starts_at: 2031-01-01T00:00:00
ends_at: 2031-02-01T00:00:00
params: {{percent: 10}}
---
id: on-hold
type: holiday_discount
{OPEN_RANGE}params: {{percent: 10}}
---
id: withdrawn
type: holiday_discount
{OPEN_RANGE}params: {{percent: 10}}
"""

SPRING_DINING = {
    "id": "spring-dining",
    "name": "Spring dining 15% off",
    "type": "holiday_discount",
    "summary": "15% off, at most 30.00 CNY",
    "merchants": ["m_100", "m_200"],
    "timezone": "Asia/Shanghai",
    "starts_at": "2026-01-01T00:00:00+08:00",
    "ends_at": "2030-01-01T00:00:00+08:00",
    "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "11:30", "to": "13:30"},
                {"days": ["sat", "sun"], "from": "11:00", "to": "24:00"}],
    "conditions": {"min_amount": "50.00", "mcc": ["5812", "5814"], "channels": ["in_store", "qr"]},
}
BANK_WIDE_FIVE = {
    "id": "bank-wide-five",
    "name": "bank-wide-five",
    "type": "holiday_discount",
    "summary": "5.00 CNY off",
    "merchants": None,
    "timezone": "Asia/Shanghai",
    "starts_at": "2026-01-01T00:00:00+08:00",
    "ends_at": "2030-01-01T00:00:00+08:00",
    "windows": [],
    "conditions": {"min_amount": None, "mcc": None, "channels": None},
}
WEEKEND_3X = {
    "id": "weekend-3x",
    "name": "Weekend triple points",
    "type": "points_multiplier",
    "summary": "3x points",
    "merchants": ["m_300"],
    "timezone": "Asia/Shanghai",
    "starts_at": "2026-01-01T00:00:00+08:00",
    "ends_at": "2030-01-01T00:00:00+08:00",
    "windows": [],
    "conditions": {"min_amount": None, "mcc": None, "channels": None},
}
WELCOME = {
    "id": "welcome",
    "name": "Welcome to the wallet",
    "type": "first_activation_bonus",
    "summary": "500 points on your wallet activation",
    "merchants": None,
    "timezone": "Europe/London",
    "starts_at": "2026-06-01T00:00:00+01:00",  # British Summer Time then
    "ends_at": "2030-01-01T00:00:00+00:00",
    "windows": [],
    "conditions": {"min_amount": None, "mcc": None, "channels": None},
}


def set_status(app, campaign_id: str, status: str) -> None:
    from promo_engine.ledger.extensions import db
    with app.app_context():
        assert transition(db.session, campaign_id, status, actor="cli:alice", reason="test",
                          now=NOW) is not None
        db.session.commit()


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    set_status(app, "on-hold", PAUSED)
    set_status(app, "withdrawn", RETIRED)
    return new_wallet_client(app)


def test_lists_the_open_campaigns_by_priority_with_local_times_and_summaries(wallet):
    response = wallet.get("/v1/campaigns")
    assert response.status_code == 200
    assert response.get_json() == {
        "campaigns": [BANK_WIDE_FIVE, SPRING_DINING, WEEKEND_3X, WELCOME]}


def test_closed_paused_scheduled_and_retired_campaigns_are_not_listed(app, wallet):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    with app.app_context():
        statuses = dict(db.session.query(CampaignRecord.id, CampaignRecord.status))
    assert {statuses[i] for i in ("last-year", "next-decade", "on-hold", "withdrawn")} == {
        "closed", "scheduled", "paused", "retired"}
    listed = [c["id"] for c in wallet.get("/v1/campaigns").get_json()["campaigns"]]
    assert listed == ["bank-wide-five", "spring-dining", "weekend-3x", "welcome"]


def test_merchant_filter_keeps_that_merchants_and_the_bank_wide_campaigns(wallet):
    response = wallet.get("/v1/campaigns?merchant_id=m_100")
    assert response.status_code == 200
    assert response.get_json() == {"campaigns": [BANK_WIDE_FIVE, SPRING_DINING, WELCOME]}


def test_merchant_without_campaigns_of_its_own_gets_the_bank_wide_ones(wallet):
    listed = wallet.get("/v1/campaigns?merchant_id=m_999").get_json()["campaigns"]
    assert [c["id"] for c in listed] == ["bank-wide-five", "welcome"]


def test_no_open_campaigns_is_an_empty_list(app):
    response = new_wallet_client(app).get("/v1/campaigns")
    assert (response.status_code, response.get_json()) == (200, {"campaigns": []})


def test_unsigned_request_gets_401(app, wallet):
    response = app.test_client().get("/v1/campaigns")
    assert response.status_code == 401
    assert response.get_json() == {"error": {"code": "unauthorized",
                                             "message": "missing X-Promo-Key header"}}


@pytest.mark.parametrize("query, fields", [
    ("merchant_id=m%20100", {"merchant_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}),
    ("merchant_id=", {"merchant_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}),
    ("merchant_id=m_100%0A", {"merchant_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}),
    ("merchant_id=m_100&merchant_id=m_200", {"merchant_id": ["give it once"]}),
    ("merchant=m_100", {"merchant": ["is not a parameter of this endpoint; known: merchant_id"]}),
])
def test_invalid_query_gets_422_naming_the_parameter(wallet, query, fields):
    response = wallet.get(f"/v1/campaigns?{query}")
    assert response.status_code == 422
    assert response.get_json() == {"error": {"code": "validation_error",
                                             "message": "invalid query parameters",
                                             "fields": fields}}


def test_a_paused_campaign_leaves_the_list_within_the_reload_interval(app, wallet):
    assert "spring-dining" in [c["id"] for c in wallet.get("/v1/campaigns").get_json()["campaigns"]]
    set_status(app, "spring-dining", PAUSED)
    time.sleep(RELOAD_INTERVAL_SECONDS + 0.2)
    listed = [c["id"] for c in wallet.get("/v1/campaigns").get_json()["campaigns"]]
    assert listed == ["bank-wide-five", "weekend-3x", "welcome"]


# --- a plugin whose summary raises ----------------------------------------------------------

class CannotSummarise(PaymentPointsType):
    name = "cannot_summarise"

    def compile(self, campaign):
        return lambda ctx: None

    def summary(self, params, currency):
        raise RuntimeError("summary bug")


class CannotSummarisePlugin:
    @hookimpl
    def promo_campaign_types(self):
        return [CannotSummarise()]


def test_a_summary_that_raises_shows_the_type_name_instead(settings, tmp_path, caplog):
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(CannotSummarisePlugin(), name="cannot-summarise")
    with running_app(settings, build_registry(pm)) as app:
        install_campaigns(app, f"id: odd\ntype: cannot_summarise\n{OPEN_RANGE}params: {{}}\n",
                          tmp_path)
        response = new_wallet_client(app).get("/v1/campaigns")
    assert response.status_code == 200
    assert [(c["id"], c["summary"]) for c in response.get_json()["campaigns"]] == [
        ("odd", "cannot_summarise")]
    assert "campaign type cannot_summarise could not summarise campaign odd" in caplog.text
