"""Helpers for the portal tests: accounts, a signed-in browser-like client, offers.

No tests here: each test_portal_* module imports the fixtures it uses."""
from __future__ import annotations

import re

import pytest

PASSWORD = "correct horse battery staple"
MERCHANT_A, MERCHANT_B = "m_100", "m_200"
EMAIL_A, EMAIL_B, ADMIN_EMAIL = "tea@shop-a.cn", "noodles@shop-b.cn", "marketing@bank.cn"
CSRF = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')
OFFER = {
    "type": "holiday_discount", "name": "Spring 15% off",
    "starts_at": "2026-01-01T00:00", "ends_at": "2030-01-01T00:00",
    "timezone": "Asia/Shanghai", "percent": "15", "max_discount": "30.00",
    "budget_amount": "1000.00",
}
MULTIPLIER = {
    "type": "points_multiplier", "name": "Double points",
    "starts_at": "2026-01-01T00:00", "ends_at": "2030-01-01T00:00",
    "timezone": "Asia/Shanghai", "multiplier": "2", "budget_points": "100000",
}


class Portal:
    """A test client that signs in and posts forms with their CSRF token, as a browser."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.home = "/portal/login"

    def get(self, path, **kwargs):
        return self.client.get(path, **kwargs)

    def csrf_token(self) -> str:
        page = self.client.get(self.home)
        match = CSRF.search(page.text)
        assert match, f"no CSRF token on {self.home}"
        return match.group(1)

    def login(self, email: str, password: str = PASSWORD):
        self.home = "/portal/login"
        response = self.post("/portal/login", {"email": email, "password": password})
        if response.status_code == 302:
            self.home = "/portal/admin/campaigns" if email == ADMIN_EMAIL else "/portal/offers"
        return response

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = self.csrf_token()
        return self.client.post(path, data=data, **kwargs)

    def create_offer(self, **fields) -> int:
        response = self.post("/portal/offers/new", {**OFFER, **fields})
        assert response.status_code == 302, response.text
        return int(response.headers["Location"].rsplit("/", 1)[1])


def make_accounts(app):
    from merchant_portal.accounts import create_admin, create_merchant
    with app.app_context():
        create_merchant(MERCHANT_A, "Tea House", EMAIL_A, PASSWORD)
        create_merchant(MERCHANT_B, "Noodle Bar", EMAIL_B, PASSWORD)
        create_admin(ADMIN_EMAIL, PASSWORD)


@pytest.fixture
def accounts(app):
    make_accounts(app)


@pytest.fixture
def merchant_a(app, accounts):
    portal = Portal(app)
    assert portal.login(EMAIL_A).status_code == 302
    return portal


@pytest.fixture
def merchant_b(app, accounts):
    portal = Portal(app)
    assert portal.login(EMAIL_B).status_code == 302
    return portal


@pytest.fixture
def admin(app, accounts):
    portal = Portal(app)
    assert portal.login(ADMIN_EMAIL).status_code == 302
    return portal


def offer_row(app, offer_id: int):
    from merchant_portal.models import MerchantOffer
    from promo_engine.ledger.extensions import db
    with app.app_context():
        row = db.session.get(MerchantOffer, offer_id)
        snapshot = {c.name: getattr(row, c.name) for c in row.__table__.columns}
        db.session.remove()
        return snapshot


def campaign_row(app, campaign_id: str):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    with app.app_context():
        row = db.session.get(CampaignRecord, campaign_id)
        snapshot = None if row is None else {c.name: getattr(row, c.name)
                                             for c in row.__table__.columns}
        db.session.remove()
        return snapshot


def audit_rows(app, campaign_id: str) -> list[tuple]:
    from sqlalchemy import select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit
    with app.app_context():
        rows = db.session.execute(
            select(CampaignAudit.from_status, CampaignAudit.to_status, CampaignAudit.actor,
                   CampaignAudit.reason)
            .where(CampaignAudit.campaign_id == campaign_id).order_by(CampaignAudit.id)).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def flashes(response) -> list[str]:
    return re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', response.text)


def field_errors(response) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name, message in re.findall(
            r'<p class="field-error" data-field="([^"]+)"[^>]*>([^<]*)</p>', response.text):
        errors.setdefault(name, []).append(message)
    return errors


def approve(admin_portal: Portal, offer_id: int):
    response = admin_portal.post(f"/portal/admin/offers/{offer_id}/approve")
    assert response.status_code == 302
    return response
