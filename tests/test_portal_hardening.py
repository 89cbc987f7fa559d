"""Hostile input gets the portal's 4xx answers, never a 500: ids beyond PostgreSQL's bigint,
redirect targets after login, NUL characters, and password spraying from one address."""
from __future__ import annotations

import secrets

from conftest import make_redis_settings, running_app
from test_portal_support import (ADMIN_EMAIL, EMAIL_A, EMAIL_B, OFFER, PASSWORD,  # noqa: F401
                                 Portal, accounts, admin, approve, flashes, merchant_a, offer_row)

# Not ids a row can have: past bigint (2^63, 2^64), zero, negative, absurdly long, and a
# non-ASCII digit (Arabic-Indic one, which Python's int() would accept).
BAD_IDS = ("9223372036854775808", "18446744073709551616", "0", "-1", "1" * 40, "\u0661")
LARGEST_ID = "9223372036854775807"  # a valid bigint: the query runs, and finds nothing

MERCHANT_ROUTES = (("GET", "/portal/offers/{}"), ("GET", "/portal/offers/{}/edit"),
                   ("POST", "/portal/offers/{}/edit"), ("GET", "/portal/offers/{}/results"),
                   ("GET", "/portal/offers/{}/results.csv"), ("POST", "/portal/offers/{}/submit"),
                   ("POST", "/portal/offers/{}/pause"), ("POST", "/portal/offers/{}/resume"),
                   ("POST", "/portal/offers/{}/duplicate"))
ADMIN_ROUTES = (("POST", "/portal/admin/offers/{}/approve"),
                ("POST", "/portal/admin/offers/{}/reject"), ("GET", "/portal/offers/{}"),
                ("GET", "/portal/offers/{}/results"), ("GET", "/portal/offers/{}/results.csv"))


def send(portal: Portal, method: str, path: str, data: dict | None = None, **kwargs):
    if method == "GET":
        return portal.get(path, **kwargs)
    return portal.post(path, data, **kwargs)


def offer_count(app) -> int:
    from sqlalchemy import func, select

    from merchant_portal.models import MerchantOffer
    from promo_engine.ledger.extensions import db
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(MerchantOffer))
        db.session.remove()
        return count


def signed_in(portal: Portal) -> bool:
    return portal.get("/portal/offers").status_code == 200


# --- ids in paths ---------------------------------------------------------------------------

def test_ids_outside_bigint_are_404_on_every_merchant_route(app, merchant_a):
    offer_id = merchant_a.create_offer()
    before = offer_row(app, offer_id)
    for method, route in MERCHANT_ROUTES:
        for bad in (*BAD_IDS, LARGEST_ID):
            response = send(merchant_a, method, route.format(bad), {"reason": "x", **OFFER})
            assert response.status_code == 404, (method, route, bad)
    assert offer_row(app, offer_id) == before
    assert offer_count(app) == 1


def test_ids_outside_bigint_are_404_on_every_admin_route(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    before = offer_row(app, offer_id)
    for method, route in ADMIN_ROUTES:
        for bad in (*BAD_IDS, LARGEST_ID):
            response = send(admin, method, route.format(bad), {"reason": "not this one"})
            assert response.status_code == 404, (method, route, bad)
    assert offer_row(app, offer_id) == before
    assert before["state"] == "pending"


def test_a_valid_id_still_reaches_its_offer(app, merchant_a):
    offer_id = merchant_a.create_offer()
    assert merchant_a.get(f"/portal/offers/{offer_id}").status_code == 200
    assert merchant_a.get(f"/portal/offers/{offer_id}/results.csv").status_code == 200


def test_campaign_ids_that_no_campaign_can_have_are_404(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    approve(admin, offer_id)
    campaign_id = offer_row(app, offer_id)["campaign_id"]
    for bad in ("a%00b", "Upper-Case", "x" * 65, "no-such-campaign", "a%20b"):
        for action in ("pause", "resume"):
            response = admin.post(f"/portal/admin/campaigns/{bad}/{action}", {"reason": "x"})
            assert response.status_code == 404, (bad, action)
    paused = admin.post(f"/portal/admin/campaigns/{campaign_id}/pause", {"reason": "checking"})
    assert paused.status_code == 302
    assert flashes(admin.get("/portal/admin/campaigns")) == ["“Spring 15% off” paused."]


def test_unknown_offer_state_filters_list_every_offer(app, merchant_a, admin):
    merchant_a.create_offer()
    for state in ("\x00", "pending'--", "x" * 3000, "9223372036854775808"):
        response = admin.get("/portal/admin/offers", query_string={"state": state})
        assert response.status_code == 200, state
        assert "Spring 15% off" in response.text


# --- NUL characters in forms ----------------------------------------------------------------

def test_nul_in_a_form_is_400_and_changes_nothing(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    before = offer_row(app, offer_id)
    rejected = admin.post(f"/portal/admin/offers/{offer_id}/reject", {"reason": "no\x00pe"})
    assert rejected.status_code == 400
    assert offer_row(app, offer_id) == before
    created = merchant_a.post("/portal/offers/new", {**OFFER, "name": "Spring\x00"})
    assert created.status_code == 400
    assert "The request could not be understood." in created.text
    assert offer_count(app) == 1


def test_nul_in_the_login_email_is_400_and_signs_no_one_in(app, accounts):
    portal = Portal(app)
    response = portal.login(EMAIL_A + "\x00")
    assert response.status_code == 400
    assert not signed_in(portal)


# --- where to go after signing in -----------------------------------------------------------

HOSTILE_NEXT = (
    "/portal/\r\nx", "/portal/%0D%0Ax", "/portal/\nSet-Cookie: a=b", "//evil.example",
    "//evil.example/portal/", "/\\evil.example", "/portal/\\evil.example",
    "https://evil.example/portal/", "http:/portal/", "javascript:alert(1)//portal/",
    "/portal//evil.example", "/portal/%2F%2Fevil.example", "/portal/../x", "/portal/./offers",
    "/portal/%2e%2e/x", "/portal/offers/..", "/portal/\tx", "/portal/\x00x", "/portal/ x",
    "/portal/\x0bx", "/portal/\u2028x", "/portal/caf\u00e9", "/portal/" + "a" * 3000,
    "/portal", "/portalx/", " /portal/", "",
)


def test_a_hostile_next_is_ignored(app, accounts):
    for target in HOSTILE_NEXT:
        portal = Portal(app)
        response = portal.post("/portal/login", {"email": EMAIL_A, "password": PASSWORD},
                               query_string={"next": target})
        assert response.status_code == 302, target
        assert response.headers["Location"] == "/portal/", target
        assert signed_in(portal), target


def test_a_clean_portal_path_is_followed(app, accounts):
    for target in ("/portal/offers/new", "/portal/offers/3/results?lang=zh",
                   "/portal/admin/offers?state=all", "/portal/offers/3/results.csv"):
        response = Portal(app).post("/portal/login", {"email": EMAIL_A, "password": PASSWORD},
                                    query_string={"next": target})
        assert response.status_code == 302 and response.headers["Location"] == target


def test_the_page_that_asked_for_a_login_comes_next(app, accounts):
    portal = Portal(app)
    asked = portal.get("/portal/offers/3/results?lang=zh")
    assert asked.headers["Location"] == "/portal/login?next=/portal/offers/3/results?lang%3Dzh"
    response = portal.post(asked.headers["Location"], {"email": EMAIL_A, "password": PASSWORD})
    assert response.headers["Location"] == "/portal/offers/3/results?lang=zh"


def test_a_malformed_referrer_switches_language_back_to_the_portal(app, client):
    response = client.get("/portal/lang/zh", headers={"Referer": "http://[bad/portal/offers"})
    assert response.status_code == 302 and response.headers["Location"] == "/portal/"


def test_a_sign_in_that_fails_with_a_500_leaves_no_one_signed_in(app, accounts, monkeypatch):
    import merchant_portal.views
    monkeypatch.setattr(merchant_portal.views, "safe_next", lambda target: "/portal/\r\nx")
    portal = Portal(app)
    assert portal.login(EMAIL_A).status_code == 500
    monkeypatch.undo()
    assert not signed_in(portal)


def test_an_error_after_the_session_started_hands_out_no_session(app, accounts, monkeypatch):
    import merchant_portal.views

    def broken_flash(*args, **kwargs):
        raise RuntimeError("flash failed")

    monkeypatch.setattr(merchant_portal.views, "flash", broken_flash)
    portal = Portal(app)
    assert portal.login(EMAIL_A).status_code == 500
    with portal.client.session_transaction("/portal/") as session:
        assert "login_id" not in session
    monkeypatch.undo()
    assert not signed_in(portal)


# --- errors no portal view handled ----------------------------------------------------------

def test_an_unknown_portal_url_gets_the_portals_own_page(app, accounts):
    portal = Portal(app)
    page = portal.get("/portal/offers/9223372036854775808", headers={"Accept-Language": "zh"})
    assert (page.status_code, page.mimetype) == (404, "text/html")
    assert "这里什么也没有。" in page.text and 'lang="zh' in page.text
    page = Portal(app).get("/portal/no-such-page")
    assert page.text.count("There is nothing here.") == 1
    assert '<footer class="footer">Rewards portal</footer>' in page.text  # nobody signed in


def test_a_bug_in_a_portal_view_gets_the_portals_500_page(app, accounts, monkeypatch):
    import merchant_portal.views

    def broken_flash(*args, **kwargs):
        raise RuntimeError("flash failed")

    monkeypatch.setattr(merchant_portal.views, "flash", broken_flash)
    page = Portal(app).login(EMAIL_A)
    assert (page.status_code, page.mimetype) == (500, "text/html")
    assert "Something went wrong on our side. Please try again." in page.text
    assert "RuntimeError" not in page.text


# --- password spraying ----------------------------------------------------------------------

ADDRESS_LIMIT = 20  # failed logins per address in 15 minutes (docs/portal.md)


def from_address(app, address: str) -> Portal:
    portal = Portal(app)
    portal.client.environ_base["REMOTE_ADDR"] = address
    return portal


def spray(app, address: str, count: int) -> None:
    """`count` failed logins from `address`, each for another email."""
    portal = from_address(app, address)
    for number in range(count):
        response = portal.login(f"guess{number}@example.com", "not anyone's password")
        assert response.status_code == 401, number


def test_failed_logins_are_limited_per_address_across_emails(app, accounts):
    spray(app, "198.51.100.7", ADDRESS_LIMIT)
    sprayer = from_address(app, "198.51.100.7")
    limited = sprayer.login(EMAIL_A)  # a new email, the right password: still refused
    assert limited.status_code == 429
    assert "Too many attempts. Wait a few minutes and try again." in limited.text
    assert int(limited.headers["Retry-After"]) > 60
    assert not signed_in(sprayer)
    other = from_address(app, "198.51.100.8")
    assert other.login(EMAIL_A).status_code == 302
    assert signed_in(other)


def test_an_ipv6_host_is_limited_across_its_64_addresses(app, accounts):
    for number in range(ADDRESS_LIMIT):
        portal = from_address(app, f"2001:db8:7:7::{number + 1:x}")
        response = portal.login(f"guess{number}@example.com", "not anyone's password")
        assert response.status_code == 401, number
    assert from_address(app, "2001:db8:7:7:ffff::1").login(EMAIL_A).status_code == 429
    assert from_address(app, "2001:db8:7:8::1").login(EMAIL_A).status_code == 302


def test_the_limit_is_not_reached_one_failure_early(app, accounts):
    spray(app, "198.51.100.7", ADDRESS_LIMIT - 1)
    assert from_address(app, "198.51.100.7").login(EMAIL_B).status_code == 302


def test_the_limited_page_is_in_the_users_language(app, accounts):
    spray(app, "198.51.100.7", ADDRESS_LIMIT)
    response = from_address(app, "198.51.100.7").post(
        "/portal/login", {"email": EMAIL_A, "password": PASSWORD},
        headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert '<html lang="zh-Hans">' in response.text
    assert "尝试次数过多。请等几分钟再试。" in response.text
    assert "Traceback" not in response.text


def test_successful_logins_do_not_count_against_the_address(app, accounts):
    portal_address = "198.51.100.9"
    for number in range(ADDRESS_LIMIT + 5):
        email = (EMAIL_A, EMAIL_B, ADMIN_EMAIL)[number % 3]
        assert from_address(app, portal_address).login(email).status_code == 302, number


def test_the_address_limit_is_kept_in_redis(database_url, redis_client, redis_prefix):
    from test_portal_support import make_accounts

    # Networks of this test's own (the limiter's keys in the shared Redis are not prefixed),
    # written as the keys have them: four hex digits, no leading zero.
    networks = [f"2001:db8:{secrets.randbelow(0xf000) + 0x1000:x}:"
                f"{secrets.randbelow(0xf000) + 0x1000:x}:" for _ in range(2)]
    address, other_address = (f"{network}:1" for network in networks)
    try:
        with running_app(make_redis_settings(database_url, redis_prefix)) as first:
            make_accounts(first)
            spray(first, address, ADDRESS_LIMIT)
        keys = redis_client.scan_iter(match=f"*{networks[0]}*", count=1000)
        assert [key for key in keys if b"|" not in key]  # the per-address counter
        # Another process on the same Redis (here: a new app) sees the same count.
        with running_app(make_redis_settings(database_url, redis_prefix)) as second:
            assert from_address(second, address).login(EMAIL_A).status_code == 429
            assert from_address(second, other_address).login(EMAIL_A).status_code == 302
    finally:
        keys = [key for network in networks
                for key in redis_client.scan_iter(match=f"*{network}*", count=1000)]
        if keys:
            redis_client.delete(*keys)
