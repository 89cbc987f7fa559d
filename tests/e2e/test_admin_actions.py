"""The bank's admin in the browser: rejecting an offer with a reason the merchant then sees,
and pausing a live offer, after which payments stop earning it."""
from __future__ import annotations

import time

import pytest

from .portal import holiday_offer, payment, wallet

pytestmark = pytest.mark.e2e


def test_admin_rejects_an_offer_and_the_merchant_sees_why(open_portal, live_server):
    merchant = open_portal("en")
    merchant.login(live_server.accounts["other"])
    offer_id = merchant.create_offer(holiday_offer("Half price everything", percent="50"))
    merchant.submit_offer(offer_id)
    submitted = merchant.offer_status(offer_id)

    admin = open_portal("en")
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/offers?state=pending")
    row = admin.page.locator(f'tr[data-offer-id="{offer_id}"]')
    reason = "50% off is above what the programme allows; 20% at most."
    row.locator('details:has(form[action$="/reject"]) > summary').click()
    row.locator('form[action$="/reject"] [name=reason]').fill(reason)
    with admin.page.expect_navigation():
        row.locator('form[action$="/reject"] [type=submit]').click()
    assert admin.flashes(), "no flash message after rejecting"
    admin.goto("/portal/admin/offers?state=pending")
    assert admin.page.locator(f'tr[data-offer-id="{offer_id}"]').count() == 0

    assert merchant.offer_status(offer_id) != submitted
    merchant.goto(f"/portal/offers/{offer_id}")
    assert reason in merchant.page.inner_text("body")


def test_admin_pauses_a_live_offer_and_payments_stop_earning_it(open_portal, live_server):
    account = live_server.accounts["other"]
    merchant = open_portal("en")
    merchant.login(account)
    name = "Bakery morning 5% off"
    offer_id = merchant.create_offer(holiday_offer(name, percent="5", min_amount="10.00"))
    merchant.submit_offer(offer_id)
    admin = open_portal("en")
    admin.login(live_server.accounts["admin"])
    admin.approve(offer_id)

    admin.goto("/portal/admin/campaigns")
    row = admin.page.locator("#campaigns tr[data-campaign-id]", has_text=name)
    assert row.count() == 1, f"the approved offer {name!r} is not among the campaigns"
    campaign_id = row.get_attribute("data-campaign-id")
    status_open = row.locator(".status").inner_text().strip()

    client = wallet(live_server)
    event = payment("e2e-pause-quote", account.merchant_id, "100.00", user_id="u_e2e_pause")
    event.pop("event_id")

    def offered() -> bool:
        reply = client.quote(event)
        assert reply.status == 200, reply.text
        return any(r["campaign_id"] == campaign_id for r in reply.body["rewards"])

    deadline = time.monotonic() + 10
    while not offered():
        assert time.monotonic() < deadline, f"{campaign_id} not offered 10 s after approval"
        time.sleep(0.2)

    pause = row.locator('form[action$="/pause"]')
    pause.locator("[name=reason]").fill("Budget review")
    with admin.page.expect_navigation():
        pause.locator("[type=submit]").click()
    assert admin.flashes(), "no flash message after pausing"
    row = admin.page.locator(f'#campaigns tr[data-campaign-id="{campaign_id}"]')
    assert row.locator(".status").inner_text().strip() != status_open

    deadline = time.monotonic() + 10
    while offered():
        assert time.monotonic() < deadline, f"{campaign_id} still offered 10 s after the pause"
        time.sleep(0.2)
    reply = client.send_event(payment("e2e-pause-pay", account.merchant_id, "100.00",
                                      user_id="u_e2e_pause"))
    assert reply.status == 201, reply.text
    assert not [r for r in reply.body["rewards"] if r["campaign_id"] == campaign_id]
