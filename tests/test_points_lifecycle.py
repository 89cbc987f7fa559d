"""The points lifecycle through the API, with exact values (contract: "Points: pending,
expiry and spending", "Refunds"): the lots payments earn and the `expiring` list, the
spending order, redemptions (burn and exchange) and their refusals, cancels, points paying
part of a payment, and refunds taking points back, into a debt only for points spent.
Each test ends by deriving every user's points from the rows alone (`check_ledger`).
Pending points, expiry, time zones and a long mixed run: test_points_expiry.py.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from conftest import reused_schema_url
from points_ledger import (EXCHANGES, TRIPLE, WELCOME, cancel, check_ledger, error,
                           ledger_counts, lots, parse, points_app, points_view, redemption,
                           remaining)
from wallet import OPEN_RANGE, activation, payment, refund, without_ids


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """SQLite and PostgreSQL, an emptied schema per test (counters_settings uses it too)."""
    return reused_schema_url(request, tmp_path)


# -- lots and the expiring list -------------------------------------------------------------

@pytest.mark.parametrize("months, earned, expires", [
    (12, "2026-03-15T14:00:00+08:00", "2027-03-15T00:00:00+08:00"),  # the contract's example
    (12, "2026-03-14T16:00:00Z", "2027-03-15T00:00:00+08:00"),  # already the 15th in Shanghai
    (12, "2026-03-14T15:59:59Z", "2027-03-14T00:00:00+08:00"),  # still the 14th there
    (13, "2026-01-31T14:00:00+08:00", "2027-02-28T00:00:00+08:00"),  # no Feb 31st
    (25, "2026-01-31T09:00:00+08:00", "2028-02-29T00:00:00+08:00"),  # a leap year's Feb 29th
])
def test_payment_points_are_lots_that_expire_at_local_midnight(database_url, tmp_path,
                                                              months, earned, expires):
    with points_app(database_url, tmp_path, TRIPLE, points_expire_months=months) as (app, wallet):
        body = wallet.event(**payment("p_1", "100.00", at=earned)).get_json()
        assert without_ids(body["rewards"]) == [
            {"campaign_id": None, "kind": "points", "points": 100},
            {"campaign_id": "triple", "kind": "points", "points": 200}]
        assert body["points_balance"] == 300
        view = points_view(wallet)
        assert view["expiring"] == [{"points": 300, "expires_at": expires}]
        assert (view["points_balance"], view["pending_points"]) == (300, 0)
        assert [(lot["campaign_id"], lot["points"], lot["remaining"], lot["pending"],
                 lot["expires_at"]) for lot in lots(app)] == [
            (None, 100, 100, False, parse(expires)), ("triple", 200, 200, False, parse(expires))]
        check_ledger(app, wallet)


def test_expiring_groups_available_points_by_instant_soonest_first(database_url, tmp_path):
    with points_app(database_url, tmp_path, TRIPLE, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_mar_a", "10.00", merchant_id="m_200",
                               at="2026-03-15T09:00:00+08:00"))
        wallet.event(**payment("p_jan", "20.00", merchant_id="m_200",
                               at="2026-01-10T10:00:00+08:00"))
        wallet.event(**payment("p_mar_b", "5.00", merchant_id="m_200",
                               at="2026-03-15T23:59:59+08:00"))
        wallet.event(**payment("p_jun", "7.00", at="2026-06-01T08:00:00+08:00"))
        assert points_view(wallet)["expiring"] == [
            {"points": 20, "expires_at": "2027-01-10T00:00:00+08:00"},
            {"points": 15, "expires_at": "2027-03-15T00:00:00+08:00"},
            {"points": 21, "expires_at": "2027-06-01T00:00:00+08:00"}]
        assert wallet.event(**redemption("burn_1", points=25)).get_json()["points_balance"] == 31
        assert points_view(wallet)["expiring"] == [
            {"points": 10, "expires_at": "2027-03-15T00:00:00+08:00"},
            {"points": 21, "expires_at": "2027-06-01T00:00:00+08:00"}]
        assert remaining(app) == {"p_mar_a": 5, "p_jan": 0, "p_mar_b": 5, "p_jun": 7,
                                  "p_jun/triple": 14}
        check_ledger(app, wallet)


def test_spending_takes_the_soonest_expiry_first_never_expiring_last(database_url, tmp_path):
    """A lot that never expires (earned while PROMO_POINTS_EXPIRE_MONTHS was 0) is spent
    last; lots expiring at one instant go oldest first."""
    with points_app(database_url, tmp_path) as (app, wallet):
        wallet.event(**payment("p_never", "100.00", at="2026-01-02T10:00:00+08:00"))
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        for event_id, at in [("p_may", "2026-05-01T10:00:00+08:00"),
                             ("p_feb_1", "2026-02-01T09:00:00+08:00"),
                             ("p_feb_2", "2026-02-01T21:00:00+08:00")]:
            wallet.event(**payment(event_id, "100.00", at=at))
        assert points_view(wallet)["expiring"] == [
            {"points": 200, "expires_at": "2027-02-01T00:00:00+08:00"},
            {"points": 100, "expires_at": "2027-05-01T00:00:00+08:00"}]
        steps = [(150, {"p_never": 100, "p_may": 100, "p_feb_1": 0, "p_feb_2": 50}),
                 (100, {"p_never": 100, "p_may": 50, "p_feb_1": 0, "p_feb_2": 0}),
                 (100, {"p_never": 50, "p_may": 0, "p_feb_1": 0, "p_feb_2": 0}),
                 (50, {"p_never": 0, "p_may": 0, "p_feb_1": 0, "p_feb_2": 0})]
        for n, (points, after) in enumerate(steps):
            response = wallet.event(**redemption(f"burn_{n}", points=points))
            assert response.status_code == 201, response.get_json()
            assert remaining(app) == after
            check_ledger(app, wallet)
        assert points_view(wallet)["expiring"] == []
        assert error(wallet.event(**redemption("burn_x", points=1))) == \
            (422, "insufficient_points", {"points": ["1 points are needed and 0 are available"]})


# -- redemptions ----------------------------------------------------------------------------

def test_burn_answers_its_spend_and_echoes_the_reference(database_url, tmp_path):
    with points_app(database_url, tmp_path) as (app, wallet):
        wallet.event(**payment("p_1", "100.00"))
        response = wallet.event(**redemption("burn_1", points=30, reference="mall-order:7"))
        assert response.status_code == 201
        body = response.get_json()
        spent_id = body["rewards"][0]["reward_id"]
        assert body == {"event_id": "burn_1", "rewards": [
            {"reward_id": spent_id, "campaign_id": None, "kind": "points", "points": -30}],
            "points_balance": 70, "reference": "mall-order:7"}
        replay = wallet.post("/v1/events", wallet.last_body)
        assert (replay.status_code, replay.get_json()) == (200, body)
        assert replay.headers["Idempotent-Replayed"] == "true"
        plain = wallet.event(**redemption("burn_2", points=70)).get_json()
        assert set(plain) == {"event_id", "rewards", "points_balance"}
        assert plain["points_balance"] == 0
        entry = points_view(wallet)["entries"][1]
        assert entry == {"reward_id": spent_id, "event_id": "burn_1", "campaign_id": None,
                         "kind": "points", "points": -30, "reason": "spent",
                         "created_at": entry["created_at"]}
        check_ledger(app, wallet)


def test_exchange_spends_cost_points_for_a_voucher_or_cashback(database_url, tmp_path):
    with points_app(database_url, tmp_path, EXCHANGES) as (app, wallet):
        wallet.event(**payment("p_1", "200.00"))
        body = wallet.event(**redemption("ex_1", campaign_id="mall-voucher",
                                         reference="R1")).get_json()
        assert without_ids(body["rewards"]) == [
            {"campaign_id": "mall-voucher", "kind": "points", "points": -50},
            {"campaign_id": "mall-voucher", "kind": "voucher", "voucher": {
                "amount": "10.00", "currency": "CNY", "expires_at": "2027-06-20T04:00:00Z"}}]
        assert (body["points_balance"], body["reference"]) == (150, "R1")
        code = body["rewards"][1]["voucher"]["code"]
        vouchers = wallet.get("/v1/users/u_1/vouchers").get_json()["vouchers"]
        assert vouchers == [{"code": code, "amount": "10.00", "currency": "CNY",
                             "min_amount": None, "status": "active",
                             "campaign_id": "mall-voucher", "issued_at": "2026-06-20T04:00:00Z",
                             "expires_at": "2027-06-20T04:00:00Z", "used_by_event_id": None}]
        body = wallet.event(**redemption("ex_2", campaign_id="mall-cash")).get_json()
        assert without_ids(body["rewards"]) == [
            {"campaign_id": "mall-cash", "kind": "points", "points": -40},
            {"campaign_id": "mall-cash", "kind": "cashback", "amount": "5.00", "currency": "CNY"}]
        assert body["points_balance"] == 110
        assert remaining(app) == {"p_1": 110}
        check_ledger(app, wallet)


@pytest.mark.parametrize("field", ["points", "campaign_id", "redeem_points"])
def test_insufficient_points_write_nothing_and_the_event_succeeds_later(counters_settings,
                                                                        tmp_path, field):
    request = {"points": redemption("spend", points=50),
               "campaign_id": redemption("spend", campaign_id="mall-voucher"),
               "redeem_points": payment("spend", "100.00", redeem_points=50,
                                        merchant_id="m_200")}[field]
    with points_app(counters_settings, tmp_path, EXCHANGES) as (app, wallet):
        wallet.event(**payment("p_1", "40.00"))
        before = ledger_counts(app)
        assert error(wallet.event(**request)) == (
            422, "insufficient_points", {field: ["50 points are needed and 40 are available"]})
        assert ledger_counts(app) == before
        wallet.event(**payment("p_2", "10.00"))
        response = wallet.event(**request)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["points_balance"] == {"points": 0, "campaign_id": 0,
                                                          "redeem_points": 99}[field]
        assert remaining(app) == {"p_1": 0, "p_2": 0, **({"spend": 99} if field ==
                                                           "redeem_points" else {})}
        check_ledger(app, wallet)


UNAVAILABLE = {
    "not open": (f"id: offer\ntype: points_exchange\nstarts_at: 2029-01-01T00:00:00\n"
                 f"ends_at: 2030-01-01T00:00:00\n", {}, "campaign offer is not open"),
    "not an exchange": (TRIPLE.replace("triple", "offer"), {},
                        "campaign offer is not a points exchange"),
    "dates": ("id: offer\ntype: points_exchange\nstarts_at: 2026-06-01T00:00:00\n"
              "ends_at: 2030-01-01T00:00:00\n", {"at": "2026-05-31T23:00:00+08:00"},
              "outside the campaign's dates"),
    "hours": (f"id: offer\ntype: points_exchange\n{OPEN_RANGE}windows: [{{days: [mon], "
              f"from: '10:00', to: '11:00'}}]\n", {}, "outside the campaign's hours"),
    "conditions": (f"id: offer\ntype: points_exchange\n{OPEN_RANGE}"
                   f"conditions: {{attributes: {{segment: [student]}}}}\n",
                   {"attributes": {"segment": "retired"}}, "conditions are not met"),
    "per-user limit": (f"id: offer\ntype: points_exchange\n{OPEN_RANGE}"
                       f"limits: {{per_user: 1}}\n", {}, "the user's limit"),
    "stock": (f"id: offer\ntype: points_exchange\n{OPEN_RANGE}limits: {{max_redemptions: 2}}\n",
              {}, "out of stock"),
    "budget": (f"id: offer\ntype: points_exchange\n{OPEN_RANGE}budget: {{amount: \"12.00\"}}\n",
               {}, "no budget left"),
}


@pytest.mark.parametrize("why", list(UNAVAILABLE))
def test_exchange_not_available_is_refused_saying_why(counters_settings, tmp_path, why):
    """For the limits, u_2 (or u_1 itself) takes the room first; the refusal writes
    nothing, and its message names the reason."""
    campaign, fields, says = UNAVAILABLE[why]
    if "params" not in campaign:
        campaign = campaign.replace("type: points_exchange\n",
                                    "type: points_exchange\n"
                                    "params: {cost_points: 50, cashback: \"5.00\"}\n", 1)
    with points_app(counters_settings, tmp_path, campaign) as (app, wallet):
        for user_id in ("u_1", "u_2"):
            wallet.event(**payment(f"p_{user_id}", "500.00", user_id=user_id))
        if why in ("stock", "budget", "per-user limit"):
            first = wallet.event(**redemption("first", campaign_id="offer")).get_json()
            assert first["points_balance"] == 450
        if why in ("stock", "budget"):
            assert wallet.event(**redemption("other", campaign_id="offer",
                                             user_id="u_2")).status_code == 201
        before = ledger_counts(app)
        response = wallet.event(**redemption("ex", campaign_id="offer", **fields))
        status, code, field_errors = error(response)
        assert (status, code, list(field_errors)) == (422, "offer_unavailable", ["campaign_id"])
        message = response.get_json()["error"]["message"]
        assert says in message and field_errors["campaign_id"] == [message]
        assert ("stock" in message) == (why == "stock")
        assert ("budget" in message) == (why == "budget")
        assert ledger_counts(app) == before
        check_ledger(app, wallet)


# -- cancels --------------------------------------------------------------------------------

LIMITED = f"""
id: mall-voucher
type: points_exchange
{OPEN_RANGE}limits: {{per_user: 1, max_redemptions: 1}}
params: {{cost_points: 50, voucher: {{amount: "10.00", valid_days: 365}}}}
---
id: mall-cash
type: points_exchange
{OPEN_RANGE}budget: {{amount: "5.00"}}
params: {{cost_points: 40, cashback: "5.00"}}
"""


def test_cancel_gives_points_back_to_their_lots_and_frees_the_offer(counters_settings,
                                                                   tmp_path):
    with points_app(counters_settings, tmp_path, LIMITED,
                    points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_mar", "100.00", at="2026-03-15T10:00:00+08:00"))
        wallet.event(**payment("p_jan", "100.00", at="2026-01-10T10:00:00+08:00"))
        voucher_ex = wallet.event(**redemption("ex_v", campaign_id="mall-voucher")).get_json()
        cash_ex = wallet.event(**redemption("ex_c", campaign_id="mall-cash")).get_json()
        wallet.event(**redemption("burn", points=30))  # 10 from p_jan, 20 from p_mar
        assert remaining(app) == {"p_mar": 80, "p_jan": 0}
        for refused in ("mall-voucher", "mall-cash"):  # stock / budget gone
            assert error(wallet.event(**redemption(f"no_{refused}", campaign_id=refused)))[1] \
                == "offer_unavailable"

        response = wallet.event(**cancel("c_v", "ex_v"))
        assert response.status_code == 201
        body = response.get_json()
        replay = wallet.post("/v1/events", wallet.last_body)
        assert (replay.status_code, replay.get_json()) == (200, body)
        code = voucher_ex["rewards"][1]["voucher"]["code"]
        assert body == {"event_id": "c_v", "points_balance": 130, "rewards": [
            {"reward_id": body["rewards"][0]["reward_id"], "campaign_id": "mall-voucher",
             "kind": "points", "points": 50, "reverses": voucher_ex["rewards"][0]["reward_id"]},
            {"reward_id": body["rewards"][1]["reward_id"], "campaign_id": "mall-voucher",
             "kind": "voucher", "voucher": {"code": code, "amount": "-10.00", "currency": "CNY",
                                           "expires_at": "2027-06-20T04:00:00Z"},
             "reverses": voucher_ex["rewards"][1]["reward_id"]}]}
        assert remaining(app) == {"p_mar": 80, "p_jan": 50}
        [voucher] = wallet.get("/v1/users/u_1/vouchers?status=all").get_json()["vouchers"]
        assert (voucher["code"], voucher["status"]) == (code, "voided")
        assert wallet.get("/v1/users/u_1/vouchers").get_json()["vouchers"] == []
        body = wallet.event(**cancel("c_c", "ex_c")).get_json()
        assert without_ids(body["rewards"]) == [
            {"campaign_id": "mall-cash", "kind": "points", "points": 40},
            {"campaign_id": "mall-cash", "kind": "cashback", "amount": "-5.00", "currency": "CNY"}]
        assert [r["reverses"] for r in body["rewards"]] == [r["reward_id"]
                                                            for r in cash_ex["rewards"]]
        assert body["points_balance"] == 170 and remaining(app) == {"p_mar": 80, "p_jan": 90}
        body = wallet.event(**cancel("c_b", "burn")).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": None, "kind": "points", "points": 30}], 200)
        assert remaining(app) == {"p_mar": 100, "p_jan": 100}
        check_ledger(app, wallet)
        # stock, budget and the per-user limit are free again
        again = wallet.event(**redemption("ex_v2", campaign_id="mall-voucher")).get_json()
        assert again["points_balance"] == 150 and remaining(app) == {"p_mar": 100, "p_jan": 50}
        assert wallet.event(**redemption("ex_c2", campaign_id="mall-cash")).status_code == 201
        check_ledger(app, wallet)


def test_cancel_refusals_write_nothing(counters_settings, tmp_path):
    with points_app(counters_settings, tmp_path, LIMITED) as (app, wallet):
        for user_id in ("u_1", "u_2"):
            wallet.event(**payment(f"p_{user_id}", "100.00", user_id=user_id))
            wallet.event(**redemption(f"b_{user_id}", points=10, user_id=user_id))
        ex = wallet.event(**redemption("ex_v", campaign_id="mall-voucher")).get_json()
        wallet.event(**cancel("c_1", "b_u_1"))
        code = ex["rewards"][1]["voucher"]["code"]
        paid = wallet.event(**payment("p_v", "30.00", vouchers=[code],
                                     at="2026-06-25T12:00:00+08:00"))
        assert paid.status_code == 201, paid.get_json()
        before = ledger_counts(app)
        refusals = [
            (cancel("c_2", "b_u_1"), "already_cancelled"),
            (cancel("c_3", "nope"), "unknown_redemption"),
            (cancel("c_4", "b_u_2"), "unknown_redemption"),  # another user's
            (cancel("c_5", "p_u_1"), "unknown_redemption"),  # a payment
            (cancel("c_6", "ex_v"), "voucher_used"),
        ]
        for request, code_expected in refusals:
            status, code, fields = error(wallet.event(**request))
            assert (status, code, list(fields)) == (422, code_expected, ["original_event_id"])
            assert ledger_counts(app) == before, code_expected
        [voucher] = wallet.get("/v1/users/u_1/vouchers?status=all").get_json()["vouchers"]
        assert (voucher["status"], voucher["used_by_event_id"]) == ("used", "p_v")
        check_ledger(app, wallet)


# -- points paying part of a payment --------------------------------------------------------

def test_redeem_points_pay_part_of_a_payment_and_refunds_give_them_back(database_url,
                                                                       tmp_path):
    with points_app(database_url, tmp_path, TRIPLE,
                    point_value=Decimal("0.05")) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", merchant_id="m_200"))
        body = wallet.event(**payment("p_2", "30.00", redeem_points=60)).get_json()
        assert without_ids(body["rewards"]) == [
            {"campaign_id": None, "kind": "points", "points": -60},
            {"campaign_id": None, "kind": "discount", "amount": "3.00", "currency": "CNY"},
            {"campaign_id": None, "kind": "points", "points": 27},  # on 30.00 - 3.00
            {"campaign_id": "triple", "kind": "points", "points": 54}]
        assert body["points_balance"] == 121
        assert remaining(app) == {"p_1": 40, "p_2": 27, "p_2/triple": 54}
        ids = [r["reward_id"] for r in body["rewards"]]
        half = wallet.event(**refund("r_1", "p_2", "15.00")).get_json()
        assert half["rewards"] == [
            {"reward_id": half["rewards"][0]["reward_id"], "campaign_id": None,
             "kind": "points", "points": 30, "reverses": ids[0]},
            {"reward_id": half["rewards"][1]["reward_id"], "campaign_id": None,
             "kind": "discount", "amount": "-1.50", "currency": "CNY", "reverses": ids[1]},
            {"reward_id": half["rewards"][2]["reward_id"], "campaign_id": None,
             "kind": "points", "points": -14, "reverses": ids[2]},
            {"reward_id": half["rewards"][3]["reward_id"], "campaign_id": "triple",
             "kind": "points", "points": -27, "reverses": ids[3]}]
        assert half["points_balance"] == 110
        assert remaining(app) == {"p_1": 70, "p_2": 13, "p_2/triple": 27}
        check_ledger(app, wallet)
        rest = wallet.event(**refund("r_2", "p_2", "15.00")).get_json()
        assert [r.get("points", r.get("amount")) for r in rest["rewards"]] == \
            [30, "-1.50", -13, -27]
        assert rest["points_balance"] == 100
        assert remaining(app) == {"p_1": 100, "p_2": 0, "p_2/triple": 0}
        check_ledger(app, wallet)
        before = ledger_counts(app)
        too_much = wallet.event(**payment("p_3", "2.00", redeem_points=41, merchant_id="m_200"))
        assert error(too_much)[:2] == (422, "validation_error")
        assert list(error(too_much)[2]) == ["redeem_points"]
        assert ledger_counts(app) == before
        whole = wallet.event(**payment("p_4", "2.00", redeem_points=40,
                                       merchant_id="m_200")).get_json()
        assert without_ids(whole["rewards"]) == [
            {"campaign_id": None, "kind": "points", "points": -40},
            {"campaign_id": None, "kind": "discount", "amount": "2.00", "currency": "CNY"}]
        assert whole["points_balance"] == 60
        check_ledger(app, wallet)


def test_a_partial_refund_returns_points_to_the_lots_drawn_last_first(database_url,
                                                                      tmp_path):
    """The spend drew the soonest-expiring lot first; what a refund gives back goes to the
    lot that lives longest first."""
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_jan", "100.00", at="2026-01-10T10:00:00+08:00"))
        wallet.event(**payment("p_may", "100.00", at="2026-05-10T10:00:00+08:00"))
        body = wallet.event(**payment("p_q", "20.00", redeem_points=150,
                                      merchant_id="m_200")).get_json()
        assert body["points_balance"] == 68  # 200 - 150 + 18 (earned on 20.00 - 1.50)
        assert remaining(app) == {"p_jan": 0, "p_may": 50, "p_q": 18}
        wallet.event(**refund("r_1", "p_q", "10.00"))  # 75 back, 9 of the 18 taken
        assert remaining(app) == {"p_jan": 25, "p_may": 100, "p_q": 9}
        wallet.event(**refund("r_2", "p_q", "10.00"))
        assert remaining(app) == {"p_jan": 100, "p_may": 100, "p_q": 0}
        check_ledger(app, wallet)


# -- refunds taking points back -------------------------------------------------------------

def test_refund_takes_points_from_their_own_lot_first(database_url, tmp_path):
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_old", "100.00", at="2026-01-10T10:00:00+08:00"))
        wallet.event(**payment("p_new", "100.00", at="2026-05-10T10:00:00+08:00"))
        wallet.event(**redemption("burn", points=50))
        assert remaining(app) == {"p_old": 50, "p_new": 100}
        body = wallet.event(**refund("r_1", "p_new", "50.00")).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": None, "kind": "points", "points": -50}], 100)
        assert remaining(app) == {"p_old": 50, "p_new": 50}  # not the soonest-expiring lot
        wallet.event(**refund("r_2", "p_new", "50.00"))
        assert remaining(app) == {"p_old": 50, "p_new": 0}
        check_ledger(app, wallet)


def test_refund_of_spent_points_takes_other_points_then_makes_a_debt(database_url, tmp_path):
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_a", "100.00", at="2026-01-10T10:00:00+08:00"))
        wallet.event(**payment("p_b", "100.00", at="2026-05-10T10:00:00+08:00"))
        wallet.event(**redemption("burn", points=130))
        assert remaining(app) == {"p_a": 0, "p_b": 70}
        body = wallet.event(**refund("r_1", "p_a", "50.00")).get_json()
        assert body["points_balance"] == 20 and remaining(app) == {"p_a": 0, "p_b": 20}
        body = wallet.event(**refund("r_2", "p_a", "50.00")).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": None, "kind": "points", "points": -50}], -30)
        assert remaining(app) == {"p_a": 0, "p_b": 0}
        view = points_view(wallet)
        assert (view["points_balance"], view["expiring"]) == (-30, [])
        check_ledger(app, wallet)
        # the next points pay the debt first
        body = wallet.event(**payment("p_c", "80.00", at="2026-04-01T10:00:00+08:00")).get_json()
        assert body["points_balance"] == 50
        [lot] = [lot for lot in lots(app) if lot["event_id"] == "p_c"]
        assert (lot["remaining"], lot["debt_paid"]) == (50, 30)
        assert points_view(wallet)["expiring"] == [
            {"points": 50, "expires_at": "2027-04-01T00:00:00+08:00"}]
        check_ledger(app, wallet)


def test_activation_points_and_returned_points_pay_a_debt(database_url, tmp_path):
    with points_app(database_url, tmp_path, WELCOME) as (app, wallet):
        wallet.event(**payment("p_a", "100.00"))
        wallet.event(**redemption("burn", points=100))
        assert wallet.event(**refund("r_1", "p_a", "100.00")).get_json()["points_balance"] \
            == -100
        body = wallet.event(**activation("act")).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": "welcome", "kind": "points", "points": 30}], -70)
        [lot] = [lot for lot in lots(app) if lot["event_id"] == "act"]
        assert (lot["remaining"], lot["debt_paid"]) == (0, 30)
        assert points_view(wallet)["expiring"] == []
        check_ledger(app, wallet)
        # the burn's points come back to p_a's lot and pay the rest of the debt
        assert wallet.event(**cancel("c_1", "burn")).get_json()["points_balance"] == 30
        [lot] = [lot for lot in lots(app) if lot["event_id"] == "p_a"]
        assert (lot["remaining"], lot["debt_paid"]) == (30, 70)
        check_ledger(app, wallet)
