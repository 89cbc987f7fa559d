"""`POST /v1/quote?explain=true`: every candidate campaign of a quoted event, whether it
applied and why, with stable reason codes; the rewards are exactly those of the same quote
without explain, and without `explain=true` the answer does not change by a byte.

Each reason is reached through the API on SQLite; exclusivity and multipliers also on
PostgreSQL. The explanations are compared whole, so a new or reworded entry fails here.
"""
from __future__ import annotations

import json

import pytest

from conftest import make_settings, reused_schema_url
from promo_engine.core.targeting import holdout_bucket
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

MONDAY_NOON = "2026-06-15T12:00:00+08:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def settings(database_url):
    return make_settings(database_url)


sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Wallet:
    def __init__(self, app, tmp_path):
        self.app, self.tmp_path = app, tmp_path
        self.client = new_wallet_client(app)

    def campaigns(self, text: str) -> None:
        install_campaigns(self.app, text, self.tmp_path)

    def record(self, body: dict) -> None:
        response = self.client.post("/v1/events", body)
        assert response.status_code == 201, response.get_json()

    def quote(self, body: dict, query: str = ""):
        return self.client.post("/v1/quote" + query, body)

    def explain(self, body: dict) -> list[tuple]:
        """The explanation, as (campaign_id, applied, reason, detail); the name is checked
        to be the campaign's, and the rewards to be those of the quote without explain."""
        plain = self.quote(body)
        explained = self.quote(body, "?explain=true")
        assert plain.status_code == explained.status_code == 200, explained.get_json()
        answer = explained.get_json()
        entries = answer.pop("explain")
        assert answer == plain.get_json()
        for entry in entries:
            assert list(entry) == ["campaign_id", "name", "applied", "reason", "detail"]
            assert entry["name"] == f"Name of {entry['campaign_id']}"
            assert entry["applied"] is (entry["reason"] == "applied")
        return [(e["campaign_id"], e["applied"], e["reason"], e["detail"]) for e in entries]


@pytest.fixture
def wallet(app, tmp_path):
    return Wallet(app, tmp_path)


def campaign(campaign_id: str, type_: str, params: str, extra: str = "") -> str:
    return (f"id: {campaign_id}\nname: Name of {campaign_id}\ntype: {type_}\n{OPEN_RANGE}"
            f"{extra}params: {params}\n")


def yaml(*campaigns: str) -> str:
    return "---\n".join(campaigns)


RANKED = yaml(
    campaign("weekday-2x", "points_multiplier", "{multiplier: \"2\"}", "priority: 60\n"),
    campaign("vip-3x", "points_multiplier", "{multiplier: \"3\"}", "priority: 50\n"),
    campaign("store-exclusive", "holiday_discount", "{amount_off: \"10.00\"}",
             "merchants: [m_100]\npriority: 40\nexclusive: true\n"),
    campaign("low-discount", "holiday_discount", "{amount_off: \"1.00\"}", "priority: 10\n"),
    campaign("low-4x", "points_multiplier", "{multiplier: \"4\"}", "priority: 5\n"),
    campaign("other-store", "holiday_discount", "{amount_off: \"2.00\"}",
             "merchants: [m_900, m_901]\n"),
    campaign("welcome", "first_activation_bonus", "{points: 500}"),
)


def test_exclusivity_multipliers_and_scope_are_explained(wallet):
    wallet.campaigns(RANKED)
    body = payment("q1", "100.00", at=MONDAY_NOON)
    assert wallet.explain(body) == [
        ("weekday-2x", False, "beaten_by_multiplier",
         "vip-3x (Name of vip-3x) won stacking group points_multiplier"),
        ("vip-3x", True, "applied", "applied"),
        ("store-exclusive", True, "applied", "applied"),
        ("low-discount", False, "blocked_by_exclusive",
         "store-exclusive (Name of store-exclusive, priority 40) is exclusive and applied"),
        # a higher multiplier below the exclusive: blocked, not a winner of the group
        ("low-4x", False, "blocked_by_exclusive",
         "store-exclusive (Name of store-exclusive, priority 40) is exclusive and applied"),
        ("other-store", False, "not_at_merchant", "only at merchants m_900, m_901"),
    ]
    rewards = wallet.quote(body, "?explain=true").get_json()["rewards"]
    assert [(r["campaign_id"], r["kind"], r.get("points"), r.get("amount"))
            for r in rewards] == [(None, "points", 100, None),
                                  ("vip-3x", "points", 200, None),
                                  ("store-exclusive", "discount", None, "10.00")]
    # at another merchant the exclusive is out of scope, so nothing is blocked
    elsewhere = payment("q2", "100.00", merchant_id="m_200", at=MONDAY_NOON)
    assert wallet.explain(elsewhere) == [
        ("weekday-2x", False, "beaten_by_multiplier",
         "low-4x (Name of low-4x) won stacking group points_multiplier"),
        ("vip-3x", False, "beaten_by_multiplier",
         "low-4x (Name of low-4x) won stacking group points_multiplier"),
        ("store-exclusive", False, "not_at_merchant", "only at merchants m_100"),
        ("low-discount", True, "applied", "applied"),
        ("low-4x", True, "applied", "applied"),
        ("other-store", False, "not_at_merchant", "only at merchants m_900, m_901"),
    ]


FILTERS = yaml(
    # open now, but not yet on the event's day
    campaign("summer", "holiday_discount", "{amount_off: \"1.00\"}",
             "").replace(OPEN_RANGE, "starts_at: 2026-07-01T00:00:00\n"
                                     "ends_at: 2030-01-01T00:00:00\n"),
    campaign("weekends", "holiday_discount", "{amount_off: \"1.00\"}",
             "windows:\n  - days: [sat, sun]\n    from: \"00:00\"\n    to: \"00:00\"\n"),
    campaign("evenings", "holiday_discount", "{amount_off: \"1.00\"}",
             "windows:\n  - from: \"18:00\"\n    to: \"22:00\"\n"),
    campaign("big-bills", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {min_amount: \"200.00\"}\n"),
    campaign("dining", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {mcc: [\"5812\", \"5814\"]}\n"),
    campaign("qr-only", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {channels: [qr]}\n"),
    campaign("students", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {channels: [app], attributes: {segment: [student]}}\n"),
    campaign("regulars", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {user: {min_payments: 3}}\n"),
    campaign("new-users", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {user: {max_payments: 0}}\n"),
    campaign("win-back", "holiday_discount", "{amount_off: \"1.00\"}",
             "conditions: {user: {inactive_days: 30}}\n"),
    campaign("tiny-2x", "points_multiplier", "{multiplier: \"2\"}"),
)


@sqlite_only
def test_windows_conditions_and_history_are_named(wallet):
    wallet.campaigns(FILTERS)
    wallet.record(payment("p1", "80.00", at="2026-06-01T12:00:00+08:00"))
    # 14 days later, Monday noon, 0.50 earns no base points (so tiny-2x has nothing to add)
    body = payment("q", "0.50", at=MONDAY_NOON, mcc="5411", channel="app",
                   attributes={"segment": "retiree"})
    assert wallet.explain(body) == [
        ("big-bills", False, "condition_failed", "min_amount: the amount 0.50 is below 200.00"),
        ("dining", False, "condition_failed", "mcc: 5411 is not one of 5812, 5814"),
        ("evenings", False, "out_of_window",
         "hours: Monday 12:00 in Asia/Shanghai is outside the campaign's hours"),
        ("new-users", False, "condition_failed",
         "user.max_payments: the user has 1 payments, at most 0 qualify"),
        ("qr-only", False, "condition_failed", "channels: app is not one of qr"),
        ("regulars", False, "condition_failed",
         "user.min_payments: the user has 1 payments, needs at least 3"),
        ("students", False, "condition_failed",
         "attributes.segment: retiree is not one of student"),
        ("summer", False, "out_of_window",
         "dates: runs from 2026-07-01 00:00 until 2030-01-01 00:00 (Asia/Shanghai)"),
        ("tiny-2x", False, "no_reward", "the campaign's type gives no reward for this event"),
        ("weekends", False, "out_of_window",
         "hours: Monday 12:00 in Asia/Shanghai is outside the campaign's hours"),
        ("win-back", False, "condition_failed",
         "user.inactive_days: 14 days since the last payment, 30 needed"),
    ]
    # a payment without the fields the conditions name
    bare = payment("q", "300.00", user_id="u_new", at=MONDAY_NOON)
    reasons = {entry[0]: entry[2:] for entry in wallet.explain(bare)}
    assert reasons["dining"] == ("condition_failed", "mcc: none given is not one of 5812, 5814")
    assert reasons["students"] == ("condition_failed", "channels: none given is not one of app")
    assert reasons["win-back"] == (
        "condition_failed", "user.inactive_days: the user has never paid (30 days since a "
                            "payment needed)")
    assert reasons["new-users"] == ("applied", "applied")
    assert reasons["big-bills"] == ("applied", "applied")
    assert reasons["tiny-2x"] == ("applied", "applied")


def held_out_user(campaign_id: str, percent: int) -> str:
    """The first of u_0, u_1, ... in the campaign's control group (the documented hash)."""
    return next(f"u_{n}" for n in range(1000)
                if holdout_bucket(campaign_id, f"u_{n}") < percent * 100)


LIMITED = yaml(
    campaign("once", "holiday_discount", "{amount_off: \"1.00\"}", "limits: {per_user: 1}\n"),
    campaign("daily", "holiday_discount", "{amount_off: \"2.00\"}",
             "limits: {per_user_daily: 1}\n"),
    campaign("stock", "holiday_discount", "{amount_off: \"3.00\"}",
             "limits: {max_redemptions: 1}\n"),
    campaign("budgeted", "holiday_discount", "{amount_off: \"4.00\"}",
             "budget: {amount: \"5.00\"}\n"),
    campaign("control", "holiday_discount", "{amount_off: \"5.00\"}", "holdout: 50\n"),
)


@sqlite_only
def test_limits_budgets_and_holdouts(wallet):
    wallet.campaigns(LIMITED)
    user = held_out_user("control", 50)
    wallet.record(payment("p1", "100.00", user_id=user, at="2026-06-15T09:00:00+08:00"))
    body = payment("q", "100.00", user_id=user, at=MONDAY_NOON)
    assert wallet.explain(body) == [
        ("budgeted", False, "budget_exhausted", "no room left in the campaign's budget"),
        ("control", False, "held_out", "the user is in the campaign's 50% control group"),
        ("daily", False, "limit_reached", "per_user_daily: 1 of 1 used on 2026-06-15"),
        ("once", False, "limit_reached", "per_user: 1 of 1 used"),
        ("stock", False, "budget_exhausted", "no room left in the campaign's max_redemptions"),
    ]
    # the next day, the daily limit has room again
    tomorrow = payment("q", "100.00", user_id=user, at="2026-06-16T12:00:00+08:00")
    assert [entry[:3] for entry in wallet.explain(tomorrow)][2] == ("daily", True, "applied")


@sqlite_only
def test_a_fully_discounted_payment_and_an_exchange(wallet):
    wallet.campaigns(yaml(
        campaign("big", "holiday_discount", "{amount_off: \"50.00\"}", "priority: 9\n"),
        campaign("small", "holiday_discount", "{amount_off: \"1.00\"}"),
        campaign("mall", "points_exchange", "{cost_points: 10, cashback: \"1.00\"}")))
    assert wallet.explain(payment("q", "30.00", at=MONDAY_NOON)) == [
        ("big", True, "applied", "applied"),
        ("small", False, "no_reward", "nothing of the payment was left to discount"),
    ]
    wallet.record(payment("p1", "100.00", at="2026-06-01T12:00:00+08:00"))
    exchange = {"event_id": "x", "type": "redemption", "user_id": "u_1",
                "occurred_at": MONDAY_NOON, "campaign_id": "mall"}
    assert wallet.explain(exchange) == [("mall", True, "applied", "applied")]
    # a burn (points spent on no exchange) is evaluated against no campaign
    burn = {**{key: value for key, value in exchange.items() if key != "campaign_id"},
            "points": 10}
    assert wallet.explain(burn) == []


@sqlite_only
def test_without_explain_the_answer_is_unchanged_and_bad_values_get_422(wallet):
    wallet.campaigns(RANKED)
    body = payment("q", "100.00", at=MONDAY_NOON)
    plain = wallet.quote(body)
    off = wallet.quote(body, "?explain=false")
    assert plain.status_code == off.status_code == 200
    assert off.data == plain.data
    assert "explain" not in json.loads(plain.data)
    for query, message in (("?explain=yes", "must be true or false"),
                           ("?explain=True", "must be true or false"),
                           ("?explain=", "must be true or false"),
                           ("?explain=true&explain=false", "give it once")):
        response = wallet.quote(body, query)
        assert response.status_code == 422, query
        assert response.get_json()["error"]["fields"] == {"explain": [message]}, query


def test_every_reason_is_documented_and_described():
    from pathlib import Path

    from promo_engine.api.openapi import build_spec
    from promo_engine.core.explain import REASONS
    section = (Path(__file__).resolve().parent.parent / "docs" / "support.md").read_text()
    assert [reason for reason in REASONS if f"| `{reason}` |" not in section] == []
    doc = build_spec(["activation", "payment", "redemption"], "CNY")
    parameters = doc["paths"]["/v1/quote"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["schema"]["enum"]) for p in parameters] == [
        ("explain", "query", ["true", "false"])]
    explained = doc["components"]["schemas"]["Explained"]
    assert explained["properties"]["reason"]["enum"] == list(REASONS)
    assert sorted(explained["required"]) == ["applied", "campaign_id", "detail", "name",
                                             "reason"]


def test_the_cli_asks_for_an_explanation(tmp_path):
    """`promo-engine events quote --explain` through a real `serve` (SQLite)."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from test_serve import ENV_VARS, SECRET_KEY, free_port
    cli = str(Path(sys.executable).with_name("promo-engine"))
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}", SECRET_KEY=SECRET_KEY)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([cli, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    (tmp_path / "c.yaml").write_text(RANKED)
    assert run("campaigns", "apply", str(tmp_path / "c.yaml")).returncode == 0
    client = json.loads(run("clients", "create", "wallet-backend", "--json").stdout)
    port = free_port()
    env.update(PROMO_URL=f"http://127.0.0.1:{port}", PROMO_KEY_ID=client["key_id"],
               PROMO_SECRET=client["secret"])
    server = subprocess.Popen([cli, "serve", "--port", str(port), "--workers", "1"], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{env['PROMO_URL']}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "promo-engine serve did not start"
                time.sleep(0.2)
        body = json.dumps(payment("q", "100.00", merchant_id="m_900", at=MONDAY_NOON))
        plain = run("events", "quote", body)
        explained = run("events", "quote", "--explain", body)
        assert plain.returncode == explained.returncode == 0, explained.stderr
        assert "explain" not in json.loads(plain.stdout)
        assert [(e["campaign_id"], e["reason"]) for e in json.loads(explained.stdout)["explain"]
                ] == [("weekday-2x", "beaten_by_multiplier"), ("vip-3x", "beaten_by_multiplier"),
                      ("store-exclusive", "not_at_merchant"), ("low-discount", "applied"),
                      ("low-4x", "applied"), ("other-store", "applied")]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_budgets_in_redis_on_postgresql(postgres_url, redis_prefix, tmp_path):
    """With the campaigns' counters in Redis, the quote's read-only gate reads them there."""
    from conftest import make_redis_settings, running_app
    with running_app(make_redis_settings(postgres_url, redis_prefix)) as app:
        wallet = Wallet(app, tmp_path)
        wallet.campaigns(LIMITED)
        wallet.record(payment("p1", "100.00", user_id="u_a", at="2026-06-15T09:00:00+08:00"))
        body = payment("q", "100.00", user_id="u_b", at=MONDAY_NOON)
        assert holdout_bucket("control", "u_b") == 688  # below 5,000: held out
        assert wallet.explain(body) == [
            ("budgeted", False, "budget_exhausted", "no room left in the campaign's budget"),
            ("control", False, "held_out", "the user is in the campaign's 50% control group"),
            ("daily", True, "applied", "applied"),
            ("once", True, "applied", "applied"),
            ("stock", False, "budget_exhausted",
             "no room left in the campaign's max_redemptions"),
        ]
