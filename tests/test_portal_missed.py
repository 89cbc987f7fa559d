"""The results page counts the payments the offer's own limits turned away (the engine's
`limit_reached` and `budget_exhausted`), next to the campaigns that outranked it."""
from __future__ import annotations

import re

import pytest

from test_portal_outranked import post, section
from test_portal_results import live_offer
from test_portal_support import accounts, admin, merchant_a  # noqa: F401
from wallet import new_wallet_client, payment, refund

MON, TUE, WED, THU = (f"2026-06-{day}T12:00:00+08:00" for day in (15, 16, 17, 18))


def lines(page) -> list[tuple[str, str]]:
    return re.findall(r'<li data-reason="(\w+)" data-limit="\w+">(.*?)</li>', section(page),
                      re.S)


@pytest.fixture
def limited_offer(app, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin, per_user="2", per_user_daily="1",
                          max_redemptions="4")
    post(app,
         payment("p1", "100.00", user_id="u_1", at=MON),   # the offer
         payment("p2", "100.00", user_id="u_1", at=MON),   # u_1's 1 a day: used
         payment("p3", "100.00", user_id="u_1", at=TUE),   # the offer
         payment("p4", "100.00", user_id="u_1", at=WED),   # u_1's 2 in all: used
         payment("p5", "100.00", user_id="u_2", at=WED),   # the offer
         payment("p6", "100.00", user_id="u_3", at=WED),   # the offer: 4 redemptions
         payment("p7", "100.00", user_id="u_4", at=THU),   # none left
         payment("p8", "100.00", user_id="u_5", at=THU),   # none left, but refunded in full
         refund("r8", "p8", "100.00", user_id="u_5", at=THU))
    return offer_id


def test_limits_reached_are_counted_in_both_languages(app, merchant_a, limited_offer):
    page = merchant_a.get(f"/portal/offers/{limited_offer}/results")
    assert re.search(r'id="metric-redemptions">([^<]*)<', page.text).group(1) == "4"
    assert lines(page) == [
        ("limit_reached", "On 1 payment the customer had already reached your limit of 2 per "
                          "customer"),
        ("limit_reached", "On 1 payment the customer had already reached your limit of 1 per "
                          "customer per day"),
        ("budget_exhausted", "On 1 payment your offer had already reached its limit of 4 "
                             "redemptions in total")]
    merchant_a.get("/portal/lang/zh")
    chinese = merchant_a.get(f"/portal/offers/{limited_offer}/results")
    assert [text for _reason, text in lines(chinese)] == [
        "有 1 笔付款时，顾客已达到您每位顾客 2 次的上限",
        "有 1 笔付款时，顾客已达到您每位顾客每天 1 次的上限",
        "有 1 笔付款时，您的优惠已达到总计 4 次的核销上限"]


def test_a_used_up_budget_is_counted(app, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin, percent="", max_discount="", amount_off="10.00",
                          budget_amount="20.00")
    post(app, *(payment(f"b{n}", "100.00", user_id=f"u_{n}", at=MON) for n in range(1, 6)))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.search(r'id="metric-redemptions">([^<]*)<', page.text).group(1) == "2"
    assert lines(page) == [
        ("budget_exhausted", "On 3 payments your offer's budget of CN¥20.00 was already used up")]
    merchant_a.get("/portal/lang/zh")
    assert [text for _r, text in lines(merchant_a.get(f"/portal/offers/{offer_id}/results"))] \
        == ["有 3 笔付款时，您的优惠预算 ¥20.00 已用完"]


def test_payments_outside_the_hours_or_below_the_minimum_are_not_limits(app, merchant_a,
                                                                       admin):
    offer_id = live_offer(merchant_a, admin, per_user="1", min_amount="50.00",
                          window_days=["mon"])
    post(app, payment("h1", "100.00", user_id="u_1", at=MON),   # the offer
         payment("h2", "100.00", user_id="u_1", at=TUE),        # not its day
         payment("h3", "20.00", user_id="u_1", at=MON),         # below its minimum
         payment("h4", "100.00", user_id="u_1", at=MON))        # u_1's 1 in all: used
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert lines(page) == [
        ("limit_reached", "On 1 payment the customer had already reached your limit of 1 per "
                          "customer")]


def test_the_reasons_are_those_the_engine_explains(app, merchant_a, limited_offer):
    wallet = new_wallet_client(app)

    def explained(user_id: str, at: str) -> str:
        body = payment("q", "100.00", user_id=user_id, at=at)
        body.pop("event_id")
        reply = wallet.post("/v1/quote?explain=true", body)
        assert reply.status_code == 200, reply.json
        return {e["campaign_id"]: e["reason"] for e in reply.json["explain"]}[
            f"m-m-100-{limited_offer}"]

    assert explained("u_1", THU) == "limit_reached"       # u_1's 2 in all
    assert explained("u_9", THU) == "budget_exhausted"    # all 4 redemptions made
