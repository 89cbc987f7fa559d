"""An offer's results: redemptions, unique customers, cost against budget, points, per day;
the chart (server-side SVG, no script, no CDN) and the CSV export."""
from __future__ import annotations

import re

import pytest

from wallet import new_wallet_client, payment, refund
from test_portal_support import (MULTIPLIER, accounts, admin, approve, merchant_a,  # noqa: F401
                                 merchant_b)


def metric(page, name) -> str:
    return re.search(rf'id="metric-{name}">([^<]*)<', page.text).group(1)


def live_offer(merchant, admin_portal, **fields) -> int:
    offer_id = merchant.create_offer(**fields)
    merchant.post(f"/portal/offers/{offer_id}/submit")
    approve(admin_portal, offer_id)
    return offer_id


@pytest.fixture
def discount_with_sales(app, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin)
    wallet = new_wallet_client(app)
    day1, day2 = "2026-06-15T12:00:00+08:00", "2026-06-16T12:00:00+08:00"
    for body in (payment("p1", "100.00", user_id="u_1", at=day1),     # 15.00
                 payment("p2", "200.00", user_id="u_2", at=day1),     # 30.00 (the cap)
                 payment("p3", "50.00", user_id="u_1", at=day2),      # 7.50
                 payment("p4", "40.00", user_id="u_3", at=day2),      # 6.00
                 refund("r1", "p2", "200.00", user_id="u_2", at=day2),  # all of p2 back
                 refund("r2", "p4", "20.00", user_id="u_3", at=day2)):  # half of p4 back
        response = wallet.event(**body)
        assert response.status_code == 201, response.json
    return offer_id


def test_results_page_shows_the_figures(app, merchant_a, discount_with_sales):
    page = merchant_a.get(f"/portal/offers/{discount_with_sales}/results")
    assert page.status_code == 200
    assert metric(page, "redemptions") == "3"       # p2 was refunded in full
    assert metric(page, "customers") == "2"         # u_1 and u_3
    assert metric(page, "cost") == "CN¥25.50"       # 15.00 + 7.50 + 3.00
    assert metric(page, "points") == "0"
    assert "of CN¥1,000.00" in page.text


def test_results_chart_is_inline_svg_without_scripts(app, merchant_a, discount_with_sales):
    page = merchant_a.get(f"/portal/offers/{discount_with_sales}/results")
    chart = re.search(r'<div id="results-chart" class="chart">(.*?)</section>',
                      page.text, re.S).group(1)
    assert '<svg id="results-redemptions-desktop"' in chart  # more in test_results_charts.py
    assert "<script" not in page.text and "kozea.github.io" not in page.text
    assert "Jun 15" in chart and "Jun 16" in chart
    assert "Redemptions per day" in chart


def test_results_csv(app, merchant_a, discount_with_sales):
    response = merchant_a.get(f"/portal/offers/{discount_with_sales}/results.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="m-m-100-{discount_with_sales}-results.csv"')
    assert response.text == ("day,redemptions,customers,cost,points\r\n"
                             "2026-06-15,1,1,15.00,0\r\n"
                             "2026-06-16,2,2,10.50,0\r\n")


def test_list_shows_budget_used_and_left(app, merchant_a, discount_with_sales):
    page = merchant_a.get("/portal/offers")
    assert "CN¥25.50 / CN¥974.50" in page.text


def test_points_multiplier_results(app, merchant_a, admin):
    offer_id = live_offer(merchant_a, admin, **{**MULTIPLIER, "percent": "",
                                                 "max_discount": "", "budget_amount": ""})
    wallet = new_wallet_client(app)
    assert wallet.event(**payment("p1", "123.00")).status_code == 201
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert metric(page, "points") == "123"
    assert metric(page, "cost") == "CN¥0.00"
    assert metric(page, "redemptions") == "1"
    assert "of 100,000" in page.text
    csv = merchant_a.get(f"/portal/offers/{offer_id}/results.csv").text
    assert csv == "day,redemptions,customers,cost,points\r\n2026-06-15,1,1,0.00,123\r\n"


def test_an_offer_not_yet_approved_has_empty_results(app, merchant_a):
    offer_id = merchant_a.create_offer()
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert page.status_code == 200
    assert [metric(page, n) for n in ("redemptions", "customers", "cost", "points")] == [
        "0", "0", "CN¥0.00", "0"]
    assert "<svg" not in page.text  # no chart before the first reward
    assert "has not been approved yet" in page.text
    csv = merchant_a.get(f"/portal/offers/{offer_id}/results.csv").text
    assert csv == "day,redemptions,customers,cost,points\r\n"


def test_results_count_only_this_campaign(app, merchant_a, merchant_b, admin,
                                          discount_with_sales):
    other = live_offer(merchant_b, admin)
    page = merchant_b.get(f"/portal/offers/{other}/results")
    assert metric(page, "redemptions") == "0" and metric(page, "cost") == "CN¥0.00"


def test_admin_can_read_results_of_any_offer(app, admin, discount_with_sales):
    page = admin.get(f"/portal/offers/{discount_with_sales}/results")
    assert metric(page, "redemptions") == "3"
    assert f'href="/portal/offers/{discount_with_sales}/results"' in admin.get(
        "/portal/admin/campaigns").text
