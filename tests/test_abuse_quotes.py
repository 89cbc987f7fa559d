"""Quotes, offers and `quote?explain` agree with events about the abuse controls: a device's
`per_device` / `per_device_daily` limits (judged only when the device is named), the
denylist, and the program's risk policy (its daily counts, its money caps, its holds). Each
test quotes an event, then records the same event and expects the same rewards; on SQLite
and PostgreSQL, with the campaigns' counters in the database and in Redis. The service's
clock is fixed at NOW (the events' day) for the offers. The last tests explain the policy's
money caps in the pure core, from counters given (a RulesEngine with `risk_policy=`).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from promo_engine.core.engine import RulesEngine
from promo_engine.core.explain import explain_evaluation
from promo_engine.core.risk import RiskCounters, RiskPolicy

from conftest import reused_schema_url
from factories import (bonus, builtin_registry, campaign_ids, discount, make_user, new_user,
                       raise_on_error)
from factories import payment as core_payment
from wallet import OPEN_RANGE, new_wallet_client, payment

NOW = "2026-06-15T08:00:00+00:00"  # Monday 16:00 in Shanghai, after the events
DAY = "2026-06-15T12:00:00+08:00"
LATER = "2026-06-15T13:00:00+08:00"

CAMPAIGNS = f"""
id: five-off
name: Five off
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}limits: {{per_user: 3, per_device: 1}}
priority: 100
params: {{amount_off: "5.00"}}
---
id: double
name: Double points
type: points_multiplier
{OPEN_RANGE}limits: {{per_device_daily: 2}}
params: {{multiplier: 2}}
---
id: mall
name: Mall cashback
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 50, cashback: "3.00"}}
"""
BASE = {"campaign_id": None, "kind": "points", "points": 100}
FIVE_OFF = {"campaign_id": "five-off", "kind": "discount", "amount": "5.00", "currency": "CNY"}
DOUBLE = {"campaign_id": "double", "kind": "points", "points": 100}
DENIED = "the user or the device is on the denylist"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def settings(counters_settings):
    return counters_settings


class Wallet:
    def __init__(self, app, tmp_path):
        self.app = app
        self.tmp_path = tmp_path
        self.client = new_wallet_client(app)
        from promo_engine.service import promo_service
        fixed = datetime.fromisoformat(NOW)
        with app.app_context():
            promo_service(app).clock = lambda: fixed

    def apply(self, yaml_text: str) -> None:
        """Validate and apply campaigns (and a risk policy) as `campaigns apply` does."""
        from promo_engine.campaigns.files import load_paths
        from promo_engine.campaigns.store import apply_campaigns
        from promo_engine.service import promo_service
        path = self.tmp_path / "program.yaml"
        path.write_text(yaml_text)
        with self.app.app_context():
            service = promo_service(self.app)
            loaded = load_paths([path], registry=service.registry,
                                currency=service.settings.currency,
                                default_timezone=service.settings.timezone)
            assert not loaded.problems, [str(p) for p in loaded.problems]
            apply_campaigns(loaded.campaigns, risk_policy=loaded.risk_policy)
            service.invalidate()

    def deny(self, kind: str, value: str, *, remove: bool = False) -> None:
        from promo_engine.ledger import denylist
        from promo_engine.ledger.extensions import db
        with self.app.app_context():
            if remove:
                denylist.remove(db.session, kind, value, actor="risk@bank")
            else:
                denylist.add(db.session, kind, value, reason="reward hunting",
                             actor="risk@bank")
            db.session.commit()
            denylist.directory.invalidate()  # this process changed it

    def quote(self, body: dict) -> tuple[list[dict], dict[str, tuple[str, str]]]:
        """The quote's rewards, and its explanation: campaign -> (reason, detail)."""
        response = self.client.post("/v1/quote?explain=true", body)
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        return answer["rewards"], {e["campaign_id"]: (e["reason"], e["detail"])
                                   for e in answer["explain"]}

    def record(self, body: dict) -> list[dict]:
        response = self.client.post("/v1/events", body)
        assert response.status_code == 201, response.get_json()
        return [{k: v for k, v in r.items() if k != "reward_id"}
                for r in response.get_json()["rewards"]]

    def quoted_and_recorded(self, body: dict) -> tuple[list[dict], dict]:
        """Quote the event, record it, and check the event got exactly what was quoted."""
        rewards, explained = self.quote(body)
        assert self.record(body) == rewards
        return rewards, explained

    def offers(self, user_id: str, query: str = "") -> list[tuple[str, int | None]]:
        path = f"/v1/users/{user_id}/offers" + (f"?{query}" if query else "")
        response = self.client.get(path)
        assert response.status_code == 200, response.get_json()
        return [(o["campaign_id"], o["uses_left"]) for o in response.get_json()["offers"]]


@pytest.fixture
def wallet(app, tmp_path):
    wallet = Wallet(app, tmp_path)
    wallet.apply(CAMPAIGNS)
    return wallet


def test_device_limits_in_quotes_offers_and_explain(wallet):
    assert wallet.offers("u_2", "device_id=d_1") == [("five-off", 1), ("double", 2),
                                                     ("mall", None)]
    rewards, explained = wallet.quoted_and_recorded(payment("p1", "100.00", device_id="d_1"))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]
    assert explained == {"five-off": ("applied", "applied"), "double": ("applied", "applied")}

    # another user on d_1: five-off's per_device is used; double has one use left today
    assert wallet.offers("u_2", "device_id=d_1") == [("double", 1), ("mall", None)]
    # without the device, its limits are not judged (an event without one is not limited)
    assert wallet.offers("u_2") == [("five-off", 3), ("double", None), ("mall", None)]
    rewards, _ = wallet.quote(payment("q", "100.00", user_id="u_2"))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]
    rewards, explained = wallet.quoted_and_recorded(
        payment("p2", "100.00", user_id="u_2", device_id="d_1", at=LATER))
    assert rewards == [BASE, DOUBLE]
    assert explained == {
        "five-off": ("device_limit_reached", "per_device: 1 of 1 used on device d_1"),
        "double": ("applied", "applied")}

    # double's two uses of the day on d_1 are gone too
    assert wallet.offers("u_3", "device_id=d_1") == [("mall", None)]
    assert wallet.offers("u_3", "device_id=d_2") == [("five-off", 1), ("double", 2),
                                                     ("mall", None)]
    rewards, explained = wallet.quoted_and_recorded(
        payment("p3", "100.00", user_id="u_3", device_id="d_1", at=LATER))
    assert rewards == [BASE]
    assert explained == {
        "five-off": ("device_limit_reached", "per_device: 1 of 1 used on device d_1"),
        "double": ("device_limit_reached",
                   "per_device_daily: 2 of 2 used on device d_1 on 2026-06-15")}
    # the user's own limit comes first, as the engine asks it first
    for n in (4, 5):
        wallet.record(payment(f"p{n}", "100.00", user_id="u_4", device_id=f"d_{n}"))
    _, explained = wallet.quote(payment("q", "100.00", user_id="u_4", device_id="d_1"))
    assert explained["five-off"] == ("device_limit_reached",
                                     "per_device: 1 of 1 used on device d_1")
    wallet.record(payment("p6", "100.00", user_id="u_4", device_id="d_6"))
    _, explained = wallet.quote(payment("q", "100.00", user_id="u_4", device_id="d_1"))
    assert explained["five-off"] == ("limit_reached", "per_user: 3 of 3 used")


def test_a_device_limit_holds_an_exchange_back(wallet):
    for user_id in ("u_1", "u_2"):
        wallet.record(payment(f"p-{user_id}", "100.00", user_id=user_id))
    redemption = {"event_id": "x1", "type": "redemption", "user_id": "u_1",
                  "occurred_at": LATER, "campaign_id": "mall", "device_id": "d_1"}
    wallet.apply(CAMPAIGNS.replace("params: {cost_points: 50",
                                   "limits: {per_device: 1}\nparams: {cost_points: 50"))
    assert wallet.offers("u_2", "device_id=d_1") == [("five-off", 1), ("double", 2),
                                                     ("mall", 1)]
    rewards, explained = wallet.quoted_and_recorded(redemption)
    assert rewards == [
        {"campaign_id": "mall", "kind": "points", "points": -50},
        {"campaign_id": "mall", "kind": "cashback", "amount": "3.00", "currency": "CNY"}]
    assert explained == {"mall": ("applied", "applied")}
    assert wallet.offers("u_2", "device_id=d_1") == [("five-off", 1), ("double", 2)]
    again = dict(redemption, event_id="x2", user_id="u_2")
    for path in ("/v1/quote", "/v1/events"):  # refused alike
        response = wallet.client.post(path, again)
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "offer_unavailable"


def test_the_denylist_in_quotes_offers_and_explain(wallet):
    wallet.record(payment("p0", "100.00", user_id="u_bad"))  # points to spend
    wallet.deny("user", "u_bad")
    wallet.deny("device", "d_bad")
    assert wallet.offers("u_bad") == []
    assert wallet.offers("u_bad", "device_id=d_ok") == []
    assert wallet.offers("u_1", "device_id=d_bad") == []
    assert wallet.offers("u_1") == [("five-off", 3), ("double", None), ("mall", None)]

    denied = {"five-off": ("denylisted", DENIED), "double": ("denylisted", DENIED)}
    rewards, explained = wallet.quoted_and_recorded(payment("p1", "100.00", user_id="u_bad"))
    assert (rewards, explained) == ([BASE], denied)
    rewards, explained = wallet.quoted_and_recorded(
        payment("p2", "100.00", user_id="u_1", device_id="d_bad"))
    assert (rewards, explained) == ([BASE], denied)
    rewards, explained = wallet.quoted_and_recorded(
        payment("p3", "100.00", user_id="u_1", device_id="d_ok"))
    assert (rewards, explained) == ([BASE, FIVE_OFF, DOUBLE], {
        "five-off": ("applied", "applied"), "double": ("applied", "applied")})

    exchange = {"event_id": "x1", "type": "redemption", "user_id": "u_bad",
                "occurred_at": LATER, "campaign_id": "mall"}
    for path in ("/v1/quote", "/v1/events"):  # refused alike
        response = wallet.client.post(path, exchange)
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "offer_unavailable"
        assert response.get_json()["error"]["message"] == DENIED

    wallet.deny("user", "u_bad", remove=True)
    assert wallet.offers("u_bad") == [("five-off", 2), ("double", None), ("mall", None)]
    rewards, _ = wallet.quoted_and_recorded(payment("p4", "100.00", user_id="u_bad",
                                                    at=LATER))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]


def test_the_risk_policys_daily_counts_in_quotes_offers_and_explain(wallet):
    wallet.apply(CAMPAIGNS + """---
risk_policy:
  per_user_daily: {rewarded_events: 2}
  per_device_daily: {users: 1}
""")
    rewards, _ = wallet.quoted_and_recorded(payment("p1", "100.00", device_id="d_1"))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]

    # a second user on d_1: the device's one rewarded user of the day is taken
    users = "the device's rewarded users today reached the risk policy's 1"
    assert wallet.offers("u_2", "device_id=d_1") == []
    assert wallet.offers("u_2") == [("five-off", 3), ("double", None), ("mall", None)]
    rewards, explained = wallet.quoted_and_recorded(
        payment("p2", "100.00", user_id="u_2", device_id="d_1", at=LATER))
    # a campaign stopped by its own rule keeps its own reason
    assert (rewards, explained) == ([BASE], {
        "five-off": ("device_limit_reached", "per_device: 1 of 1 used on device d_1"),
        "double": ("risk_limit_reached", users)})

    # u_1 again on d_1 (known to the device): the second rewarded event of the day ...
    assert wallet.offers("u_1", "device_id=d_1") == [("double", 1), ("mall", None)]
    rewards, _ = wallet.quoted_and_recorded(payment("p3", "100.00", device_id="d_1", at=LATER))
    assert rewards == [BASE, DOUBLE]
    # ... and no third
    events = "the user's rewarded events today reached the risk policy's 2"
    assert wallet.offers("u_1") == []
    rewards, explained = wallet.quoted_and_recorded(
        payment("p4", "100.00", merchant_id="m_200", at=LATER))
    assert (rewards, explained) == ([BASE], {
        "five-off": ("not_at_merchant", "only at merchants m_100"),
        "double": ("risk_limit_reached", events)})


def test_the_risk_policys_money_caps_and_holds_in_quotes_offers_and_explain(wallet):
    wallet.apply(CAMPAIGNS + """---
risk_policy:
  per_user_daily: {reward_amount: "10.00"}
  hold: {cashback_above: "2.00"}
""")
    rewards, _ = wallet.quoted_and_recorded(payment("p1", "100.00"))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]
    rewards, _ = wallet.quoted_and_recorded(payment("p2", "100.00", at=LATER))
    assert rewards == [BASE, FIVE_OFF, DOUBLE]
    # 10.00 of campaign money today: money campaigns are held back, points ones are not
    assert wallet.offers("u_1") == [("double", None)]
    rewards, explained = wallet.quoted_and_recorded(payment("p3", "100.00", at=LATER))
    assert (rewards, explained) == ([BASE, DOUBLE], {
        "five-off": ("risk_limit_reached",
                     "the user's campaign rewards today would exceed the risk policy's 10.00"),
        "double": ("applied", "applied")})

    # another user's exchange: its cashback above 2.00 is held, in the quote as in the event
    assert wallet.offers("u_2") == [("five-off", 3), ("double", None), ("mall", None)]
    wallet.record(payment("p-u_2", "100.00", user_id="u_2", merchant_id="m_200"))
    rewards, explained = wallet.quoted_and_recorded(
        {"event_id": "x1", "type": "redemption", "user_id": "u_2", "occurred_at": LATER,
         "campaign_id": "mall"})
    assert rewards == [
        {"campaign_id": "mall", "kind": "points", "points": -50},
        {"campaign_id": "mall", "kind": "cashback", "amount": "3.00", "currency": "CNY",
         "held": True}]
    assert explained == {"mall": ("applied", "applied, held for review: cashback above the "
                                             "risk policy's 2.00")}


# --- the explanation of the risk policy's money caps, in the pure core -----------------------

def _engine(*campaigns, policy):
    return RulesEngine.compile(campaigns, builtin_registry(), currency="CNY",
                               points_per_unit=Decimal(1), minor_digits=2,
                               on_error=raise_on_error, risk_policy=policy)


def _explained(engine, event, user) -> tuple[list, dict[str, tuple[str, str]]]:
    decision, explained = explain_evaluation(engine, event, user)
    assert decision == engine.evaluate(event, user)  # the explanation's decision is the engine's
    return campaign_ids(decision), {e.campaign_id: (e.reason, e.detail) for e in explained}


def test_explain_names_the_devices_money_cap_and_lets_a_smaller_reward_through():
    engine = _engine(discount("big", amount_off="5.00", priority=10),
                     discount("small", amount_off="2.00", priority=5),
                     policy=RiskPolicy(device_daily_reward_amount=Decimal("8.00")))
    user = make_user(risk=RiskCounters(device_day_minor=400))  # 4.00 left on the device
    assert _explained(engine, core_payment(device_id="phone-1"), user) == (
        [None, "small"],
        {"big": ("risk_limit_reached",
                 "the device's campaign rewards today would exceed the risk policy's 8.00"),
         "small": ("applied", "applied")})
    # without a device the device's cap does not apply
    assert _explained(engine, core_payment(), user) == (
        [None, "big", "small"], {"big": ("applied", "applied"), "small": ("applied", "applied")})


def test_explain_names_the_monthly_cashback_cap():
    engine = _engine(bonus("cb", on="first_payment", cashback="30.00"),
                     policy=RiskPolicy(user_monthly_cashback=Decimal("50.00")))
    near_the_cap = new_user(risk=RiskCounters(user_month_cashback_minor=2_001))
    assert _explained(engine, core_payment(), near_the_cap) == (
        [None], {"cb": ("risk_limit_reached",
                        "the user's cashback this month would exceed the risk policy's 50.00")})
    assert _explained(engine, core_payment(), new_user(
        risk=RiskCounters(user_month_cashback_minor=2_000))) == (
        [None, "cb"], {"cb": ("applied", "applied")})


def test_explain_tells_a_discount_with_nothing_left_from_a_money_cap():
    engine = _engine(discount("all", amount_off="5.00", priority=10),
                     discount("more", amount_off="1.00", priority=5),
                     policy=RiskPolicy(user_daily_reward_amount=Decimal("100.00")))
    assert _explained(engine, core_payment("5.00"), make_user()) == (
        [None, "all"], {"all": ("applied", "applied"),
                        "more": ("no_reward", "nothing of the payment was left to discount")})
