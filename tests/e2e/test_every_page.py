"""Every page of the portal, at desktop (1280 px) and phone (390 px) width, in English and
Chinese: a screenshot of each under tests/screenshots/ (page-<name>-<lang>-<device>.png), and
on each the smallest text drawn (at least 11 px, see `text_size.py`), no sideways scrolling,
the page's language, its icon, and no answer of 400 or more to anything the page loaded.

The pages are the app's own list of GET routes: a new page that is not in PAGES (nor said
in NOT_PAGES to be no page) fails `test_every_page_is_visited`. The smallest text of each
page is printed as a table at the end, and written to tests/screenshots/smallest-text.txt.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from .conftest import SCREENSHOTS, VIEWPORTS, _cli
from .portal import (TIMEZONE, Account, Portal, local_minutes, pay_when_open, payment,
                     wallet)
from .text_size import MIN_TEXT_PX, scrolls_sideways, smallest_text, too_small

pytestmark = pytest.mark.e2e

HTML_LANG = {"en": "en", "zh": "zh-Hans"}
MERCHANT = Account("m_e2e_pages", "Silk Road Dumplings", "pages@merchant.example",
                   "silk-e2e-pass-6")

# GET routes that are no page to look at.
NOT_PAGES = {
    "portal.index": "sends the account to its home page",
    "portal.switch_language": "sets the language and goes back",
    "portal.static": "the stylesheet and the icon",
    "favicon": "sends the browser on to the icon (tests/test_results_charts.py)",
    "portal.results_csv": "a CSV download",
    "portal.admin_program_csv": "a CSV download",
}


def pages(offers: dict) -> dict[str, list[tuple[str, str | None, str]]]:
    """Each page's endpoint: its (screenshot name, who looks at it, path) shown."""
    live, pending, draft = offers["live"], offers["pending"], offers["draft"]
    return {
        "portal.login": [("login", None, "/portal/login")],
        "portal.offers": [("offers", "merchant", "/portal/offers")],
        "portal.new_offer": [("offer-new", "merchant", "/portal/offers/new")],
        "portal.offer": [("offer-live", "merchant", f"/portal/offers/{live}"),
                         ("offer-pending-admin", "admin", f"/portal/offers/{pending}")],
        "portal.edit_offer": [("offer-edit", "merchant", f"/portal/offers/{draft}/edit")],
        "portal.results": [("results", "merchant", f"/portal/offers/{live}/results")],
        "portal.admin_campaigns": [("admin-campaigns", "admin", "/portal/admin/campaigns")],
        "portal.admin_offers": [("admin-approvals", "admin", "/portal/admin/offers?state=pending")],
        "portal.admin_program": [("admin-program", "admin", "/portal/admin/program")],
        "portal.admin_risk": [("admin-risk", "admin", "/portal/admin/risk")],
        "portal.admin_events": [("admin-events", "admin", "/portal/admin/events")],
        "portal.admin_holds": [("admin-holds", "admin", "/portal/admin/holds")],
    }


def get_endpoints() -> set[str]:
    """The endpoints of the app's GET routes, but the API's (/v1, health and metrics)."""
    from promo_engine.app import create_app
    from promo_engine.config import Settings
    settings = Settings(database_url="sqlite://", redis_url=None,
                        secret_key="e2e-every-page-0123456789abcdef", timezone=TIMEZONE,
                        currency="CNY", points_per_unit=Decimal(1))
    app = create_app(settings)
    return {rule.endpoint for rule in app.url_map.iter_rules()
            if "GET" in rule.methods and (rule.endpoint.startswith("portal.")
                                          or not rule.rule.startswith(("/v1", "/healthz",
                                                                       "/readyz", "/metrics")))
            and rule.endpoint != "static"}


def test_every_page_is_visited():
    shown = set(pages({"live": 1, "pending": 2, "draft": 3}))
    endpoints = get_endpoints()
    assert sorted(endpoints - shown - set(NOT_PAGES)) == [], "pages no test looks at"
    assert sorted((shown | set(NOT_PAGES)) - endpoints) == [], "no longer pages"


def offer(name: str, start: datetime, **params) -> dict:
    return {"type": "holiday_discount", "name": name, "timezone": TIMEZONE,
            "starts_at": local_minutes(start) + ":00",
            "ends_at": local_minutes(start + timedelta(days=40)) + ":00",
            "budget": {"amount": "1000.00"}, "conditions": {"min_amount": "20.00"},
            "params": {"percent": "15", "max_discount": "30.00", **params}}


def make_offers(server) -> dict:
    """The merchant's drafts, made with the portal's own functions on the server's database
    (the offer form is another test's); two of them sent for approval."""
    from merchant_portal.models import PortalLogin
    from merchant_portal.offers import create_offer, submit_offer
    from promo_engine.app import create_app
    from promo_engine.config import Settings
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service
    start = (datetime.now(ZoneInfo(TIMEZONE)) - timedelta(days=3)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    app = create_app(Settings.from_env(server.env), test_config={"TESTING": True})
    made = {}
    try:
        with app.test_request_context():
            user = db.session.query(PortalLogin).filter_by(email=MERCHANT.email).one()
            for key, name in (("live", "Dumpling week 15% off"), ("pending", "Lunch 10% off"),
                              ("draft", "Mid-autumn mooncake deal")):
                row, problems = create_offer(user, lambda campaign_id, name=name: {
                    **offer(name, start), "id": campaign_id,
                    "merchants": [MERCHANT.merchant_id]})
                assert problems is None, problems
                made[key] = row.id
                if key != "draft":
                    submit_offer(user, row)
        return made
    finally:
        promo_service(app).close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def pay(event_id: str, user_id: str, amount: str, at: datetime) -> dict:
    return {"event_id": event_id, "type": "payment", "user_id": user_id,
            "occurred_at": at.replace(microsecond=0).isoformat(), "amount": amount,
            "merchant_id": MERCHANT.merchant_id, "currency": "CNY", "channel": "qr"}


@pytest.fixture(scope="module")
def shown(browser, live_server):
    """A merchant with a live offer (payments three days ago, yesterday and today, one partly
    refunded), one waiting for approval and a draft; and an activation for the Program page."""
    server = live_server
    _cli(server.env, server.workdir, "merchants", "create", MERCHANT.merchant_id,
         "--name", MERCHANT.name, "--email", MERCHANT.email, "--password-stdin",
         stdin=MERCHANT.password + "\n")
    server.accounts["pages"] = MERCHANT
    made = make_offers(server)
    admin = Portal.open(browser, server, lang="en", device="desktop",
                        viewport=VIEWPORTS["desktop"], screenshots=SCREENSHOTS)
    try:
        admin.login(server.accounts["admin"])
        admin.approve(made["live"])
        assert not admin.problems, admin.problems
    finally:
        admin.close()
    now = datetime.now(ZoneInfo(TIMEZONE))
    today = now - timedelta(minutes=1)
    pay_when_open(server, payment("e2e-pages-pay-0", MERCHANT.merchant_id, "120.00",
                                  user_id="u_e2e_pages_1"))
    three_days_ago = (now - timedelta(days=3)).replace(hour=12, minute=0)
    yesterday = (now - timedelta(days=1)).replace(hour=12, minute=30)
    at = today.replace(microsecond=0).isoformat()
    events = [pay("e2e-pages-pay-1", "u_e2e_pages_1", "88.00", three_days_ago),
              pay("e2e-pages-pay-2", "u_e2e_pages_2", "260.00", three_days_ago),
              pay("e2e-pages-pay-3", "u_e2e_pages_3", "45.50", yesterday),
              pay("e2e-pages-pay-4", "u_e2e_pages_2", "66.00", today),
              {"event_id": "e2e-pages-refund-4", "type": "refund", "user_id": "u_e2e_pages_2",
               "occurred_at": at, "merchant_id": MERCHANT.merchant_id, "amount": "33.00",
               "currency": "CNY", "original_event_id": "e2e-pages-pay-4"},
              {"event_id": "e2e-pages-activation-1", "type": "activation",
               "user_id": "u_e2e_pages_4", "occurred_at": at}]
    client = wallet(server)
    for event in events:
        reply = client.send_event(event)
        assert reply.status == 201, f"{event['event_id']}: {reply.text}"
    return made


ROWS: list[tuple[str, int, str, float, str, str]] = []  # page, width, lang, px, chart px, what


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page(open_portal, live_server, shown, lang, device):
    viewers = {None: open_portal(lang, device), "merchant": open_portal(lang, device),
               "admin": open_portal(lang, device)}
    viewers["merchant"].login(MERCHANT)
    viewers["admin"].login(live_server.accounts["admin"])
    failed: list[str] = []
    for portal in viewers.values():
        portal.page.on("response", lambda response, failed=failed: failed.append(
            f"{response.status} from {response.url}") if response.status >= 400 else None)
    problems: list[str] = []
    for variants in pages(shown).values():
        for name, role, path in variants:
            portal: Portal = viewers[role]
            portal.goto(path)
            portal.page.wait_for_load_state("load")
            portal.screenshot(f"page-{name}")
            where = f"{name} ({lang}, {VIEWPORTS[device]['width']}px)"
            smallest = smallest_text(portal.page)
            chart = smallest_text(portal.page, charts_only=True)
            ROWS.append((name, VIEWPORTS[device]["width"], lang,
                         smallest[0]["px"] if smallest else 0.0,
                         f"{chart[0]['px']:.1f}px" if chart else "",
                         f"{smallest[0]['text']!r} in {smallest[0]['where']}" if smallest
                         else ""))
            problems += too_small(portal.page, where)
            problems += scrolls_sideways(portal.page, where)
            if portal.html_lang() != HTML_LANG[lang]:
                problems.append(f"{where}: <html lang={portal.html_lang()!r}>")
            if portal.page.locator('head link[rel=icon][href$="favicon.svg"]').count() != 1:
                problems.append(f"{where}: no <link rel=icon>")
    # What a browser asks for on its own when a page names no icon: sent on to the icon.
    icon = viewers[None].page.request.get("/favicon.ico")
    if icon.status != 200 or not icon.headers.get("content-type", "").startswith("image/svg+xml"):
        problems.append(f"/favicon.ico: {icon.status} {icon.headers.get('content-type')}")
    problems += failed
    assert not problems, "\n".join(problems)


def test_smallest_text_table(capsys):
    """Prints (and saves) what the visits above measured: one line a page, width, language."""
    if not ROWS:
        pytest.skip("no page was visited")
    lines = [f"{'page':<22} {'width':>5} {'lang':<4} {'smallest':>8} {'charts':>7}  text",
             *(f"{name:<22} {width:>5} {lang:<4} {px:>6.1f}px {chart:>7}  {text}"
               for name, width, lang, px, chart, text in sorted(ROWS))]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "smallest-text.txt").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert min(row[3] for row in ROWS) >= MIN_TEXT_PX - 0.01
