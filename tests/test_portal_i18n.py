"""English and Simplified Chinese: chosen from the browser, switchable, and money and dates
formatted for the locale."""
from __future__ import annotations

import re

from test_portal_support import accounts, admin, merchant_a  # noqa: F401


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)">', response.text).group(1)


def test_english_by_default(app, client):
    page = client.get("/portal/login")
    assert html_lang(page) == "en"
    assert "Sign in" in page.text


def test_chinese_from_the_browser(app, client):
    page = client.get("/portal/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert html_lang(page) == "zh-Hans"
    assert "登录" in page.text and 'name="email"' in page.text


def test_english_preferred_over_chinese_when_the_browser_says_so(app, client):
    page = client.get("/portal/login", headers={"Accept-Language": "en-GB,zh;q=0.3"})
    assert html_lang(page) == "en"


def test_switching_language_redirects_back_and_sticks(app, merchant_a):
    response = merchant_a.get("/portal/lang/zh",
                              headers={"Referer": "http://localhost/portal/offers/new"})
    assert response.status_code == 302 and response.headers["Location"] == "/portal/offers/new"
    page = merchant_a.get("/portal/offers")
    assert html_lang(page) == "zh-Hans"
    assert "我的优惠" in page.text and "还没有优惠" in page.text
    back = merchant_a.get("/portal/lang/en")
    assert back.headers["Location"] == "/portal/"
    assert html_lang(merchant_a.get("/portal/offers", headers={"Accept-Language": "zh"})) == "en"


def test_language_query_parameter(app, client):
    assert html_lang(client.get("/portal/login?lang=zh")) == "zh-Hans"
    assert html_lang(client.get("/portal/login")) == "zh-Hans"  # kept in the session


def test_unknown_language_is_404(app, client):
    assert client.get("/portal/lang/fr").status_code == 404


def test_switching_never_redirects_off_site(app, client):
    response = client.get("/portal/lang/en", headers={"Referer": "https://evil.example/x"})
    assert response.headers["Location"] == "/portal/"


def test_choice_survives_login(app, accounts):
    from test_portal_support import EMAIL_A, Portal
    portal = Portal(app)
    portal.get("/portal/lang/zh")
    portal.login(EMAIL_A)
    assert html_lang(portal.get("/portal/offers")) == "zh-Hans"


def test_money_and_dates_are_formatted_for_the_locale(app, merchant_a):
    offer_id = merchant_a.create_offer(starts_at="2027-02-05T10:00", ends_at="2027-02-13T00:00")
    english = merchant_a.get(f"/portal/offers/{offer_id}")
    assert "Feb 5, 2027, 10:00:00\u202fAM" in english.text
    assert "CN¥30.00" in english.text
    merchant_a.get("/portal/lang/zh")
    chinese = merchant_a.get(f"/portal/offers/{offer_id}")
    assert "2027年2月5日 10:00:00" in chinese.text
    assert "¥30.00" in chinese.text and "CN¥" not in chinese.text
    assert "节日折扣" in chinese.text and "提交审批" in chinese.text
    listing = merchant_a.get("/portal/offers")
    assert "草稿" in listing.text  # the status, translated


def test_admin_pages_in_chinese(app, admin):
    admin.get("/portal/lang/zh")
    page = admin.get("/portal/admin/campaigns")
    assert "全部活动" in page.text and "暂无活动" in page.text


def test_compiled_translations_ship_with_the_package():
    from pathlib import Path
    import merchant_portal
    folder = Path(merchant_portal.__file__).parent / "translations" / "zh_Hans" / "LC_MESSAGES"
    assert (folder / "messages.po").is_file() and (folder / "messages.mo").is_file()
    from babel.messages.mofile import read_mo
    with open(folder / "messages.mo", "rb") as handle:
        catalog = read_mo(handle)
    untranslated = [m.id for m in catalog if m.id and not m.string]
    assert untranslated == []
