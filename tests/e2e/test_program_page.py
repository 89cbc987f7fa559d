"""The bank's Program page in the browser at desktop (1280 px) and phone (390 px) width, in
English and Chinese, on a posted 12-week history: screenshots saved as
tests/screenshots/program-<lang>-<device>.png, and checked for what would make them hard to
read: any visible text under 11 px (chart labels scaled down included), the page wider than
the phone, content cut off, the charts missing."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .conftest import _cli
from .portal import TIMEZONE, wallet
from .test_screenshots import chinese_font_installed, page_problems

pytestmark = pytest.mark.e2e

WELCOME = """\
id: e2e-program-welcome
name: Welcome cashback (program page)
type: first_activation_bonus
timezone: Asia/Shanghai
starts_at: 2026-01-01T00:00:00
ends_at: 2029-01-01T00:00:00
params: {on: activation, cashback: "5.00"}
"""

# Every visible text's size as drawn: an SVG's text scaled by the SVG's width over its viewBox.
SMALL_TEXT_JS = """() => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest("title, style, script")) continue;
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    let size = parseFloat(style.fontSize);
    const svg = el.closest("svg");
    if (svg) size *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    if (size < 11) small.push(`${el.tagName} "${node.textContent.trim().slice(0, 30)}" ` +
                              `${size.toFixed(1)}px`);
  }
  return small;
}"""


@pytest.fixture(scope="session")
def program_history(live_server):
    """A welcome cashback and 12 weeks of activations and first payments (some soon, some
    later, some never), posted through the API as the wallet would."""
    (live_server.workdir / "program.yaml").write_text(WELCOME)
    _cli(live_server.env, live_server.workdir, "campaigns", "apply",
         str(live_server.workdir / "program.yaml"))
    client = wallet(live_server)
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0)
    events = []
    for day in range(83, -1, -1):
        for n in range(1 + (day * 7) % 4):
            user = f"u_prog_{day}_{n}"
            at = now - timedelta(days=day, hours=n + 1)
            events.append((at, {"type": "activation", "user_id": user}))
            delay = (day + n * 5) % 13 * 3  # 0 to 36 days; some never pay
            if delay < 33 and at + timedelta(days=delay) < now:
                for k in range(1 + n % 2):
                    paid = at + timedelta(days=delay + 7 * k, minutes=30)
                    if paid < now:
                        events.append((paid, {"type": "payment", "user_id": user,
                                              "merchant_id": "m_e2e_program", "amount": "36.50",
                                              "currency": "CNY"}))
    events.sort(key=lambda item: item[0])
    for index, (at, body) in enumerate(events):
        reply = client.send_event({**body, "event_id": f"e2e-prog-{index}",
                                   "occurred_at": at.isoformat()})
        assert reply.status == 201, reply.text
    return len(events)


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_program_page(open_portal, live_server, program_history, lang, device):
    admin = open_portal(lang, device)
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/program")
    path = admin.screenshot("program")
    problems = page_problems(admin, "program")
    if lang == "zh" and not chinese_font_installed():
        problems.append("no CJK font (fc-list :lang=zh is empty)")
    problems += [f"program ({lang}, {device}): text under 11 px: {found}"
                 for found in admin.page.evaluate(SMALL_TEXT_JS)]
    # Desktops see the wide drawings, phones the narrow ones (program_charts.py).
    shown = (("#activations-wide", "#cohorts-wide", "#payers-wide") if device == "desktop"
             else ("#activations-narrow", "#cohorts-chart", "#payers-chart"))
    for chart in shown:
        box = admin.page.locator(chart).bounding_box()
        if not box or box["width"] < 250 or box["height"] < 120:
            problems.append(f"program ({lang}, {device}): {chart} is {box}")
    if admin.page.locator("#program-campaigns tr[data-campaign-id=e2e-program-welcome]").count() != 1:
        problems.append(f"program ({lang}, {device}): the welcome campaign's cost is not listed")
    assert admin.page.locator("#program-cohorts tr[data-week]").count() == 12
    assert path.exists()
    assert not problems, "\n".join(problems)
