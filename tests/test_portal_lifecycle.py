"""The reward lifecycle in the portal: results count only a campaign's grants (not the points
spent on it, nor the discounts of its vouchers when used), a merchant sees its vouchers
issued, used, the discount they gave and the rate, and the bank sees each points exchange's
stock, redemptions, points spent and budget left. Exact figures, in English and Chinese."""
from __future__ import annotations

import re

import pytest

from conftest import make_redis_settings, make_settings, running_app
from test_portal_support import (ADMIN_EMAIL, EMAIL_A, MERCHANT_A, Portal, accounts,  # noqa: F401
                                 admin, approve, make_accounts, merchant_a)
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund

DAY1, DAY2, DAY3 = ("2026-06-15T12:00:00+08:00", "2026-06-16T12:00:00+08:00",
                    "2026-06-17T12:00:00+08:00")

EXCHANGE = f"""
id: mall-voucher
name: Mall voucher
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, voucher: {{amount: "10.00", valid_days: 30, min_amount: "50.00"}}}}
limits: {{max_redemptions: 50}}
budget: {{amount: "300.00"}}
"""
CASHBACK_EXCHANGE = f"""
id: cash-for-points
name: Cash for points
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 250, cashback: "2.00"}}
"""


def metric(page, name) -> str:
    return re.search(rf'id="metric-{name}">([^<]*)<', page.text).group(1)


def table_rows(page, table_id: str) -> list[list[str]]:
    """The cells of a table's body, as text (tags taken out, spaces collapsed)."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page.text,
                     re.S).group(1)
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def exchange_cells(page, campaign_id: str) -> dict[str, str]:
    row = re.search(rf'<tr data-exchange-id="{campaign_id}">(.*?)</tr>', page.text, re.S).group(1)
    return {name: " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for name, cell in re.findall(r'data-stat="([^"]+)">(.*?)</td>', row, re.S)}


def send(wallet, body: dict) -> dict:
    response = wallet.event(**body)
    assert response.status_code == 201, response.json
    return response.json


def redemption(event_id: str, campaign_id: str, *, user_id: str = "u_1",
               at: str = DAY1) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": at, "campaign_id": campaign_id}


def cancel(event_id: str, original: str, *, user_id: str = "u_1", at: str = DAY1) -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id, "occurred_at": at,
            "original_event_id": original}


def voucher_code(response: dict) -> str:
    return next(r["voucher"]["code"] for r in response["rewards"] if r["kind"] == "voucher")


# --- a merchant's offer that gives vouchers ----------------------------------------------------

VOUCHER_OFFER = {
    "type": "first_activation_bonus", "name": "Welcome voucher",
    "timezone": "Asia/Shanghai", "starts_at": "2026-01-01T00:00", "ends_at": "2030-01-01T00:00",
    "budget": {"amount": "1000.00"},
    "params": {"on": "first_payment",
               "voucher": {"amount": "10.00", "valid_days": 30, "min_amount": "50.00"}},
}


def voucher_offer(app, merchant, admin_portal) -> int:
    """An approved offer of merchant A giving a 10.00 voucher (min. spend 50.00) on a
    customer's first payment. The offer form has no voucher types: it is drafted with the
    portal's own `create_offer`, then sent and approved through the pages."""
    from merchant_portal.models import PortalLogin
    from merchant_portal.offers import create_offer
    from promo_engine.ledger.extensions import db
    with app.test_request_context():
        user = db.session.query(PortalLogin).filter_by(email=EMAIL_A).one()
        offer, problems = create_offer(user, lambda campaign_id: {
            **VOUCHER_OFFER, "id": campaign_id, "merchants": [MERCHANT_A]})
        assert problems is None, problems
        offer_id = offer.id
        db.session.remove()
    assert merchant.post(f"/portal/offers/{offer_id}/submit").status_code == 302
    approve(admin_portal, offer_id)
    return offer_id


@pytest.fixture
def vouchers_given_and_used(app, merchant_a, admin):
    """Three first payments give three vouchers (two on day 1, one on day 2). u_1's is used
    on a 60.00 payment (10.00 off); u_2's on a 55.00 payment refunded in full (free again,
    its discount reversed); u_3's on a 200.00 payment, half refunded (5.00 of 10.00 left)."""
    offer_id = voucher_offer(app, merchant_a, admin)
    wallet = new_wallet_client(app)
    v1 = voucher_code(send(wallet, payment("p1", "100.00", user_id="u_1", at=DAY1)))
    v2 = voucher_code(send(wallet, payment("p2", "80.00", user_id="u_2", at=DAY1)))
    v3 = voucher_code(send(wallet, payment("p3", "120.00", user_id="u_3", at=DAY2)))
    used = send(wallet, payment("p4", "60.00", user_id="u_1", at=DAY2, vouchers=[v1]))
    assert [(r["kind"], r.get("amount"), r.get("voucher_code")) for r in used["rewards"]][0] == \
        ("discount", "10.00", v1)
    send(wallet, payment("p5", "55.00", user_id="u_2", at=DAY3, vouchers=[v2]))
    send(wallet, refund("r5", "p5", "55.00", user_id="u_2", at=DAY3))
    send(wallet, payment("p6", "200.00", user_id="u_3", at=DAY3, vouchers=[v3]))
    send(wallet, refund("r6", "p6", "100.00", user_id="u_3", at=DAY3))
    return offer_id


def test_voucher_discounts_are_not_counted_as_redemptions_or_cost(app, merchant_a,
                                                                  vouchers_given_and_used):
    page = merchant_a.get(f"/portal/offers/{vouchers_given_and_used}/results")
    assert page.status_code == 200
    # The three vouchers granted, at 10.00 each; the 15.00 their uses took off payments is
    # the vouchers' own cost, already counted when they were granted.
    assert [metric(page, n) for n in ("redemptions", "customers", "cost", "points")] == [
        "3", "3", "CN¥30.00", "0"]
    assert table_rows(page, "results-days") == [
        ["2026-06-15", "2", "2", "CN¥20.00", "0"],
        ["2026-06-16", "1", "1", "CN¥10.00", "0"]]


def test_merchant_sees_vouchers_issued_used_discount_and_rate(app, merchant_a,
                                                              vouchers_given_and_used):
    page = merchant_a.get(f"/portal/offers/{vouchers_given_and_used}/results")
    assert 'id="vouchers"' in page.text
    assert [metric(page, n) for n in ("vouchers-issued", "vouchers-used", "voucher-discount",
                                      "voucher-rate")] == ["3", "2", "CN¥15.00", "66.7%"]
    assert table_rows(page, "voucher-days") == [
        ["2026-06-15", "2", "1", "CN¥10.00", "50%"],
        ["2026-06-16", "1", "1", "CN¥5.00", "100%"]]


def test_merchant_sees_vouchers_in_chinese(app, merchant_a, vouchers_given_and_used):
    merchant_a.get("/portal/lang/zh")
    page = merchant_a.get(f"/portal/offers/{vouchers_given_and_used}/results")
    assert '<html lang="zh-Hans">' in page.text
    assert [metric(page, n) for n in ("vouchers-issued", "vouchers-used", "voucher-discount",
                                      "voucher-rate")] == ["3", "2", "¥15.00", "66.7%"]
    assert metric(page, "cost") == "¥30.00"
    for text in ("优惠券", "已发放优惠券", "已使用优惠券", "优惠金额", "核销率", "发放日期"):
        assert text in page.text, text
    for english in ("Vouchers issued", "Vouchers used", "Discount given", "Redemption rate",
                    "Day issued"):
        assert english not in page.text, english
    assert table_rows(page, "voucher-days") == [
        ["2026-06-15", "2", "1", "¥10.00", "50%"],
        ["2026-06-16", "1", "1", "¥5.00", "100%"]]


def test_results_csv_of_a_voucher_offer_has_the_voucher_columns(app, merchant_a,
                                                                vouchers_given_and_used):
    response = merchant_a.get(f"/portal/offers/{vouchers_given_and_used}/results.csv")
    assert response.text == (
        "day,redemptions,customers,cost,points,vouchers_issued,vouchers_used,voucher_discount\r\n"
        "2026-06-15,2,2,20.00,0,2,1,10.00\r\n"
        "2026-06-16,1,1,10.00,0,1,1,5.00\r\n")


def test_a_voucher_offer_without_vouchers_yet_shows_zeros(app, merchant_a, admin):
    offer_id = voucher_offer(app, merchant_a, admin)
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert [metric(page, n) for n in ("vouchers-issued", "vouchers-used", "voucher-discount",
                                      "voucher-rate")] == ["0", "0", "CN¥0.00", "—"]
    assert 'id="voucher-days"' not in page.text


def test_an_offer_without_vouchers_shows_no_voucher_section(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    assert merchant_a.post(f"/portal/offers/{offer_id}/submit").status_code == 302
    approve(admin, offer_id)
    send(new_wallet_client(app), payment("p1", "100.00"))
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert metric(page, "redemptions") == "1"
    assert 'id="vouchers"' not in page.text and "Vouchers issued" not in page.text
    assert merchant_a.get(f"/portal/offers/{offer_id}/results.csv").text.splitlines()[0] == \
        "day,redemptions,customers,cost,points"


# --- the bank's points exchanges ---------------------------------------------------------------

def exchange_history(app) -> None:
    """u_1 earns 300 points, u_2 200 (one per yuan); u_1 exchanges twice on day 1 and cancels
    the second, u_2 once on day 2; u_1 uses the first voucher on a 60.00 payment on day 2,
    then half of that payment is refunded (5.00 of the 10.00 discount reversed)."""
    wallet = new_wallet_client(app)
    send(wallet, payment("p1", "300.00", user_id="u_1", at=DAY1))
    send(wallet, payment("p2", "200.00", user_id="u_2", at=DAY1))
    first = send(wallet, redemption("x1", "mall-voucher", user_id="u_1", at=DAY1))
    assert [r.get("points") for r in first["rewards"]] == [-100, None]
    send(wallet, redemption("x2", "mall-voucher", user_id="u_1", at=DAY1))
    send(wallet, cancel("c2", "x2", user_id="u_1", at=DAY1))
    send(wallet, redemption("x3", "mall-voucher", user_id="u_2", at=DAY2))
    send(wallet, payment("p3", "60.00", user_id="u_1", at=DAY2, vouchers=[voucher_code(first)]))
    send(wallet, refund("r3", "p3", "30.00", user_id="u_1", at=DAY3))


def test_results_of_an_exchange_count_its_grants_only(app, tmp_path):
    """The points spent on the exchange (and given back by the cancel) and the discount of
    its voucher carry its id too: none of them is a grant of it."""
    from merchant_portal.results import results_for
    from merchant_portal.voucher_results import voucher_results_for
    install_campaigns(app, EXCHANGE, tmp_path)
    exchange_history(app)
    with app.app_context():
        figures = results_for("mall-voucher")
        vouchers = voucher_results_for("mall-voucher")
    # x1 and x3's vouchers; x2's was cancelled (granted, then reversed).
    assert (figures.redemptions, figures.customers, figures.cost_minor, figures.points) == \
        (2, 2, 2000, 0)
    assert [(str(d.day), d.redemptions, d.customers, d.cost_minor, d.points)
            for d in figures.days] == [("2026-06-15", 1, 1, 1000, 0),
                                       ("2026-06-16", 1, 1, 1000, 0)]
    # x2's voucher was voided: never issued. x1's was used: 10.00 off, 5.00 given back.
    assert (vouchers.issued, vouchers.used, vouchers.discount_minor) == (2, 1, 500)
    assert [(str(d.day), d.issued, d.used, d.discount_minor) for d in vouchers.days] == [
        ("2026-06-15", 1, 1, 500), ("2026-06-16", 1, 0, 0)]


@pytest.fixture(params=["database-counters", "redis-counters"])
def exchange_app(request, database_url, tmp_path):
    """An app with the exchanges and their history, its counters in the database or in Redis
    (where the usage rows catch up only at reconciliation, so the page must ask Redis)."""
    if request.param == "database-counters":
        settings = make_settings(database_url)
    else:
        settings = make_redis_settings(database_url, request.getfixturevalue("redis_prefix"),
                                       reconcile_seconds=3600)
    with running_app(settings) as app:
        make_accounts(app)
        install_campaigns(app, EXCHANGE + "---" + CASHBACK_EXCHANGE, tmp_path)
        exchange_history(app)
        if request.param == "redis-counters":
            from promo_engine.ledger.extensions import db
            from promo_engine.ledger.models import CampaignUsage
            with app.app_context():
                row = db.session.get(CampaignUsage, "mall-voucher")
                assert (row.spent, row.redemptions) == (0, 0)  # not reconciled yet
                db.session.remove()
        yield app


def signed_in_admin(app) -> Portal:
    portal = Portal(app)
    assert portal.login(ADMIN_EMAIL).status_code == 302
    return portal


def test_admin_sees_exchange_stock_redemptions_points_and_budget(exchange_app):
    page = signed_in_admin(exchange_app).get("/portal/admin/campaigns")
    assert page.status_code == 200
    assert 'id="exchange-stock"' in page.text
    assert exchange_cells(page, "mall-voucher") == {
        "redemptions": "2",                     # x1 and x3 (x2 cancelled)
        "stock-left": "48 of 50",
        "points-spent": "200",                  # 3 x 100, 100 given back by the cancel
        "vouchers-used": "1 / 2 (50%)",
        "budget-left": "CN¥280.00 of CN¥300.00",  # two 10.00 vouchers granted
    }
    assert exchange_cells(page, "cash-for-points") == {
        "redemptions": "0", "stock-left": "no stock limit", "points-spent": "0",
        "vouchers-used": "—", "budget-left": "no budget cap"}
    row = re.search(r'<tr data-exchange-id="mall-voucher">(.*?)</tr>', page.text, re.S).group(1)
    assert "Mall voucher" in row and "100 points each" in row


def test_admin_sees_exchanges_in_chinese(exchange_app):
    admin_portal = signed_in_admin(exchange_app)
    admin_portal.get("/portal/lang/zh")
    page = admin_portal.get("/portal/admin/campaigns")
    assert exchange_cells(page, "mall-voucher") == {
        "redemptions": "2", "stock-left": "48 共 50", "points-spent": "200",
        "vouchers-used": "1 / 2 (50%)", "budget-left": "¥280.00 共 ¥300.00"}
    assert exchange_cells(page, "cash-for-points")["stock-left"] == "不限库存"
    for text in ("积分兑换", "兑换次数", "剩余库存", "已消耗积分", "已使用优惠券", "剩余预算",
                 "每次 100 积分"):
        assert text in page.text, text
    for english in ("Points exchanges", "Stock left", "Points spent", "Budget left",
                    "points each", "Points exchange<"):
        assert english not in page.text, english


def test_stock_left_never_goes_below_zero(app, tmp_path):
    install_campaigns(app, EXCHANGE.replace("max_redemptions: 50", "max_redemptions: 1"),
                      tmp_path)
    make_accounts(app)
    wallet = new_wallet_client(app)
    send(wallet, payment("p1", "300.00", user_id="u_1", at=DAY1))
    send(wallet, redemption("x1", "mall-voucher", user_id="u_1", at=DAY1))
    refused = wallet.event(**redemption("x2", "mall-voucher", user_id="u_1", at=DAY1))
    assert refused.status_code == 422 and refused.json["error"]["code"] == "offer_unavailable"
    page = signed_in_admin(app).get("/portal/admin/campaigns")
    assert exchange_cells(page, "mall-voucher")["stock-left"] == "0 of 1"
    assert exchange_cells(page, "mall-voucher")["points-spent"] == "100"


def test_no_exchange_section_without_exchanges(app, admin, tmp_path):
    page = admin.get("/portal/admin/campaigns")
    assert 'id="exchange-stock"' not in page.text
