"""The results page says why payments at the merchant did not get its offer: a bank campaign
that outranks it (exclusive and of higher priority) took them."""
from __future__ import annotations

import re

import pytest

from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund
from test_portal_results import live_offer
from test_portal_support import MULTIPLIER, accounts, admin, merchant_a  # noqa: F401

WEEKEND = f"""
id: weekend-3x
name: Weekend 3x points
type: points_multiplier
timezone: Asia/Shanghai
{OPEN_RANGE}windows:
  - days: [sat, sun]
    from: "00:00"
    to: "00:00"
priority: 50
exclusive: true
params: {{multiplier: 3}}
"""
SATURDAY, MONDAY = "2026-06-13T12:00:00+08:00", "2026-06-15T12:00:00+08:00"
LINE_EN = "Your offer was outranked by the bank's Weekend 3x points on 3 payments"
LINE_ZH = "有 3 笔付款优先适用了银行的「Weekend 3x points」，未享受您的优惠"


def section(page) -> str | None:
    found = re.search(r'<section id="outranked".*?</section>', page.text, re.S)
    return found.group(0) if found else None


def post(app, *bodies) -> None:
    wallet = new_wallet_client(app)
    for body in bodies:
        response = wallet.event(**body)
        assert response.status_code == 201, response.json


@pytest.fixture
def outranked_offer(app, tmp_path, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin)
    install_campaigns(app, WEEKEND, tmp_path)
    post(app,
         payment("s1", "100.00", user_id="u_1", at=SATURDAY),   # the bank's 3x, not the offer
         payment("s2", "80.00", user_id="u_2", at=SATURDAY),
         payment("s3", "60.00", user_id="u_3", at=SATURDAY),
         payment("s4", "50.00", user_id="u_4", at=SATURDAY),    # refunded in full: left out
         refund("r4", "s4", "50.00", user_id="u_4", at=SATURDAY),
         payment("s5", "70.00", user_id="u_5", merchant_id="m_200", at=SATURDAY),  # not here
         payment("w1", "100.00", user_id="u_1", at=MONDAY),     # the offer's 15% off
         payment("w2", "40.00", user_id="u_2", at=MONDAY))
    return offer_id


def test_the_outranking_campaign_is_named_with_its_payments(app, merchant_a,
                                                             outranked_offer):
    page = merchant_a.get(f"/portal/offers/{outranked_offer}/results")
    assert page.status_code == 200
    assert re.search(r'id="metric-redemptions">([^<]*)<', page.text).group(1) == "2"
    lines = re.findall(r"<li[^>]*>(.*?)</li>", section(page), re.S)
    assert lines == [LINE_EN]
    merchant_a.get("/portal/lang/zh")
    chinese = merchant_a.get(f"/portal/offers/{outranked_offer}/results")
    assert re.findall(r"<li[^>]*>(.*?)</li>", section(chinese), re.S) == [LINE_ZH]
    assert "为什么有些付款没有享受您的优惠" in chinese.text


def test_one_payment_is_singular_and_names_are_escaped(app, tmp_path, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin)
    install_campaigns(app, WEEKEND.replace("Weekend 3x points", "Weekend <b>3x</b>"), tmp_path)
    post(app, payment("s1", "100.00", at=SATURDAY))
    lines = re.findall(r"<li[^>]*>(.*?)</li>",
                       section(merchant_a.get(f"/portal/offers/{offer_id}/results")), re.S)
    assert lines == [  # the campaign's name is text, escaped
        "Your offer was outranked by the bank's Weekend &lt;b&gt;3x&lt;/b&gt; on 1 payment"]


def test_nothing_shown_when_nothing_outranks(app, tmp_path, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin)
    install_campaigns(app, WEEKEND.replace("exclusive: true\n", ""), tmp_path)
    post(app, payment("s1", "100.00", at=SATURDAY), payment("w1", "100.00", at=MONDAY))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.search(r'id="metric-redemptions">([^<]*)<', page.text).group(1) == "2"
    assert section(page) is None and "outranked" not in page.text


def test_a_multiplier_beaten_in_its_stacking_group(app, tmp_path, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin, **{**MULTIPLIER, "percent": "",
                                                 "max_discount": "", "budget_amount": ""})
    install_campaigns(app, WEEKEND.replace("exclusive: true\n", ""), tmp_path)  # 3x beats 2x
    post(app, payment("s1", "100.00", at=SATURDAY), payment("s2", "100.00", at=SATURDAY),
         payment("w1", "100.00", at=MONDAY))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.search(r'id="metric-redemptions">([^<]*)<', page.text).group(1) == "1"
    assert re.findall(r'<li data-reason="(\w+)">(.*?)</li>', section(page), re.S) == [
        ("beaten_by_multiplier", "On 2 payments a higher multiplier from the bank's Weekend 3x "
         "points applied instead of your ×2 offer (multipliers don't add up)")]
    merchant_a.get("/portal/lang/zh")
    chinese = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.findall(r"<li[^>]*>(.*?)</li>", section(chinese), re.S) == [
        "有 2 笔付款适用了银行「Weekend 3x points」更高的倍数，而不是您的 ×2 优惠（倍数不叠加）"]


def test_the_same_multiplier_that_comes_first(app, tmp_path, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin, **{**MULTIPLIER, "percent": "",
                                                 "max_discount": "", "budget_amount": ""})
    install_campaigns(app, WEEKEND.replace("exclusive: true\n", "").replace(
        "multiplier: 3", "multiplier: 2"), tmp_path)  # the same 2x, of higher priority
    post(app, payment("s1", "100.00", at=SATURDAY))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.findall(r"<li[^>]*>(.*?)</li>", section(page), re.S) == [
        "On 1 payment the same multiplier from the bank's Weekend 3x points, which comes "
        "first, applied instead of your ×2 offer (multipliers don't add up)"]


def test_the_line_uses_the_reason_the_engine_explains(app, tmp_path, merchant_a, admin):
    """The results page's reason is the one `POST /v1/quote?explain=true` gives for the
    offer on such a payment."""
    offer_id = live_offer(merchant_a, admin, **{**MULTIPLIER, "percent": "",
                                                 "max_discount": "", "budget_amount": ""})
    install_campaigns(app, WEEKEND.replace("exclusive: true\n", ""), tmp_path)
    body = payment("q1", "100.00", at=SATURDAY)
    body.pop("event_id")
    quoted = new_wallet_client(app).post("/v1/quote?explain=true", body)
    assert quoted.status_code == 200, quoted.json
    reasons = {e["campaign_id"]: e["reason"] for e in quoted.json["explain"]}
    assert reasons[f"m-m-100-{offer_id}"] == "beaten_by_multiplier"
    assert reasons["weekend-3x"] == "applied"
    post(app, payment("s1", "100.00", at=SATURDAY))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert re.findall(r'<li data-reason="(\w+)">', section(page)) == ["beaten_by_multiplier"]
