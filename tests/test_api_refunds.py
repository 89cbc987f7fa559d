"""Refunds reverse rewards in proportion, exactly; budgets and limits come back."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund, without_ids

CAMPAIGNS = f"""
id: dining-15
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}budget: {{amount: "20.00"}}
limits: {{per_user: 1}}
params: {{percent: 15}}
---
id: triple
type: points_multiplier
merchants: [m_100]
{OPEN_RANGE}params: {{multiplier: 3}}
"""



@pytest.fixture
def settings(counters_settings):
    """Every rule here holds with counters in the database and with counters in Redis."""
    return counters_settings

@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    return new_wallet_client(app)


def settle(reservations) -> None:
    """Wait until no reservation is in flight (a confirmation that Redis did not answer in
    time, on a loaded machine, leaves one until its deadline), and for Redis's clock to
    pass the last confirmation's millisecond: reconciliation counts a reservation confirmed
    at or after its clock reading once more (upwards, by design), which would make the
    counters differ from the ledger here for a reason that is not the one tested."""
    deadline = time.monotonic() + 15
    while reservations.client.zcard(reservations.inflight_key) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.002)


def usage(app, campaign_id):
    """(spent, redemptions) where the guard keeps them; with Redis, also checked against
    the database's rows once reconciliation has rebuilt them from the ledger."""
    from promo_engine.campaigns.reconcile import reconcile
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage
    from promo_engine.service import promo_service
    with app.app_context():
        reservations = promo_service(app).reservations
        if reservations is not None:
            held = reservations.counters([campaign_id])[campaign_id]
            settle(reservations)
            reconcile(reservations)
            assert reservations.counters([campaign_id])[campaign_id] == held
        row = db.session.get(CampaignUsage, campaign_id)
        assert reservations is None or (row.spent, row.redemptions) == held
        return row.spent, row.redemptions


def test_partial_refund_reverses_in_proportion(wallet):
    paid = wallet.event(**payment("pay_1", "100.00")).get_json()
    ids = {r["campaign_id"]: r["reward_id"] for r in paid["rewards"]}
    assert paid["points_balance"] == 300
    response = wallet.event(**refund("ref_1", "pay_1", "25.00"))
    assert response.status_code == 201
    body = response.get_json()
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": -25},
        {"campaign_id": "dining-15", "kind": "discount", "amount": "-3.75", "currency": "CNY"},
        {"campaign_id": "triple", "kind": "points", "points": -50},
    ]
    assert [r["reverses"] for r in body["rewards"]] == [ids[None], ids["dining-15"], ids["triple"]]
    assert body["points_balance"] == 225


def test_refunds_adding_up_to_the_payment_reverse_exactly(app, wallet):
    wallet.event(**payment("pay_1", "33.33"))  # 33 base, 66 extra, discount 5.00
    totals = {"points": 0, "discount": 0}
    for n, amount in enumerate(["10.00", "10.00", "13.32", "0.01"], start=1):
        body = wallet.event(**refund(f"ref_{n}", "pay_1", amount)).get_json()
        for reward in body["rewards"]:
            if reward["kind"] == "points":
                totals["points"] += reward["points"]
            else:
                totals["discount"] += Decimal(reward["amount"])
    assert totals == {"points": -99, "discount": Decimal("-5.00")}
    assert wallet.get("/v1/users/u_1/points").get_json()["points_balance"] == 0
    assert usage(app, "dining-15") == (0, 0)


def test_refund_over_the_payment_is_refused_and_changes_nothing(wallet):
    wallet.event(**payment("pay_1", "50.00"))
    wallet.event(**refund("ref_1", "pay_1", "30.00"))
    response = wallet.event(**refund("ref_2", "pay_1", "20.01"))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "refund_exceeds_payment"
    assert error["fields"] == {"amount": ["refunds would exceed the payment; at most 20.00 is left to refund"]}
    assert wallet.event(**refund("ref_2", "pay_1", "20.00")).status_code == 201


def test_refund_of_unknown_payment(wallet):
    response = wallet.event(**refund("ref_1", "nope", "1.00"))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unknown_payment"


def test_refund_of_another_users_payment(wallet):
    wallet.event(**payment("pay_1", "50.00", user_id="alice"))
    response = wallet.event(**refund("ref_1", "pay_1", "1.00", user_id="mallory"))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unknown_payment"
    assert wallet.get("/v1/users/alice/points").get_json()["points_balance"] == 150


def test_refund_of_a_refund_is_unknown_payment(wallet):
    wallet.event(**payment("pay_1", "50.00"))
    wallet.event(**refund("ref_1", "pay_1", "1.00"))
    response = wallet.event(**refund("ref_2", "ref_1", "1.00"))
    assert response.get_json()["error"]["code"] == "unknown_payment"


def test_refunded_money_returns_to_the_budget(app, wallet):
    wallet.event(**payment("pay_1", "100.00", user_id="a"))  # 15.00 of 20.00
    assert usage(app, "dining-15") == (1500, 1)
    blocked = wallet.event(**payment("pay_2", "100.00", user_id="b")).get_json()
    assert [r["campaign_id"] for r in blocked["rewards"]] == [None, "triple"]
    wallet.event(**refund("ref_1", "pay_1", "40.00", user_id="a"))  # 6.00 back
    assert usage(app, "dining-15") == (900, 1)
    granted = wallet.event(**payment("pay_3", "60.00", user_id="b")).get_json()
    assert without_ids(granted["rewards"])[1] == {
        "campaign_id": "dining-15", "kind": "discount", "amount": "9.00", "currency": "CNY"}
    assert usage(app, "dining-15") == (1800, 2)


def test_full_refund_frees_the_per_user_limit(app, wallet):
    first = wallet.event(**payment("pay_1", "10.00")).get_json()
    assert "dining-15" in [r["campaign_id"] for r in first["rewards"]]
    second = wallet.event(**payment("pay_2", "10.00")).get_json()
    assert "dining-15" not in [r["campaign_id"] for r in second["rewards"]]
    wallet.event(**refund("ref_1", "pay_1", "10.00"))
    assert usage(app, "dining-15") == (0, 0)
    third = wallet.event(**payment("pay_3", "10.00")).get_json()
    assert "dining-15" in [r["campaign_id"] for r in third["rewards"]]


def test_partial_refund_keeps_the_per_user_count(wallet):
    wallet.event(**payment("pay_1", "10.00"))
    wallet.event(**refund("ref_1", "pay_1", "9.99"))
    again = wallet.event(**payment("pay_2", "10.00")).get_json()
    assert "dining-15" not in [r["campaign_id"] for r in again["rewards"]]


def test_full_refund_takes_back_every_point(wallet):
    wallet.event(**payment("pay_1", "100.00"))
    body = wallet.event(**refund("ref_1", "pay_1", "100.00")).get_json()
    assert body["points_balance"] == 0
    assert sum(r["points"] for r in body["rewards"] if r["kind"] == "points") == -300


def test_refund_replay_is_idempotent(wallet):
    wallet.event(**payment("pay_1", "100.00"))
    first = wallet.event(**refund("ref_1", "pay_1", "50.00"))
    again = wallet.event(**refund("ref_1", "pay_1", "50.00"))
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert wallet.get("/v1/users/u_1/points").get_json()["points_balance"] == 150
