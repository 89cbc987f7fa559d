"""POST /v1/events, /v1/quote and GET /v1/users/{id}/points, as the contract says (section 1)."""
from __future__ import annotations

import json
import re

import pytest

from conftest import make_redis_settings, running_app
from wallet import (OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment,
                    refund, without_ids)

CAMPAIGNS = f"""
id: dining-15
name: Dining 15% off
type: holiday_discount
merchants: [m_100, m_200]
{OPEN_RANGE}priority: 100
params: {{percent: 15, max_discount: "30.00"}}
---
id: weekend-3x
type: points_multiplier
merchants: [m_100]
{OPEN_RANGE}windows:
  - days: [sat, sun]
    from: "00:00"
    to: "00:00"
params: {{multiplier: 3}}
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{points: 500}}
"""

SATURDAY_NOON = "2026-06-13T12:00:00+08:00"
MONDAY_NOON = "2026-06-15T12:00:00+08:00"


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    return new_wallet_client(app)


def test_payment_earns_discount_base_points_and_multiplier(wallet):
    response = wallet.event(**payment("evt_1", "128.50", at=SATURDAY_NOON))
    assert response.status_code == 201
    body = response.get_json()
    assert body["event_id"] == "evt_1"
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 128},
        {"campaign_id": "dining-15", "kind": "discount", "amount": "19.28", "currency": "CNY"},
        {"campaign_id": "weekend-3x", "kind": "points", "points": 256},
    ]
    assert body["points_balance"] == 384
    assert all(re.fullmatch(r"rw_[0-9a-f]{20}", r["reward_id"]) for r in body["rewards"])
    assert len({r["reward_id"] for r in body["rewards"]}) == 3


def test_discount_is_capped_by_max_discount(wallet):
    body = wallet.event(**payment("evt_1", "1000.00", at=MONDAY_NOON)).get_json()
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 1000},
        {"campaign_id": "dining-15", "kind": "discount", "amount": "30.00", "currency": "CNY"},
    ]


def test_merchant_outside_scope_earns_base_points_only(wallet):
    body = wallet.event(**payment("evt_1", "99.99", merchant_id="m_999", at=SATURDAY_NOON)).get_json()
    assert without_ids(body["rewards"]) == [{"campaign_id": None, "kind": "points", "points": 99}]


def test_first_activation_bonus_only_once(wallet):
    first = wallet.event(**activation("act_1")).get_json()
    assert without_ids(first["rewards"]) == [{"campaign_id": "welcome", "kind": "points", "points": 500}]
    assert first["points_balance"] == 500
    second = wallet.event(**activation("act_2"))
    assert second.status_code == 201
    assert second.get_json() == {"event_id": "act_2", "rewards": [], "points_balance": 500}


def test_replay_returns_first_response_exactly(wallet):
    first = wallet.event(**payment("evt_1", "50.00", at=SATURDAY_NOON))
    reordered = json.dumps(dict(reversed(list(payment("evt_1", "50.00", at=SATURDAY_NOON).items()))),
                           indent=4)
    again = wallet.post("/v1/events", reordered)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert "Idempotent-Replayed" not in first.headers
    points = wallet.get("/v1/users/u_1/points").get_json()
    assert points["points_balance"] == 150


def test_same_event_id_with_other_body_conflicts_and_changes_nothing(wallet):
    wallet.event(**payment("evt_1", "50.00", at=SATURDAY_NOON))
    response = wallet.event(**payment("evt_1", "60.00", at=SATURDAY_NOON))
    assert response.status_code == 409
    assert response.get_json()["error"] == {
        "code": "idempotency_conflict",
        "message": "event_id evt_1 was already recorded with a different body: amount was "
                   "50.00, this request has 60.00. Resend the original body to get the "
                   "recorded answer",
        "fields": {"event_id": ["already recorded with a different body"],
                   "amount": ["was 50.00, this request has 60.00"]}}
    assert wallet.get("/v1/users/u_1/points").get_json()["points_balance"] == 150


def conflict_of(wallet, first: dict, second: dict) -> dict:
    assert wallet.event(**first).status_code == 201
    response = wallet.event(**second)
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "idempotency_conflict"
    return error


def test_a_conflict_names_each_recorded_column_that_differs(wallet):
    """The quickstart's mistake: the same payment sent again with occurred_at set to now."""
    error = conflict_of(
        wallet, payment("pay-0001", "128.50", at="2026-06-13T03:50:01Z"),
        payment("pay-0001", "128.50", at="2026-06-13T03:52:10Z", merchant_id="m_200",
                device_id="d-1"))
    assert error["message"] == (
        "event_id pay-0001 was already recorded with a different body: occurred_at was "
        "2026-06-13T03:50:01Z, this request has 2026-06-13T03:52:10Z; merchant_id was m_100, "
        "this request has m_200. Resend the original body to get the recorded answer")
    assert error["fields"] == {
        "event_id": ["already recorded with a different body"],
        "occurred_at": ["was 2026-06-13T03:50:01Z, this request has 2026-06-13T03:52:10Z"],
        "merchant_id": ["was m_100, this request has m_200"]}


def test_a_conflict_names_an_absent_field_and_a_refund_s_original(wallet):
    wallet.event(**payment("pay-1", "50.00"))
    wallet.event(**payment("pay-2", "50.00"))
    error = conflict_of(wallet, refund("ref-1", "pay-1", "10.00"),
                        refund("ref-1", "pay-2", "10.00"))
    assert error["fields"] == {"event_id": ["already recorded with a different body"],
                               "original_event_id": ["was pay-1, this request has pay-2"]}
    error = conflict_of(wallet, payment("pay-3", "10.00", device_id="d-1"),
                        payment("pay-3", "10.00"))
    assert error["fields"]["device_id"] == ["was d-1, this request has absent"]


@pytest.mark.parametrize("first, second", [
    (payment("p1", "40.00", at="2026-06-13T04:00:00Z"),
     payment("p1", "40.00", at="2026-06-13T04:00:00+00:00")),
    (payment("p1", "40.00"), payment("p1", "40.0")),
    (payment("p1", "40.00", attributes={"segment": "gold"}),
     payment("p1", "40.00", attributes={"segment": "silver"}))])
def test_a_conflict_in_no_recorded_column_says_what_else_can_differ(wallet, first, second):
    error = conflict_of(wallet, first, second)
    assert error == {
        "code": "idempotency_conflict",
        "message": "event_id p1 was already recorded with a different body: its type, user, "
                   "merchant, amount, currency and occurred_at match, so another field "
                   "differs (attributes, for example), or a value is written differently (the "
                   "same instant with Z or +00:00, 40.0 or 40.00: the canonical JSON of the "
                   "body is compared). Resend the original body to get the recorded answer",
        "fields": {"event_id": ["already recorded with a different body"]}}


def test_a_conflict_answered_from_the_replay_cache_names_the_difference(database_url,
                                                                        redis_prefix, tmp_path):
    with running_app(make_redis_settings(database_url, redis_prefix)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        error = conflict_of(new_wallet_client(app), payment("p1", "40.00"),
                            payment("p1", "40.00", user_id="u_2"))
    assert error["fields"] == {"event_id": ["already recorded with a different body"],
                               "user_id": ["was u_1, this request has u_2"]}


def test_event_ids_are_per_client(app, wallet):
    other = new_wallet_client(app)
    assert wallet.event(**payment("evt_1", "10.00")).status_code == 201
    assert other.event(**payment("evt_1", "20.00")).status_code == 201


@pytest.mark.parametrize("retry_after_ms, header", [(200, "1"), (1000, "1"), (1500, "2")])
def test_budget_counters_being_rebuilt_answer_503_with_retry_after_in_whole_seconds(
        app, wallet, monkeypatch, retry_after_ms, header):
    from promo_engine.coordination.reservations import NotReady
    from promo_engine.service import promo_service

    def not_ready(**kwargs):
        raise NotReady(retry_after_ms)
    monkeypatch.setattr(promo_service(app).ledger, "record", not_ready)
    response = wallet.event(**payment("evt_1", "10.00"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == header
    assert response.get_json() == {"error": {
        "code": "unavailable",
        "message": f"budget counters are being rebuilt; retry in {retry_after_ms} ms"}}


def test_quote_has_no_side_effects(wallet):
    quote = wallet.post("/v1/quote", {k: v for k, v in payment("q", "128.50", at=SATURDAY_NOON).items()
                                      if k != "event_id"})
    assert quote.status_code == 200
    body = quote.get_json()
    assert body["dry_run"] is True
    assert body["points_balance"] == 384
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 128},
        {"campaign_id": "dining-15", "kind": "discount", "amount": "19.28", "currency": "CNY"},
        {"campaign_id": "weekend-3x", "kind": "points", "points": 256},
    ]
    assert all("reward_id" not in r for r in body["rewards"])
    points = wallet.get("/v1/users/u_1/points").get_json()
    assert points == {"user_id": "u_1", "points_balance": 0, "pending_points": 0, "expiring": [],
                      "entries": [], "next_cursor": None}


def test_quote_of_an_activation_counts_nothing(wallet):
    quote = wallet.post("/v1/quote", activation("q")).get_json()
    assert without_ids(quote["rewards"]) == [{"campaign_id": "welcome", "kind": "points", "points": 500}]
    real = wallet.event(**activation("act_1")).get_json()
    assert real["points_balance"] == 500


def test_points_entries_newest_first_with_cursor(wallet):
    for n, amount in enumerate(["10.00", "20.00", "30.00"], start=1):
        wallet.event(**payment(f"evt_{n}", amount, at=MONDAY_NOON))
    page = wallet.get("/v1/users/u_1/points?limit=2").get_json()
    assert page["points_balance"] == 60
    assert [(e["event_id"], e["points"], e["kind"], e["campaign_id"]) for e in page["entries"]] == [
        ("evt_3", 30, "points", None), ("evt_2", 20, "points", None)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", page["entries"][0]["created_at"])
    rest = wallet.get(f"/v1/users/u_1/points?limit=2&cursor={page['next_cursor']}").get_json()
    assert [e["event_id"] for e in rest["entries"]] == ["evt_1"]
    assert rest["next_cursor"] is None


def test_points_of_unknown_user_are_zero(wallet):
    assert wallet.get("/v1/users/nobody/points").get_json() == {
        "user_id": "nobody", "points_balance": 0, "pending_points": 0, "expiring": [],
        "entries": [], "next_cursor": None}


def _cursor_of(before) -> str:
    import base64
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")


def _nested_cursor() -> str:
    import base64
    return base64.urlsafe_b64encode(b"[" * 50_000).decode().rstrip("=")


def test_a_user_id_with_a_trailing_newline_is_refused(wallet):
    response = wallet.get("/v1/users/u%0A/points")
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["user_id"]


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=501", "limit"),
                                          ("limit=abc", "limit"), ("cursor=%%%", "cursor"),
                                          ("cursor=eyJiZWZvcmUiOiAieCJ9", "cursor"),
                                          ("limit=%D9%A1", "limit"),  # an Arabic-Indic 1
                                          (f"cursor={_cursor_of(10**30)}", "cursor"),
                                          (f"cursor={_cursor_of(2**63)}", "cursor"),
                                          (f"cursor={_nested_cursor()}", "cursor")])
def test_points_query_errors_name_the_parameter(wallet, query, field):
    response = wallet.get(f"/v1/users/u_1/points?{query}")
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_points_default_page_is_50_and_max_500(wallet):
    for n in range(51):
        wallet.event(**payment(f"evt_{n}", "1.00", at=MONDAY_NOON))
    assert len(wallet.get("/v1/users/u_1/points").get_json()["entries"]) == 50
    assert len(wallet.get("/v1/users/u_1/points?limit=500").get_json()["entries"]) == 51
