"""The held-rewards queue in the browser at desktop (1280 px) and phone (390 px) width, in
English and Chinese: cashback above the risk policy's hold amount is held, listed, then
released and voided with the page's buttons, each confirmed first. Screenshots are saved as
tests/screenshots/holds-<lang>-<device>.png (the queue, a void being confirmed) and
holds-decided-<lang>-<device>.png (after the decisions), and checked as the other pages are."""
from __future__ import annotations

import time

import pytest

from .conftest import _cli
from .portal import payment, wallet
from .test_screenshots import chinese_font_installed, page_problems

pytestmark = pytest.mark.e2e

MERCHANT = "m_e2e_holds"
HOLDS_YAML = f"""\
id: e2e-first-pay-cashback
name: 150 yuan back on a first payment
type: first_activation_bonus
merchants: [{MERCHANT}]
timezone: Asia/Shanghai
starts_at: 2026-01-01T00:00:00
ends_at: 2029-01-01T00:00:00
params: {{on: first_payment, cashback: "150.00"}}
---
risk_policy:
  hold: {{cashback_above: "100.00"}}
"""


@pytest.fixture(scope="session")
def holds_policy(live_server):
    (live_server.workdir / "holds.yaml").write_text(HOLDS_YAML)
    _cli(live_server.env, live_server.workdir, "campaigns", "apply",
         str(live_server.workdir / "holds.yaml"))


def held_rewards(live_server, prefix: str, users: int) -> list[str]:
    """First payments of `users` new users, each granted a held 150.00 cashback, once the
    server has the campaign and the policy (quotes say so first, recording nothing)."""
    client = wallet(live_server)
    deadline = time.monotonic() + 15
    ids = []
    for n in range(users):
        event = payment(f"{prefix}-{n}", MERCHANT, "300.00", f"{prefix}_user_{n}")
        while True:
            quote = client.quote({k: v for k, v in event.items() if k != "event_id"})
            if any(r.get("held") for r in quote.body["rewards"]):
                break
            assert time.monotonic() < deadline, f"no held cashback quoted: {quote.body}"
            time.sleep(0.2)
        reply = client.send_event(event)
        assert reply.status == 201, reply.text
        [held] = [r["reward_id"] for r in reply.body["rewards"] if r.get("held")]
        ids.append(held)
    return ids


def decide(admin, reward_id: str, action: str, note: str = "") -> None:
    """Open the action's confirmation in the row, write the note, confirm."""
    row = admin.page.locator(f'#holds tr[data-reward-id="{reward_id}"]')
    details = row.locator(f'details:has(form.{action})')
    details.locator("summary").click()
    form = details.locator("form")
    assert form.is_visible()
    if note:
        form.locator("input[name=note]").fill(note)
    with admin.page.expect_navigation():
        form.locator("button[type=submit]").click()


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_held_rewards_queue(open_portal, live_server, holds_policy, lang, device):
    ids = held_rewards(live_server, f"e2e-hold-{lang}-{device}", 3)
    admin = open_portal(lang, device)
    admin.login(live_server.accounts["admin"])
    admin.goto("/portal/admin/holds")
    problems = []
    for reward_id in ids:
        row = admin.page.locator(f'#holds tr[data-reward-id="{reward_id}"]')
        assert row.count() == 1
        amount = row.locator("[data-stat=amount]").inner_text()
        assert amount == ("CN¥150.00" if lang == "en" else "¥150.00"), amount
    nav = admin.page.locator('nav.mainnav a[href="/portal/admin/holds"]')
    assert nav.count() == 1 and "active" in (nav.get_attribute("class") or "")

    # A decision is confirmed before it is sent: the void's confirmation, open.
    row = admin.page.locator(f'#holds tr[data-reward-id="{ids[1]}"]')
    row.locator("details:has(form.void) summary").click()
    assert row.locator("form.void button[type=submit]").is_visible()
    admin.page.evaluate("window.scrollTo(0, 0)")  # the sticky header where it belongs
    path = admin.screenshot("holds")
    problems += page_problems(admin, "holds")
    if lang == "zh" and not chinese_font_installed():
        problems.append("no CJK font (fc-list :lang=zh is empty)")

    admin.goto("/portal/admin/holds")
    decide(admin, ids[0], "release", note="known customer" if lang == "en" else "老客户")
    assert len(admin.flashes()) == 1 and ids[0] in admin.flashes()[0]
    decide(admin, ids[1], "void")
    assert len(admin.flashes()) == 1 and ids[1] in admin.flashes()[0]
    assert admin.page.locator(f'#holds tr[data-reward-id="{ids[2]}"]').count() == 1
    decided = admin.page.locator("#decided")
    assert decided.locator(f'tr[data-reward-id="{ids[0]}"] [data-status=released]').count() == 1
    assert decided.locator(f'tr[data-reward-id="{ids[1]}"] [data-status=voided]').count() == 1
    decided_path = admin.screenshot("holds-decided")
    problems += page_problems(admin, "holds-decided")
    decide(admin, ids[2], "release")  # the queue empty again for the next screenshots
    assert admin.page.locator("#no-holds").is_visible()
    assert path.exists() and decided_path.exists()
    assert not problems, "\n".join(problems)
