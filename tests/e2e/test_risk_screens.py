"""The bank's Risk page and events page in the browser at desktop (1280 px) and phone (390 px)
width, in English and Chinese, on the history of `risk_history.py` (its campaigns, merchants
and devices renamed for this shared server) posted through the API as the wallet would:
screenshots saved as tests/screenshots/risk-<lang>-<device>.png and events-<lang>-<device>.png,
and checked for what would make them hard to read (page_problems: the page wider than the
phone, content cut off, no Chinese), untranslated headings, and every row linking to its
events."""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .conftest import _cli
from .portal import TIMEZONE, wallet
from .test_screenshots import chinese_font_installed, cosmetic_findings, page_problems

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import risk_history  # noqa: E402

pytestmark = pytest.mark.e2e

# Real device ids are long opaque strings: the pages must wrap them, on a phone too.
NAMES = {"m_100": "m_e2e_risk_tea", "m_200": "m_e2e_risk_noodles", "m_300": "m_e2e_risk_bakery",
         "m_999": "m_e2e_risk_other", "dev-farm": "dev-7f3a9c2e-41b8-4d6a-a0e5-9b1c2d3e4f50",
         "dev-n1": "dev-0c5d1e6f-2a3b-4c7d-8e9f-a1b2c3d4e5f6", "dev-pair": "dev-pair-5b6c7d8e9f",
         "welcome": "e2e-risk-welcome", "dining": "e2e-risk-dining", "future": "e2e-risk-future"}


def renamed(value):
    if isinstance(value, dict):
        return {key: renamed(item) for key, item in value.items()}
    if isinstance(value, str):
        return NAMES.get(value, value)
    return value


@pytest.fixture(scope="session")
def risk_history_posted(live_server):
    text = risk_history.CAMPAIGNS
    for old, new in NAMES.items():
        text = text.replace(f"id: {old}\n", f"id: {new}\n").replace(old + ",", new + ",") \
            .replace(old + "]", new + "]")
    (live_server.workdir / "risk.yaml").write_text(text)
    (live_server.workdir / "risk-policy.yaml").write_text(risk_history.POLICY)
    _cli(live_server.env, live_server.workdir, "campaigns", "apply",
         str(live_server.workdir / "risk.yaml"), str(live_server.workdir / "risk-policy.yaml"))
    client = wallet(live_server)
    base = datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0)
    for body in risk_history.events(base):
        body = renamed(body)
        body["event_id"] = "e2e-risk-" + body["event_id"]
        body["user_id"] = "u_e2e_risk_" + body["user_id"]
        if "original_event_id" in body:
            body["original_event_id"] = "e2e-risk-" + body["original_event_id"]
        reply = client.send_event(body)
        assert reply.status == 201, reply.text
    return base


HEADINGS = {"en": ["Users with the most campaign rewards", "Devices used by several users",
                   "Refunds of rewarded payments by merchant"],
            "zh": ["获得活动奖励最多的用户", "多个用户共用的设备", "各商户获奖支付的退款情况"]}


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_risk_screens(open_portal, live_server, risk_history_posted, lang, device):
    admin = open_portal(lang, device)
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/risk")
    admin.screenshot("risk")
    problems = page_problems(admin, "risk") + cosmetic_findings(admin, "risk")
    if lang == "zh" and not chinese_font_installed():
        problems.append("no CJK font (fc-list :lang=zh is empty)")
    text = admin.page.inner_text("main")
    problems += [f"risk ({lang}, {device}): no heading {h!r}" for h in HEADINGS[lang]
                 if h not in text]
    rows = admin.page.locator("main table tbody tr")
    for index in range(rows.count()):
        if not rows.nth(index).locator("a[href*='/portal/admin/events?']").count():
            problems.append(f"risk ({lang}, {device}): row {index} has no link to its events")
    flagged = admin.page.locator("#risk-merchants tr[data-merchant-id=m_e2e_risk_tea] .badge")
    if flagged.count() != 1:
        problems.append(f"risk ({lang}, {device}): the tea shop is not flagged")

    # The shared device's link: its events, newest first.
    admin.page.locator(f"#risk-shared-devices tr[data-device-id={NAMES['dev-farm']}] a").click()
    admin.page.wait_for_selector("#events")
    admin.screenshot("events")
    problems += page_problems(admin, "events") + cosmetic_findings(admin, "events")
    shown = admin.page.locator("#events tr[data-event-id]").count()
    if shown != 15:
        problems.append(f"events ({lang}, {device}): {shown} events of the device, not 15")
    assert not problems, "\n".join(problems)
