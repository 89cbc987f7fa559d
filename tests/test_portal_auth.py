"""Portal accounts and security: logins from the CLI, Argon2id, cookies, session rotation,
rate-limited logins and CSRF on every form."""
from __future__ import annotations

import re

from click.testing import CliRunner

from test_portal_support import (ADMIN_EMAIL, EMAIL_A, MERCHANT_A, PASSWORD, Portal,  # noqa: F401
                                 accounts, admin, flashes, merchant_a, offer_row)


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("promo_portal=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def test_login_page_has_the_contract_fields(app, client):
    page = client.get("/portal/login")
    assert page.status_code == 200
    assert 'name="email"' in page.text and 'name="password"' in page.text
    assert re.search(r'<input[^>]*name="csrf_token"[^>]*type="hidden"', page.text)
    assert 'button type="submit"' in page.text
    assert '<html lang="en">' in page.text


def test_index_redirects_to_login_then_by_role(app, accounts):
    portal = Portal(app)
    assert portal.get("/portal/").headers["Location"] == "/portal/login"
    portal.login(EMAIL_A)
    assert portal.get("/portal/").headers["Location"] == "/portal/offers"
    admin_portal = Portal(app)
    admin_portal.login(ADMIN_EMAIL)
    assert admin_portal.get("/portal/").headers["Location"] == "/portal/admin/campaigns"


def test_pages_need_a_login(app, client):
    for path in ("/portal/offers", "/portal/offers/new", "/portal/offers/1",
                 "/portal/offers/1/results", "/portal/offers/1/results.csv",
                 "/portal/admin/campaigns", "/portal/admin/offers"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/portal/login?next="), path


def test_login_sets_a_hardened_session_cookie(app, accounts):
    portal = Portal(app)
    response = portal.login(EMAIL_A)
    assert response.status_code == 302 and response.headers["Location"] == "/portal/"
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie
    assert "Path=/portal" in cookie


def test_cookie_is_not_secure_in_development(settings, monkeypatch):
    from promo_engine.app import create_app
    from promo_engine.ledger.schema import upgrade

    from test_portal_support import make_accounts
    monkeypatch.setenv("PROMO_ENV", "development")
    upgrade(settings.database_url)
    app = create_app(settings, test_config={"TESTING": True})
    make_accounts(app)
    cookie = session_cookie(Portal(app).login(EMAIL_A))
    assert "Secure" not in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_rotates_the_session(app, accounts):
    portal = Portal(app)
    portal.get("/portal/login")
    before = portal.client.get_cookie("promo_portal", path="/portal").value
    token_before = portal.csrf_token()
    portal.login(EMAIL_A)
    after = portal.client.get_cookie("promo_portal", path="/portal").value
    assert after != before
    with portal.client.session_transaction("/portal/") as session:
        assert set(session) >= {"login_id", "epoch", "nonce"}
        assert session.get("csrf_token") is None  # the pre-login token was dropped
    assert portal.csrf_token() != token_before


def test_a_session_cookie_from_before_logout_no_longer_works(app, merchant_a):
    saved = merchant_a.client.get_cookie("promo_portal", path="/portal").value
    assert merchant_a.post("/portal/logout").headers["Location"] == "/portal/login"
    assert merchant_a.get("/portal/offers").status_code == 302
    replay = Portal(app)
    replay.client.set_cookie("promo_portal", saved, path="/portal")
    assert replay.get("/portal/offers").status_code == 302


def test_wrong_password_is_refused(app, accounts):
    portal = Portal(app)
    response = portal.login(EMAIL_A, "not the password at all")
    assert response.status_code == 401
    assert flashes(response) == ["Email or password is incorrect."]
    assert portal.get("/portal/offers").status_code == 302
    assert Portal(app).login("nobody@example.com").status_code == 401


def test_passwords_are_stored_as_argon2id_with_owasp_parameters(app, accounts):
    from sqlalchemy import select

    from merchant_portal.models import PortalLogin
    from promo_engine.ledger.extensions import db
    with app.app_context():
        hashes = db.session.scalars(select(PortalLogin.password_hash)).all()
    assert len(hashes) == 3
    for value in hashes:
        assert value.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert PASSWORD not in value


def test_login_attempts_are_rate_limited_per_address_and_email(app, accounts):
    portal = Portal(app)
    for _ in range(5):
        assert portal.login(EMAIL_A, "wrong password here").status_code == 401
    limited = portal.login(EMAIL_A)  # the right password, but too many attempts
    assert limited.status_code == 429
    assert "Too many attempts" in limited.text
    assert portal.get("/portal/offers").status_code == 302
    assert Portal(app).login(ADMIN_EMAIL).status_code == 302  # another email is not limited


def test_successful_logins_do_not_use_up_the_limit(app, accounts):
    for _ in range(7):
        assert Portal(app).login(EMAIL_A).status_code == 302


def test_login_without_csrf_token_is_refused(app, accounts):
    portal = Portal(app)
    portal.get("/portal/login")
    response = portal.post("/portal/login", {"email": EMAIL_A, "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "The form had expired" in response.text
    assert portal.get("/portal/offers").status_code == 302


def test_every_form_refuses_a_missing_or_wrong_csrf_token(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    before = offer_row(app, offer_id)
    merchant_posts = ["/portal/offers/new", f"/portal/offers/{offer_id}/edit",
                      f"/portal/offers/{offer_id}/submit", f"/portal/offers/{offer_id}/pause",
                      f"/portal/offers/{offer_id}/resume",
                      f"/portal/offers/{offer_id}/duplicate", "/portal/logout"]
    for path in merchant_posts:
        for data in ({"name": "x"}, {"name": "x", "csrf_token": "forged"}):
            response = merchant_a.post(path, data, csrf=False)
            assert response.status_code == 400, path
    admin_posts = [f"/portal/admin/offers/{offer_id}/approve",
                   f"/portal/admin/offers/{offer_id}/reject", "/portal/admin/campaigns/x/pause"]
    for path in admin_posts:
        assert admin.post(path, {"reason": "no"}, csrf=False).status_code == 400, path
    assert offer_row(app, offer_id) == before
    assert merchant_a.get("/portal/offers").status_code == 200  # still signed in
    from sqlalchemy import func, select

    from merchant_portal.models import MerchantOffer
    from promo_engine.ledger.extensions import db
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MerchantOffer)) == 1


def test_next_parameter_stays_inside_the_portal(app, accounts):
    portal = Portal(app)
    response = portal.post("/portal/login?next=/portal/offers/new",
                           {"email": EMAIL_A, "password": PASSWORD})
    assert response.headers["Location"] == "/portal/offers/new"
    portal = Portal(app)
    response = portal.post("/portal/login?next=https://evil.example/portal/",
                           {"email": EMAIL_A, "password": PASSWORD})
    assert response.headers["Location"] == "/portal/"


def test_portal_pages_send_security_headers(app, client):
    response = client.get("/portal/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_static_css_is_served_by_the_app(app, client):
    response = client.get("/portal/static/portal.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert "http" not in client.get("/portal/login").text.split("<body")[0].replace(
        "http-equiv", "")  # no external stylesheet or script in <head>


def test_portal_errors_are_html_and_api_errors_stay_json(app, merchant_a):
    response = merchant_a.get("/portal/offers/999")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is nothing here." in response.text
    assert app.test_client().get("/nowhere").json["error"]["code"] == "not_found"


# --- the CLI -------------------------------------------------------------------------------

def _cli(settings, args, password):
    from promo_engine.cli import main
    from promo_engine.ledger.schema import upgrade
    upgrade(settings.database_url)
    env = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key}
    return CliRunner().invoke(main, args, input=password + "\n", env=env)


def test_cli_creates_a_merchant_login_that_can_sign_in(app, settings):
    result = _cli(settings, ["merchants", "create", "m_300", "--name", "Dumpling Co",
                             "--email", "Owner@Dumpling.cn", "--password-stdin"], PASSWORD)
    assert result.exit_code == 0, result.output
    assert result.output == "created merchant m_300 with login owner@dumpling.cn\n"
    portal = Portal(app)
    assert portal.login("owner@dumpling.cn").status_code == 302
    assert "Dumpling Co" in portal.get("/portal/offers").text


def test_cli_creates_an_admin_login(app, settings):
    result = _cli(settings, ["admins", "create", "ops@bank.cn", "--password-stdin"], PASSWORD)
    assert result.exit_code == 0, result.output
    assert result.output == "created admin ops@bank.cn\n"
    portal = Portal(app)
    assert portal.login("ops@bank.cn").headers["Location"] == "/portal/"
    assert portal.get("/portal/").headers["Location"] == "/portal/admin/campaigns"


def test_cli_refuses_duplicates_and_weak_passwords(app, settings):
    args = ["merchants", "create", "m_300", "--name", "A", "--email", "a@b.cn",
            "--password-stdin"]
    assert _cli(settings, args, PASSWORD).exit_code == 0
    again = _cli(settings, args, PASSWORD)
    assert again.exit_code == 1 and "merchant m_300 already exists" in again.output
    weak = _cli(settings, ["admins", "create", "x@b.cn", "--password-stdin"], "short")
    assert weak.exit_code == 1 and "at least 12 characters" in weak.output
    taken = _cli(settings, ["admins", "create", "a@b.cn", "--password-stdin"], PASSWORD)
    assert taken.exit_code == 1 and "a login for a@b.cn already exists" in taken.output
