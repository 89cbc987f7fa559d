"""Screenshots of the portal's main pages at desktop (1280x800) and phone (390x844) width, in
English and Chinese, saved under tests/screenshots/ for people to look at. Each page is also
checked for what a screenshot would show wrong: the page's language, Chinese text on Chinese
pages, the page wider than a phone, the chart missing, text drawn under 11 px (see
`text_size.py`). tests/e2e/test_every_page.py visits every other page the same way."""
from __future__ import annotations

import shutil
import subprocess
import warnings

import pytest

from .conftest import SCREENSHOTS, VIEWPORTS
from .portal import CJK, Portal, holiday_offer, pay_when_open, payment
from .text_size import too_small

pytestmark = pytest.mark.e2e

HTML_LANG = {"en": "en", "zh": "zh-Hans"}


def chinese_font_installed() -> bool:
    """Without a CJK font Chromium draws Chinese as empty boxes (.ci/run installs one)."""
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


@pytest.fixture(scope="session")
def shown_offers(browser, live_server):
    """For the "shots" merchant: an approved offer with one redemption, and one pending."""
    merchant = Portal.open(browser, live_server, lang="en", device="desktop",
                           viewport=VIEWPORTS["desktop"], screenshots=SCREENSHOTS)
    admin = Portal.open(browser, live_server, lang="en", device="desktop",
                        viewport=VIEWPORTS["desktop"], screenshots=SCREENSHOTS)
    try:
        account = live_server.accounts["shots"]
        merchant.login(account)
        admin.login(live_server.accounts["admin"])
        live = merchant.create_offer(holiday_offer("Dumpling festival 15% off", percent="15",
                                                   max_discount="30.00"))
        merchant.submit_offer(live)
        admin.approve(live)
        pay_when_open(live_server, payment("e2e-shots-pay-1", account.merchant_id, "120.00",
                                           user_id="u_e2e_shots_1"))
        pay_when_open(live_server, payment("e2e-shots-pay-2", account.merchant_id, "88.50",
                                           user_id="u_e2e_shots_2"))
        pending = merchant.create_offer(
            {"type": "points_multiplier", "name": "Double points at dinner",
             **{k: v for k, v in holiday_offer("").items() if k in ("starts_at", "ends_at",
                                                                     "timezone")},
             "multiplier": "2", "budget_points": "50000"})
        merchant.submit_offer(pending)
        problems = merchant.problems + admin.problems
        assert not problems, problems
        # The signed-in cookies, so each screenshot run need not sign in again.
        return {"live": live, "pending": pending}
    finally:
        merchant.close()
        admin.close()


# Boxes whose content is wider than they are: cut off (overflow hidden) or scrolling sideways.
CLIPPED_JS = """() => {
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (["INPUT", "TEXTAREA", "SELECT", "OPTION", "svg"].includes(el.tagName)) continue;
    if (el.closest("svg")) continue;
    const style = getComputedStyle(el);
    if (style.overflowX === "visible" || style.textOverflow === "ellipsis") continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const classes = typeof el.className === "string" ? el.className.trim() : "";
      const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
        (classes ? "." + classes.split(/\\s+/).join(".") : "");
      found.push(`${name} shows ${el.clientWidth}px of ${el.scrollWidth}px ` +
                 `(overflow-x: ${style.overflowX})`);
    }
  }
  return found;
}"""


# Short labels (status badges) broken onto two lines.
WRAPPED_BADGES_JS = """() => [...document.querySelectorAll(".badge")].filter(el => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
}).map(el => el.textContent.trim())"""

def cosmetic_findings(portal: Portal, name: str) -> list[str]:
    """What a person looking at the screenshot would remark on, without failing the test."""
    where = f"{name} ({portal.lang}, {portal.device})"
    return [f"{where}: the badge {text!r} wraps onto two lines"
            for text in portal.page.evaluate(WRAPPED_BADGES_JS)]


def page_problems(portal: Portal, name: str) -> list[str]:
    where = f"{name} ({portal.lang}, {portal.device})"
    problems = []
    if portal.html_lang() != HTML_LANG[portal.lang]:
        problems.append(f"{where}: <html lang={portal.html_lang()!r}>")
    text = portal.page.inner_text("body")
    if portal.lang == "zh" and not CJK.search(text):
        problems.append(f"{where}: no Chinese text")
    for clipped in portal.page.evaluate(CLIPPED_JS):
        problems.append(f"{where}: {clipped}")
    # Text anywhere on the page (a chart's too) drawn under 11 px fails.
    problems += too_small(portal.page, where)
    if portal.device == "phone":
        width = portal.page.evaluate("document.documentElement.scrollWidth")
        if width > VIEWPORTS["phone"]["width"]:
            problems.append(f"{where}: the page is {width}px wide on a "
                            f"{VIEWPORTS['phone']['width']}px phone (scrolls sideways)")
    return problems


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_main_pages_screenshots(open_portal, live_server, shown_offers, lang, device):
    live, pending = shown_offers["live"], shown_offers["pending"]
    merchant = open_portal(lang, device)
    problems: list[str] = []
    if lang == "zh" and not chinese_font_installed():
        problems.append("no CJK font (fc-list :lang=zh is empty): the Chinese screenshots show "
                        "boxes; apt-get install fonts-noto-cjk")

    def shoot(portal: Portal, name: str) -> None:
        portal.screenshot(name)
        problems.extend(page_problems(portal, name))
        for finding in cosmetic_findings(portal, name):
            warnings.warn(finding, UserWarning, stacklevel=1)

    merchant.goto("/portal/login")
    shoot(merchant, "login")
    merchant.login(live_server.accounts["shots"])
    merchant.goto("/portal/offers")
    assert merchant.page.locator("#offers tr[data-offer-id]").count() >= 2
    shoot(merchant, "offers")

    merchant.goto("/portal/offers/new")
    merchant.fill_offer(holiday_offer("Too generous", percent="150"))
    merchant.save_offer_form()
    error = merchant.field_error("percent")
    if not error.is_visible():
        problems.append(f"offer-form ({lang}, {device}): no inline error for percent=150")
    elif lang == "zh" and not CJK.search(error.inner_text()):
        problems.append(f"offer-form ({lang}, {device}): the inline error is not translated: "
                        f"{error.inner_text().strip()!r}")
    shoot(merchant, "offer-form-error")

    merchant.goto(f"/portal/offers/{live}")
    shoot(merchant, "offer-detail")

    merchant.goto(f"/portal/offers/{live}/results")
    chart = merchant.page.locator("#results-chart svg:visible").first  # desktop's or phone's
    if chart.count() == 0 or not chart.is_visible():
        problems.append(f"results ({lang}, {device}): no visible chart svg")
    else:
        box = chart.bounding_box()
        if not box or box["width"] < 100 or box["height"] < 50:
            problems.append(f"results ({lang}, {device}): the chart is {box}")
    shoot(merchant, "results")

    admin = open_portal(lang, device)
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/campaigns")
    if admin.page.locator("#campaigns tr[data-campaign-id] .badge-managed").count() == 0:
        problems.append(f"admin-campaigns ({lang}, {device}): no YAML campaign marked managed")
    shoot(admin, "admin-campaigns")

    admin.goto("/portal/admin/offers?state=pending")
    if admin.page.locator(f'tr[data-offer-id="{pending}"]').count() != 1:
        problems.append(f"admin-pending ({lang}, {device}): the pending offer is not listed")
    shoot(admin, "admin-pending")

    assert not problems, "\n".join(problems)
