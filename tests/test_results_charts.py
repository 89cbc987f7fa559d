"""The results page's charts: whole-number ticks for counts, money ticks in the currency, the
cost per day (exact Decimals, days without a reward as zero), the charts as inline SVG with
text of 14 units drawn in a viewBox for each width, no dashed grid lines; and the icon."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from merchant_portal.program_charts import whole_ticks
from merchant_portal.results import DayResult, Results
from merchant_portal.results_charts import (DESKTOP, PHONE, cost_chart, cost_per_day, every_day,
                                            money_ticks)
from test_portal_results import live_offer
from test_portal_support import (MULTIPLIER, accounts, admin, merchant_a,  # noqa: F401
                                 merchant_b)
from wallet import new_wallet_client, payment, refund

D = Decimal


@pytest.mark.parametrize("top, ticks", [
    (0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (5, [0, 1, 2, 3, 4, 5]), (7, [0, 2, 4, 6, 8]),
    (10, [0, 2, 4, 6, 8, 10]), (11, [0, 5, 10, 15]), (26, [0, 10, 20, 30]),
    (250, [0, 50, 100, 150, 200, 250]), (1001, [0, 500, 1000, 1500])])
def test_count_ticks_are_whole_numbers(top, ticks):
    assert whole_ticks(top, most=5) == ticks


@pytest.mark.parametrize("top, ticks", [(0, [0, 1]), (1, [0, 1]), (7, [0, 1, 2, 3, 4, 5, 6, 7]),
                                        (9, [0, 2, 4, 6, 8, 10]), (100, [0, 20, 40, 60, 80, 100])])
def test_count_ticks_up_to_eight_steps(top, ticks):
    assert whole_ticks(top) == ticks


@pytest.mark.parametrize("currency, top, ticks", [
    ("CNY", "0", ["0", "1"]),
    ("CNY", "0.03", ["0", "0.01", "0.02", "0.03"]),
    ("CNY", "0.07", ["0", "0.02", "0.04", "0.06", "0.08"]),
    ("CNY", "15.00", ["0", "5", "10", "15"]),
    ("CNY", "25.50", ["0", "10", "20", "30"]),
    ("CNY", "999.99", ["0", "200", "400", "600", "800", "1000"]),
    ("JPY", "3", ["0", "1", "2", "3"]),
    ("JPY", "1", ["0", "1"]),
])
def test_money_ticks(currency, top, ticks):
    assert money_ticks(D(top), currency) == [D(t) for t in ticks]


def test_money_ticks_are_never_finer_than_the_minor_unit():
    assert money_ticks(D("0.01"), "CNY") == [D("0"), D("0.01")]
    assert money_ticks(D("2"), "JPY") == [D(0), D(1), D(2)]


GAPPY = Results(redemptions=4, customers=3, cost_minor=2555, points=0, days=[
    DayResult(date(2026, 6, 15), 1, 1, 1500, 0),
    DayResult(date(2026, 6, 17), 3, 2, 1055, 0)])


def test_cost_per_day_is_exact_with_the_days_between():
    assert cost_per_day(GAPPY, "CNY") == [(date(2026, 6, 15), D("15.00")),
                                          (date(2026, 6, 16), D("0.00")),
                                          (date(2026, 6, 17), D("10.55"))]
    assert [str(cost) for _day, cost in cost_per_day(GAPPY, "CNY")] == ["15.00", "0.00", "10.55"]
    assert cost_per_day(GAPPY, "JPY")[0] == (date(2026, 6, 15), D(1500))
    assert [d.redemptions for d in every_day(GAPPY)] == [1, 0, 3]
    assert cost_per_day(Results(0, 0, 0, 0, []), "CNY") == []


def tick_labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" font-size="14" fill="#64748b">([^<]+)<', svg)


@pytest.mark.parametrize("lang, labels, day", [
    ("en", ["CN¥0", "CN¥5", "CN¥10", "CN¥15"], "Jun 16"),
    ("zh", ["¥0", "¥5", "¥10", "¥15"], "6月16日")])
def test_the_cost_chart_is_in_the_currency(app, lang, labels, day):
    with app.test_request_context(f"/portal/login?lang={lang}"):
        svg = cost_chart(GAPPY, "CNY", lang, size=PHONE, element_id="c")
    assert tick_labels(svg) == labels
    assert f">{day}<" in svg  # the day without a reward is on the axis
    # A bar's tooltip: the day's exact cost.
    assert ("CN¥10.55" if lang == "en" else "¥10.55") in svg
    assert svg.count("<rect") == 2  # two bars: none for the day without a reward


def test_cost_ticks_show_cents_only_when_needed(app):
    small = Results(1, 1, 7, 0, [DayResult(date(2026, 6, 15), 1, 1, 7, 0)])
    with app.test_request_context("/portal/login?lang=en"):
        svg = cost_chart(small, "CNY", "en", size=DESKTOP, element_id="c")
    assert tick_labels(svg) == ["CN¥0.00", "CN¥0.02", "CN¥0.04", "CN¥0.06", "CN¥0.08"]


@pytest.fixture
def sold(app, merchant_a, admin):  # noqa: F811
    offer_id = live_offer(merchant_a, admin)
    wallet = new_wallet_client(app)
    day1, day3 = "2026-06-15T12:00:00+08:00", "2026-06-17T12:00:00+08:00"
    for body in (payment("p1", "100.00", user_id="u_1", at=day1),     # 15.00
                 payment("p2", "50.00", user_id="u_1", at=day3),      # 7.50
                 payment("p3", "40.00", user_id="u_3", at=day3),      # 6.00
                 refund("r1", "p3", "20.00", user_id="u_3", at=day3)):  # 3.00 of it back
        response = wallet.event(**body)
        assert response.status_code == 201, response.json
    return offer_id


def chart(page, element_id: str) -> str:
    return re.search(rf'<svg id="{element_id}".*?</svg>', page.text, re.S).group(0)


def test_results_page_draws_both_charts_for_both_widths(app, merchant_a, sold):  # noqa: F811
    page = merchant_a.get(f"/portal/offers/{sold}/results")
    assert page.status_code == 200
    for name in ("redemptions", "cost"):
        for device, size in (("desktop", DESKTOP), ("phone", PHONE)):
            svg = chart(page, f"results-{name}-{device}")
            assert f'viewBox="0 0 {size.width} {size.height}"' in svg
            assert "Jun 15" in svg and "Jun 16" in svg and "Jun 17" in svg
    redemptions = chart(page, "results-redemptions-phone")
    assert tick_labels(redemptions) == ["0", "1", "2"]  # 2 on Jun 17: no 0.2 steps
    assert ">Redemptions<" in redemptions and ">Customers<" in redemptions  # the legend
    assert tick_labels(chart(page, "results-cost-desktop")) == ["CN¥0", "CN¥5", "CN¥10", "CN¥15"]
    assert "Jun 17: CN¥10.50" in chart(page, "results-cost-desktop")
    assert ">Cost per day</h2>" in page.text
    assert "<script" not in page.text and "stroke-dasharray" not in page.text
    assert not re.search(r'font-size="(?:[0-9]|1[0-3])(?:\.\d+)?"', page.text)
    assert 'id="results-no-chart"' not in page.text


def test_results_page_in_chinese(app, merchant_a, sold):  # noqa: F811
    merchant_a.get("/portal/lang/zh")
    page = merchant_a.get(f"/portal/offers/{sold}/results")
    assert ">每日成本</h2>" in page.text
    assert tick_labels(chart(page, "results-cost-phone")) == ["¥0", "¥5", "¥10", "¥15"]
    assert "6月17日" in chart(page, "results-redemptions-desktop")


def test_a_points_offer_draws_points_per_day(app, merchant_a, admin):  # noqa: F811
    offer_id = live_offer(merchant_a, admin, **{**MULTIPLIER, "percent": "",
                                                 "max_discount": "", "budget_amount": ""})
    wallet = new_wallet_client(app)
    assert wallet.event(**payment("p1", "123.00")).status_code == 201
    page = merchant_a.get(f"/portal/offers/{offer_id}/results")
    assert ">Points granted per day</h2>" in page.text
    assert tick_labels(chart(page, "results-points-phone")) == ["0", "50", "100", "150"]
    assert 'id="results-cost-phone"' not in page.text


def test_without_rewards_no_chart_is_drawn(app, merchant_a, admin):  # noqa: F811
    draft = merchant_a.create_offer()
    page = merchant_a.get(f"/portal/offers/{draft}/results")
    assert "<svg" not in page.text and 'id="results-no-chart"' not in page.text  # not approved
    live = live_offer(merchant_a, admin, name="Quiet offer")
    page = merchant_a.get(f"/portal/offers/{live}/results")
    assert "<svg" not in page.text
    assert re.search(r'id="results-no-chart">No redemptions yet<', page.text)


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/static/favicon.svg"
    icon = client.get("/portal/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data.startswith(b"<svg") and b'viewBox="0 0 32 32"' in icon.data
    icon.close()
    login = client.get("/portal/login")
    assert ('<link rel="icon" href="/portal/static/favicon.svg" type="image/svg+xml">'
            in login.text)


def test_every_signed_in_page_links_the_icon(app, merchant_a, admin):  # noqa: F811
    for portal, path in ((merchant_a, "/portal/offers"), (admin, "/portal/admin/program")):
        assert 'rel="icon" href="/portal/static/favicon.svg"' in portal.get(path).text


def test_a_late_static_answer_does_not_undo_a_language_switch(app, merchant_a):  # noqa: F811
    """The browser fetches the icon after the page, with the session cookie as it was then.
    Its answer must not send that older session back over a language chosen meanwhile."""
    client = merchant_a.client
    old_cookie = client.get_cookie("promo_portal", path="/portal").value
    assert client.get("/portal/lang/zh").status_code == 302
    new_cookie = client.get_cookie("promo_portal", path="/portal").value
    assert new_cookie != old_cookie
    # the icon's request, sent with the cookie of before the switch
    client.set_cookie("promo_portal", old_cookie, path="/portal")
    icon = client.get("/portal/static/favicon.svg")
    assert icon.status_code == 200
    assert "Set-Cookie" not in icon.headers
    icon.close()
    # a page's answer still refreshes the session, as the permanent session wants
    client.set_cookie("promo_portal", new_cookie, path="/portal")
    page = client.get("/portal/offers")
    assert page.status_code == 200 and 'lang="zh-Hans"' in page.text
    assert "promo_portal=" in page.headers.get("Set-Cookie", "")
