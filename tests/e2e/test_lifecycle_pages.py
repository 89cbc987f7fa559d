"""The reward lifecycle's pages in the browser, on the live server: a merchant's results with
the vouchers its offer gave and customers used, and the bank's points exchanges (stock,
redemptions, points spent, budget left) on the admin's campaigns page. Each is shot at
desktop and phone width in English and Chinese and checked as test_screenshots checks the
main pages (language, no sideways scrolling, nothing cut off)."""
from __future__ import annotations

import time
import warnings
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from promo_engine.config import Settings

from .conftest import _cli
from .portal import TIMEZONE, Account, Portal, wallet
from .test_screenshots import chinese_font_installed, cosmetic_findings, page_problems

pytestmark = pytest.mark.e2e

VOUCHER_MERCHANT = Account("m_e2e_vouchers", "Jade Tea House", "vouchers@merchant.example",
                           "jade-e2e-pass-5")
EXCHANGES_YAML = """\
id: e2e-mall-voucher
name: Mall voucher for points
type: points_exchange
timezone: Asia/Shanghai
starts_at: 2020-01-01T00:00:00
ends_at: 2040-01-01T00:00:00
params: {cost_points: 100, voucher: {amount: "10.00", valid_days: 30, min_amount: "50.00"}}
limits: {max_redemptions: 50}
budget: {amount: "300.00"}
---
id: e2e-cash-for-points
name: Cash for points
type: points_exchange
timezone: Asia/Shanghai
starts_at: 2020-01-01T00:00:00
ends_at: 2040-01-01T00:00:00
params: {cost_points: 250, cashback: "2.00"}
"""
VOUCHER_OFFER = {
    "type": "first_activation_bonus", "name": "Welcome voucher at Jade",
    "timezone": TIMEZONE, "starts_at": "2020-01-01T00:00", "ends_at": "2040-01-01T00:00",
    "budget": {"amount": "500.00"},
    "params": {"on": "first_payment",
               "voucher": {"amount": "10.00", "valid_days": 30, "min_amount": "50.00"}},
}


def now() -> str:
    return datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0).isoformat()


def pay(event_id: str, user_id: str, amount: str, merchant_id: str, **extra) -> dict:
    return {"event_id": event_id, "type": "payment", "user_id": user_id, "occurred_at": now(),
            "merchant_id": merchant_id, "amount": amount, "currency": "CNY", **extra}


def send(client, event: dict) -> dict:
    reply = client.send_event(event)
    assert reply.status == 201, reply.text
    return reply.body


def wait_until_quoted(client, event: dict, campaign_id: str, seconds: float = 10) -> None:
    """Until the server's campaigns include `campaign_id` for this event (side-effect free)."""
    deadline = time.monotonic() + seconds
    while True:
        quote = client.quote({k: v for k, v in event.items() if k != "event_id"})
        if quote.status == 200 and any(r["campaign_id"] == campaign_id
                                       for r in quote.body["rewards"]):
            return
        assert time.monotonic() < deadline, f"{campaign_id} not offered: {quote.text}"
        time.sleep(0.2)


def voucher_code(body: dict) -> str:
    return next(r["voucher"]["code"] for r in body["rewards"] if r["kind"] == "voucher")


def draft_voucher_offer(server) -> int:
    """The offer form has no voucher types: the draft is made with the portal's own
    `create_offer` on the server's database; sending and approving it go through pages."""
    from merchant_portal.models import PortalLogin
    from merchant_portal.offers import create_offer
    from promo_engine.app import create_app
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service
    app = create_app(Settings.from_env(server.env), test_config={"TESTING": True})
    try:
        with app.test_request_context():
            user = db.session.query(PortalLogin).filter_by(email=VOUCHER_MERCHANT.email).one()
            offer, problems = create_offer(user, lambda campaign_id: {
                **VOUCHER_OFFER, "id": campaign_id,
                "merchants": [VOUCHER_MERCHANT.merchant_id]})
            assert problems is None, problems
            return offer.id
    finally:
        promo_service(app).close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture(scope="module")
def lifecycle(browser, live_server, tmp_path_factory):
    """Two exchanges applied from YAML and used (one redemption cancelled, a voucher used on
    a payment half refunded), and an approved voucher offer of a new merchant: three
    vouchers given, two used (one on a payment half refunded)."""
    server = live_server
    _cli(server.env, server.workdir, "merchants", "create", VOUCHER_MERCHANT.merchant_id,
         "--name", VOUCHER_MERCHANT.name, "--email", VOUCHER_MERCHANT.email,
         "--password-stdin", stdin=VOUCHER_MERCHANT.password + "\n")
    server.accounts["vouchers"] = VOUCHER_MERCHANT
    path = tmp_path_factory.mktemp("exchanges") / "exchanges.yaml"
    path.write_text(EXCHANGES_YAML)
    _cli(server.env, server.workdir, "campaigns", "apply", str(path))
    client = wallet(server)

    # Exchanges: 300 and 200 points earned; x1 twice (the second cancelled), x2 once.
    send(client, pay("e2e-x-pay-1", "u_e2e_x1", "300.00", "m_e2e_exchange"))
    send(client, pay("e2e-x-pay-2", "u_e2e_x2", "200.00", "m_e2e_exchange"))
    redeem = {"type": "redemption", "user_id": "u_e2e_x1", "occurred_at": now(),
              "campaign_id": "e2e-mall-voucher"}
    wait_until_quoted(client, redeem, "e2e-mall-voucher")
    first = send(client, {**redeem, "event_id": "e2e-x-redeem-1"})
    send(client, {**redeem, "event_id": "e2e-x-redeem-2", "occurred_at": now()})
    send(client, {"event_id": "e2e-x-cancel-2", "type": "cancel", "user_id": "u_e2e_x1",
                  "occurred_at": now(), "original_event_id": "e2e-x-redeem-2"})
    send(client, {**redeem, "event_id": "e2e-x-redeem-3", "user_id": "u_e2e_x2",
                  "occurred_at": now()})
    send(client, pay("e2e-x-pay-3", "u_e2e_x1", "60.00", "m_e2e_exchange",
                     vouchers=[voucher_code(first)]))
    send(client, {"event_id": "e2e-x-refund-3", "type": "refund", "user_id": "u_e2e_x1",
                  "occurred_at": now(), "merchant_id": "m_e2e_exchange", "amount": "30.00",
                  "currency": "CNY", "original_event_id": "e2e-x-pay-3"})

    # The merchant's voucher offer, sent and approved in the browser.
    offer_id = draft_voucher_offer(server)
    merchant = Portal.open(browser, server, lang="en", device="desktop",
                           viewport={"width": 1280, "height": 800}, screenshots=server.workdir)
    admin = Portal.open(browser, server, lang="en", device="desktop",
                        viewport={"width": 1280, "height": 800}, screenshots=server.workdir)
    try:
        merchant.login(VOUCHER_MERCHANT)
        merchant.submit_offer(str(offer_id))
        admin.login(server.accounts["admin"])
        admin.approve(str(offer_id))
        assert not merchant.problems + admin.problems, merchant.problems + admin.problems
    finally:
        merchant.close()
        admin.close()
    shop = VOUCHER_MERCHANT.merchant_id
    first_payment = pay("e2e-v-pay-1", "u_e2e_v1", "100.00", shop)
    campaign_id = f"m-{shop.replace('_', '-')}-{offer_id}"
    wait_until_quoted(client, first_payment, campaign_id)
    v1 = voucher_code(send(client, first_payment))
    send(client, pay("e2e-v-pay-2", "u_e2e_v2", "80.00", shop))
    v3 = voucher_code(send(client, pay("e2e-v-pay-3", "u_e2e_v3", "120.00", shop)))
    send(client, pay("e2e-v-pay-4", "u_e2e_v1", "60.00", shop, vouchers=[v1]))
    send(client, pay("e2e-v-pay-5", "u_e2e_v3", "200.00", shop, vouchers=[v3]))
    send(client, {"event_id": "e2e-v-refund-5", "type": "refund", "user_id": "u_e2e_v3",
                  "occurred_at": now(), "merchant_id": shop, "amount": "100.00",
                  "currency": "CNY", "original_event_id": "e2e-v-pay-5"})
    return {"offer_id": offer_id}


def text_of(portal: Portal, selector: str) -> str:
    return " ".join(portal.page.locator(selector).first.inner_text().split())


EXPECTED = {
    "en": {"discount": "CN¥15.00", "cost": "CN¥30.00", "stock": "48 of 50",
           "budget": "CN¥280.00 of CN¥300.00", "heading": "Vouchers",
           "exchanges": "Points exchanges"},
    "zh": {"discount": "¥15.00", "cost": "¥30.00", "stock": "48 共 50",
           "budget": "¥280.00 共 ¥300.00", "heading": "优惠券", "exchanges": "积分兑换"},
}


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_lifecycle_pages(open_portal, live_server, lifecycle, lang, device):
    expected = EXPECTED[lang]
    problems: list[str] = []
    if lang == "zh" and not chinese_font_installed():
        problems.append("no CJK font (fc-list :lang=zh is empty): apt-get install fonts-noto-cjk")

    def shoot(portal: Portal, name: str) -> None:
        portal.screenshot(name)
        problems.extend(page_problems(portal, name))
        for finding in cosmetic_findings(portal, name):
            warnings.warn(finding, UserWarning, stacklevel=1)

    merchant = open_portal(lang, device)
    merchant.login(VOUCHER_MERCHANT)
    merchant.goto(f"/portal/offers/{lifecycle['offer_id']}/results")
    assert text_of(merchant, "#vouchers h2") == expected["heading"]
    assert [text_of(merchant, f"#metric-{name}") for name in (
        "vouchers-issued", "vouchers-used", "voucher-discount", "voucher-rate")] == [
        "3", "2", expected["discount"], "66.7%"]
    assert [text_of(merchant, f"#metric-{name}") for name in ("redemptions", "cost")] == [
        "3", expected["cost"]]
    assert merchant.page.locator("#voucher-days tbody tr").count() == 1
    shoot(merchant, "results-vouchers")

    admin = open_portal(lang, device)
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/campaigns")
    assert text_of(admin, "#exchanges h2") == expected["exchanges"]
    row = '#exchange-stock tr[data-exchange-id="e2e-mall-voucher"]'
    assert {stat: text_of(admin, f'{row} [data-stat="{stat}"]') for stat in (
        "redemptions", "stock-left", "points-spent", "vouchers-used", "budget-left")} == {
        "redemptions": "2", "stock-left": expected["stock"], "points-spent": "200",
        "vouchers-used": "1 / 2 (50%)", "budget-left": expected["budget"]}
    shoot(admin, "admin-exchanges")

    assert not problems, "\n".join(problems)
