"""The merchant portal as a person uses it, through a Playwright page: log in, fill in the
offer form, press the buttons. Written against the portal's route and markup contract."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from promo_engine.client import PromoClient

TIMEZONE = "Asia/Shanghai"
TIMEOUT_MS = 10_000
OFFER_URL = re.compile(r"/portal/offers/([^/?#]+)(?:[/?#].*)?$")
# The page's header has a sign-out form too: the buttons are found in their own forms.
LOGIN_SUBMIT = "form:has(input[name=password]) button[type=submit]"
OFFER_SUBMIT = "form:has([name=percent]) button[type=submit]"
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class Account:
    merchant_id: str | None
    name: str | None
    email: str
    password: str


def local_minutes(moment: datetime) -> str:
    """A datetime-local input's value (minutes, no zone)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def open_schedule(days: int = 30) -> tuple[str, str]:
    """starts_at/ends_at (local time in TIMEZONE) of an offer that is open now."""
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(second=0, microsecond=0)
    start = (now - timedelta(days=1)).replace(hour=0, minute=0)
    return local_minutes(start), local_minutes(start + timedelta(days=days + 1))


def holiday_offer(name: str, **overrides: str) -> dict:
    starts_at, ends_at = open_schedule()
    values = {"type": "holiday_discount", "name": name, "starts_at": starts_at,
              "ends_at": ends_at, "timezone": TIMEZONE, "min_amount": "50.00", "percent": "10",
              "max_discount": "50.00", "budget_amount": "1000.00", "per_user": "3"}
    values.update(overrides)
    return values


class Portal:
    """One browser context (its own cookies) on the live server, with one page."""

    def __init__(self, context, page, server, lang: str, device: str, screenshots: Path):
        self.context, self.page, self.server = context, page, server
        self.lang, self.device, self.screenshots = lang, device, screenshots
        self.problems: list[str] = []
        page.on("response", self._on_response)
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))

    @classmethod
    def open(cls, browser, server, *, lang: str, device: str, viewport: dict,
             screenshots: Path) -> "Portal":
        phone = device == "phone"
        context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone,
                                      device_scale_factor=1, base_url=server.url,
                                      locale="zh-CN" if lang == "zh" else "en-US",
                                      timezone_id=TIMEZONE)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        portal = cls(context, context.new_page(), server, lang, device, screenshots)
        portal.set_language(lang)
        return portal

    def _on_response(self, response) -> None:
        if response.status >= 500:
            self.problems.append(f"{response.status} from {response.request.method} {response.url}")

    def close(self) -> None:
        self.context.close()

    # navigation -----------------------------------------------------------------------------

    def goto(self, path: str):
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (
            f"GET {path}: {response.status if response else 'no response'}")
        return response

    def set_language(self, lang: str) -> None:
        self.goto(f"/portal/lang/{lang}")
        self.lang = lang

    def html_lang(self) -> str:
        return self.page.locator("html").get_attribute("lang") or ""

    def login(self, account: Account, *, reuse: bool = True) -> None:
        """Sign in with the login form; later sign-ins of the same account (in other browser
        contexts) reuse its session cookie while the server still accepts it."""
        cookies = self.server.sessions.get(account.email) if reuse else None
        if cookies:
            self.context.add_cookies(cookies)
            self.set_language(self.lang)  # redirects to /portal/: the account's home page
            if "/portal/login" not in self.page.url:
                return
            self.context.clear_cookies()
            self.set_language(self.lang)
        self.goto("/portal/login")
        self.page.fill("input[name=email]", account.email)
        self.page.fill("input[name=password]", account.password)
        with self.page.expect_navigation():
            self.page.click(LOGIN_SUBMIT)
        assert "/portal/login" not in self.page.url, (
            f"login as {account.email} failed: still on {self.page.url}: {self.flashes()}")
        self.server.sessions[account.email] = self.context.cookies()

    def flashes(self) -> list[str]:
        return [text.strip() for text in self.page.locator("#flash .flash").all_inner_texts()]

    def press(self, action_path: str) -> None:
        """Click the submit button of the POST form whose action ends with action_path."""
        button = self.page.locator(f'form[action$="{action_path}"] [type=submit]').first
        with self.page.expect_navigation():
            button.click()

    def field_error(self, name: str):
        return self.page.locator(f'.field-error[data-field="{name}"]')

    # offers ---------------------------------------------------------------------------------

    def fill_offer(self, values: dict) -> None:
        page = self.page
        if "type" in values:
            page.select_option("select[name=type]", values["type"])
        for name, value in values.items():
            if name == "type":
                continue
            if name == "timezone":
                page.select_option("select[name=timezone]", value)
            elif name == "window_days":
                for box in page.locator("input[name=window_days]").all():
                    box.set_checked(box.get_attribute("value") in value)
            else:
                page.fill(f"[name={name}]", value)

    def save_offer_form(self) -> None:
        with self.page.expect_navigation():
            self.page.click(OFFER_SUBMIT)

    def create_offer(self, values: dict) -> str:
        """Fill in /portal/offers/new, save it and return the new offer's id."""
        self.goto("/portal/offers/new")
        self.fill_offer(values)
        self.save_offer_form()
        return self.offer_id_after_save(values["name"])

    def offer_id_after_save(self, name: str) -> str:
        errors = self.page.locator(".field-error").all_inner_texts()
        assert not [e for e in errors if e.strip()], f"the offer form has errors: {errors}"
        match = OFFER_URL.search(self.page.url.split("?")[0])
        if match and match.group(1) not in ("new",):
            return match.group(1)
        self.goto("/portal/offers")  # saved to the list: find it there by its name
        row = self.page.locator("tr[data-offer-id]", has_text=name).first
        return row.get_attribute("data-offer-id")

    def offer_status(self, offer_id: str) -> str:
        self.goto("/portal/offers")
        row = self.page.locator(f'#offers tr[data-offer-id="{offer_id}"]')
        return row.locator(".status").inner_text().strip()

    def submit_offer(self, offer_id: str) -> None:
        self.goto(f"/portal/offers/{offer_id}")
        self.press(f"/portal/offers/{offer_id}/submit")

    # admin ----------------------------------------------------------------------------------

    def approve(self, offer_id: str) -> None:
        self.goto("/portal/admin/offers?state=pending")
        row = self.page.locator(f'tr[data-offer-id="{offer_id}"]')
        assert row.count() == 1, f"offer {offer_id} is not among the pending offers"
        row.locator('details:has(form[action$="/approve"]) > summary').first.click()
        with self.page.expect_navigation():
            row.locator('form[action$="/approve"] [type=submit]').first.click()

    # screenshots ----------------------------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}-{self.lang}-{self.device}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def wallet(server) -> PromoClient:
    return PromoClient(server.url, server.api_key["key_id"], server.api_key["secret"])


def payment(event_id: str, merchant_id: str, amount: str, user_id: str) -> dict:
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(microsecond=0)
    return {"event_id": event_id, "type": "payment", "user_id": user_id,
            "occurred_at": now.isoformat(), "merchant_id": merchant_id, "amount": amount,
            "currency": "CNY", "channel": "qr"}


def pay_when_open(server, event: dict, *, seconds: float = 10) -> dict:
    """Wait (with side-effect-free quotes) until a discount is offered for this payment, then
    send it as a signed event; return the event's response body."""
    client = wallet(server)
    deadline = time.monotonic() + seconds
    while True:
        quote = client.quote({k: v for k, v in event.items() if k != "event_id"})
        assert quote.status == 200, quote.text
        if any(r["kind"] == "discount" for r in quote.body["rewards"]):
            break
        assert time.monotonic() < deadline, (
            f"no discount offered {seconds} s after approval: {quote.body}")
        time.sleep(0.2)
    reply = client.send_event(event)
    assert reply.status == 201, reply.text
    return reply.body
