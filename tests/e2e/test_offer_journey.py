"""Issue #4's story in a real browser: a merchant logs in, makes a mistake in the offer form
and sees it inline, creates and submits the offer; an admin approves it; a signed payment
through the API earns the offer's reward; the merchant's results page shows it, chart drawn."""
from __future__ import annotations

import csv
import io
import re
import time

import pytest

from .portal import LOGIN_SUBMIT, holiday_offer, pay_when_open, payment

pytestmark = pytest.mark.e2e


def test_merchant_offer_from_form_to_first_reward(open_portal, live_server):
    merchant = open_portal("en")
    account = live_server.accounts["merchant"]

    # A wrong password is refused on the login page itself.
    merchant.goto("/portal/login")
    assert merchant.html_lang() == "en"
    merchant.page.fill("input[name=email]", account.email)
    merchant.page.fill("input[name=password]", "not-the-password")
    merchant.page.click(LOGIN_SUBMIT)
    merchant.page.wait_for_load_state()
    assert "/portal/login" in merchant.page.url

    merchant.login(account, reuse=False)
    assert merchant.page.url.endswith("/portal/offers"), merchant.page.url
    assert merchant.page.locator(".empty-state").is_visible()

    # A mistake: 150 % off. The form comes back with the error next to the field and
    # keeps what was typed.
    name = "Noodle week 10% off"
    merchant.goto("/portal/offers/new")
    merchant.fill_offer(holiday_offer(name, percent="150"))
    merchant.save_offer_form()
    error = merchant.field_error("percent")
    assert error.is_visible(), merchant.page.content()
    assert error.inner_text().strip()
    assert merchant.page.input_value("[name=name]") == name
    assert merchant.page.input_value("[name=percent]") == "150"
    assert all(not e.strip() for e in merchant.page.locator(
        '.field-error:not([data-field="percent"])').all_inner_texts())

    merchant.page.fill("[name=percent]", "10")
    merchant.save_offer_form()
    offer_id = merchant.offer_id_after_save(name)
    assert offer_id

    merchant.goto(f"/portal/offers/{offer_id}")
    assert name in merchant.page.inner_text("body")
    draft_status = merchant.offer_status(offer_id)

    merchant.submit_offer(offer_id)
    submitted_status = merchant.offer_status(offer_id)
    assert submitted_status != draft_status, (draft_status, submitted_status)

    # The bank's admin sees it pending and approves it.
    admin = open_portal("en")
    admin.login(live_server.accounts["admin"], reuse=False)
    assert admin.page.url.endswith("/portal/admin/campaigns"), admin.page.url
    admin.approve(offer_id)
    assert admin.flashes(), "no flash message after approving"
    admin.goto("/portal/admin/offers?state=pending")
    assert admin.page.locator(f'tr[data-offer-id="{offer_id}"]').count() == 0

    open_status = merchant.offer_status(offer_id)
    assert open_status not in (draft_status, submitted_status), open_status

    # A customer pays 200.00 at this merchant: the wallet backend's signed event earns 10 %.
    body = pay_when_open(live_server, payment("e2e-story-pay-1", account.merchant_id, "200.00",
                                              user_id="u_e2e_story"))
    discounts = [r for r in body["rewards"] if r["kind"] == "discount"]
    assert [(r["amount"], r["currency"]) for r in discounts] == [("20.00", "CNY")], body

    # The merchant's results page shows the redemption, and the chart is drawn.
    merchant.goto(f"/portal/offers/{offer_id}/results")
    page = merchant.page
    deadline = time.monotonic() + 5
    while (page.inner_text("#metric-redemptions").strip() in ("", "0")
           and time.monotonic() < deadline):
        time.sleep(0.3)
        merchant.goto(f"/portal/offers/{offer_id}/results")
    assert re.search(r"(?<![\d.])1(?![\d.])", page.inner_text("#metric-redemptions")), \
        page.inner_text("#metric-redemptions")
    assert re.search(r"(?<![\d.])1(?![\d.])", page.inner_text("#metric-customers")), \
        page.inner_text("#metric-customers")
    assert "20.00" in page.inner_text("#metric-cost"), page.inner_text("#metric-cost")
    page.locator("#metric-points").wait_for()
    chart = page.locator("#results-chart svg").first
    chart.wait_for(state="visible")
    box = chart.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, box
    assert page.locator("#results-chart svg *").count() > 3, "the chart's svg is empty"

    # The same figures as CSV.
    reply = merchant.context.request.get(f"/portal/offers/{offer_id}/results.csv")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/csv"), reply.headers
    rows = list(csv.reader(io.StringIO(reply.text())))
    assert len(rows) >= 2 and any("20.00" in cell for row in rows[1:] for cell in row), rows


def test_another_merchants_offer_is_not_shown(open_portal, live_server):
    """A merchant's offer pages are its own: another merchant gets 403 or 404."""
    owner = open_portal("en")
    owner.login(live_server.accounts["shots"])
    offer_id = owner.create_offer(holiday_offer("Private offer"))
    other = open_portal("en")
    other.login(live_server.accounts["merchant"])
    for path in (f"/portal/offers/{offer_id}", f"/portal/offers/{offer_id}/edit",
                 f"/portal/offers/{offer_id}/results", f"/portal/offers/{offer_id}/results.csv"):
        reply = other.context.request.get(path, max_redirects=0)
        assert reply.status in (403, 404), (path, reply.status)
    other.goto("/portal/offers")
    assert other.page.locator(f'tr[data-offer-id="{offer_id}"]').count() == 0


def test_merchant_cannot_open_admin_pages_and_logout_ends_the_session(open_portal, live_server):
    merchant = open_portal("en")
    merchant.login(live_server.accounts["merchant"])
    for path in ("/portal/admin/campaigns", "/portal/admin/offers?state=pending"):
        reply = merchant.context.request.get(path, max_redirects=0)
        assert reply.status in (302, 303, 403, 404), (path, reply.status)
    merchant.goto("/portal/offers")
    signed_in = merchant.context.cookies()
    with merchant.page.expect_navigation():
        merchant.page.locator('form[action$="/portal/logout"] [type=submit]').first.click()
    merchant.goto("/portal/offers")
    assert "/portal/login" in merchant.page.url, merchant.page.url
    # The cookie of before is no good any more either.
    merchant.context.add_cookies(signed_in)
    merchant.goto("/portal/offers")
    assert "/portal/login" in merchant.page.url, merchant.page.url


def test_language_switch_changes_the_page_and_comes_back(open_portal, live_server):
    portal = open_portal("en")
    portal.goto("/portal/login")
    assert portal.html_lang() == "en"
    english = portal.page.inner_text("body")
    portal.page.goto("/portal/lang/zh", referer=f"{live_server.url}/portal/login")
    assert portal.page.url.endswith("/portal/login"), portal.page.url
    assert portal.html_lang() == "zh-Hans"
    chinese = portal.page.inner_text("body")
    assert re.search(r"[\u4e00-\u9fff]", chinese) and chinese != english
    portal.goto("/portal/lang/en")
    portal.goto("/portal/login")
    assert portal.html_lang() == "en"


@pytest.mark.parametrize("lang, device", [("en", "desktop"), ("zh", "phone")])
def test_offer_form_shows_the_chosen_types_fields_and_a_linked_summary(open_portal, live_server,
                                                                      lang, device):
    """Only the chosen offer type's fields show (a script hides the others); the error
    summary at the top links each error to its field; 24:00 ends a window."""
    merchant = open_portal(lang, device)
    merchant.login(live_server.accounts["other"])
    merchant.goto("/portal/offers/new")
    page = merchant.page

    def shown(name: str) -> bool:
        return page.locator(f"[name={name}]").is_visible()

    assert page.locator("select[name=type]").input_value() == "holiday_discount"
    assert [shown(n) for n in ("percent", "amount_off", "budget_amount", "multiplier",
                               "budget_points")] == [True, True, True, False, False]
    page.select_option("select[name=type]", "points_multiplier")
    assert [shown(n) for n in ("percent", "amount_off", "budget_amount", "multiplier",
                               "budget_points")] == [False, False, False, True, True]
    for name in ("name", "min_amount", "per_user", "window_to"):  # for every type
        assert shown(name), name
    merchant.screenshot("issue17-offer-form-multiplier")

    page.fill("[name=name]", "Late double points")
    page.fill("[name=window_from]", "20:00")
    page.fill("[name=window_to]", "24:00")
    page.fill("[name=multiplier]", "1")
    with page.expect_navigation():
        page.locator("#offer-form button[type=submit]").click()
    summary = page.locator("#error-summary")
    assert summary.is_visible()
    assert page.evaluate("document.activeElement.id") == "error-summary"
    links = summary.locator("a")
    fields = [links.nth(i).get_attribute("data-field") for i in range(links.count())]
    assert fields == ["starts_at", "ends_at", "multiplier"], fields
    assert shown("multiplier") and not shown("percent")  # still the chosen type's fields
    assert page.input_value("[name=window_to]") == "24:00"  # kept, and no error on it
    assert merchant.field_error("window_to").count() == 0
    expected = {"en": "Points multiplier: Enter a number greater than 1",
                "zh": "积分倍增：请填写大于 1 的数字"}[lang]
    assert links.nth(2).inner_text().strip() == expected
    merchant.screenshot("issue17-offer-form-errors")
    links.nth(2).click()
    assert page.evaluate("document.activeElement.name") == "multiplier"
