"""The bank's Risk page (/portal/admin/risk) and events page (/portal/admin/events): the figures
of `risk_history.py` (hand-checked in test_risk_report.py, which also runs them on
PostgreSQL), every row linking to its events, the events' filters and pages, admins only,
English and Chinese (SQLite)."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from risk_history import clock, events, install_policy, post_history, same_month  # noqa: F401
from test_portal_support import accounts, admin, merchant_a  # noqa: F401

ZONE = ZoneInfo("Asia/Shanghai")
RISK, EVENTS = "/portal/admin/risk", "/portal/admin/events"
# Every test at both clocks, set before any other fixture: the app, its logins and its history
# all share it.
pytestmark = pytest.mark.usefixtures("clock")


@pytest.fixture
def database_url(sqlite_url):
    return sqlite_url


@pytest.fixture
def base(clock):
    return datetime.now(ZONE).replace(microsecond=0)


@pytest.fixture
def history(app, tmp_path, base):
    post_history(app, tmp_path, base)
    install_policy(app, tmp_path)


def local_time(base: datetime, event_id: str) -> datetime:
    """When the history placed `event_id`, in the program's zone: up to 200 minutes before
    `base`, so on the day before it when the tests run just after midnight."""
    body = next(body for body in events(base) if body["event_id"] == event_id)
    return datetime.fromisoformat(body["occurred_at"]).astimezone(ZONE)


def period() -> tuple[str, str]:
    today = datetime.now(ZONE).date()
    return (today - timedelta(days=29)).isoformat(), (today + timedelta(days=1)).isoformat()


def row(page, table: str, attribute: str, key: str) -> str:
    return re.search(rf'<table class="table[^"]*" id="{table}">.*?'
                     rf'<tr {attribute}="{key}">(.*?)</tr>', page.text, re.S).group(1)


def cells(page, table: str, attribute: str, key: str) -> list[str]:
    found = row(page, table, attribute, key).replace("<br>", " ")
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", cell))).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", found, re.S)]


def links(page, table: str, attribute: str, key: str) -> list[str]:
    return [html.unescape(href) for href in
            re.findall(r'href="([^"]+)"', row(page, table, attribute, key))]


def event_ids(page) -> list[str]:
    return re.findall(r'<tr data-event-id="([^"]+)"', page.text)


def test_risk_page_figures_and_links(app, admin, history):
    page = admin.get(RISK)
    assert page.status_code == 200
    first, after = period()
    assert cells(page, "risk-users", "data-user-id", "n1") == ["n1", "18", "18", "CN¥265.00", "0"]
    assert links(page, "risk-users", "data-user-id", "n1") == [
        f"{EVENTS}?user_id=n1&from={first}&to={after}"]
    assert cells(page, "risk-devices", "data-device-id", "dev-farm") == [
        "dev-farm", "4", "15", "15", "CN¥152.80", "0"]
    assert links(page, "risk-devices", "data-device-id", "dev-farm") == [
        f"{EVENTS}?device_id=dev-farm&from={first}&to={after}"]
    shared = cells(page, "risk-shared-devices", "data-device-id", "dev-pair")
    assert shared[:3] == ["dev-pair", "2", "5"]
    assert cells(page, "risk-merchants", "data-merchant-id", "m_100") == [
        "m_100", "6", "5", "83.3%", "flagged"]
    assert cells(page, "risk-merchants", "data-merchant-id", "m_200")[3:] == ["5%", ""]
    assert links(page, "risk-merchants", "data-merchant-id", "m_300") == [
        f"{EVENTS}?merchant_id=m_300&type=payment&from={first}&to={after}"]
    assert "Program: 8 of 28 rewarded payments refunded (28.6%)." in page.text
    assert cells(page, "risk-clusters", "data-campaign-id", "dining") == [
        "Dining 10% off open dining", "CN¥100.00", "11 CN¥100.00 – CN¥105.00",
        "2 CN¥95.00 – CN¥99.99", "5.5×"]
    assert links(page, "risk-clusters", "data-campaign-id", "dining") == [
        f"{EVENTS}?type=payment&from={first}&to={after}&merchant_id=m_100&merchant_id=m_200"
        f"&merchant_id=m_300&min_amount={low}&max_amount={high}"
        for low, high in (("100.00", "105.00"), ("95.00", "99.99"))]
    assert "Monthly cashback cap of the risk policy: CN¥20.00 per user." in page.text
    if same_month():
        assert cells(page, "risk-cashback", "data-user-id", "h1") == [
            "h1", "1", "CN¥10.00", "50%"]
    else:
        assert "No cashback this month." in page.text
    assert f'href="{RISK}"' in page.text  # in the admin's navigation


def test_every_row_links_to_its_events(app, admin, history):
    page = admin.get(RISK)
    rows = re.findall(r'<tr data-[a-z-]+="[^"]+">(.*?)</tr>', page.text, re.S)
    # Users, devices, merchants, clusters, minimum amounts, then this month's cashback: the six
    # activations' users, or none when the history fell in the month before.
    assert len(rows) == 6 + 3 + 2 + 3 + 1 + (6 if same_month() else 0)
    for found in rows:
        assert f'href="{EVENTS}?' in found, found
    # The links answer the rows: n1's 19 events, the 11 payments just above 100.00.
    user_link = links(page, "risk-users", "data-user-id", "n1")[0]
    assert len(event_ids(admin.get(user_link))) == 19
    above, below = links(page, "risk-clusters", "data-campaign-id", "dining")
    assert len(event_ids(admin.get(above))) == 11
    assert sorted(event_ids(admin.get(below))) == ["p-n2-0", "p-n2-1"]
    merchant = admin.get(links(page, "risk-merchants", "data-merchant-id", "m_300")[0])
    assert sorted(event_ids(merchant)) == ["p-h3-0", "p-h3-1"]  # payments only, not refunds


def test_events_filters_and_formatting(app, admin, history, base):
    page = admin.get(f"{EVENTS}?user_id=h2")
    assert page.status_code == 200
    # Newest first: h2's refunds, then its payments, then its activation.
    assert event_ids(page) == ["r-p-h2-1", "r-p-h2-0", "p-h2-2", "p-h2-1", "p-h2-0", "a-h2"]
    assert 'id="events-count">Events 1 to 6 of 6<' in page.text
    payment = cells(page, "events", "data-event-id", "p-h2-0")
    assert payment[1:] == ["payment", "h2", "dev-farm", "m_100", "CN¥101.00 CN¥50.00 refunded",
                           "CN¥10.10"]
    # The program's local time, then the wallet's event id.
    placed = local_time(base, "p-h2-0").strftime("%b %-d, %Y")
    assert payment[0].startswith(placed) and payment[0].endswith(" p-h2-0")
    assert cells(page, "events", "data-event-id", "a-h2")[5:7] == ["—", "CN¥10.00"]
    device = event_ids(admin.get(f"{EVENTS}?device_id=dev-pair"))
    assert device == ["p-o1", "p-n2-2", "p-n2-1", "p-n2-0", "a-n2"]
    both = event_ids(admin.get(f"{EVENTS}?merchant_id=m_300,m_999&type=refund"))
    assert both == ["r-p-h3-1", "r-p-h3-0"]
    amounts = event_ids(admin.get(f"{EVENTS}?merchant_id=m_100&merchant_id=m_200"
                                  "&min_amount=94.99&max_amount=99.99"))
    assert amounts == ["p-n2-2", "p-n2-1", "p-n2-0"]
    assert event_ids(admin.get(f"{EVENTS}?event_id=p-h1-0")) == ["p-h1-0"]
    day = local_time(base, "p-o1").date().isoformat()  # o1 paid then, and 31 days before
    old = admin.get(f"{EVENTS}?user_id=o1&to={day}")
    assert event_ids(old) == ["old-p", "old-a"]
    assert event_ids(admin.get(f"{EVENTS}?user_id=o1&from={day}")) == ["p-o1"]
    # An id in a row links to the same period with that id.
    assert f'href="{EVENTS}?from={day}&amp;user_id=o1"' in admin.get(
        f"{EVENTS}?device_id=dev-pair&from={day}").text


def test_events_pages(app, admin, history, monkeypatch):
    import merchant_portal.admin_events as admin_events
    monkeypatch.setattr(admin_events, "PAGE_SIZE", 20)
    first = admin.get(f"{EVENTS}?user_id=n1")
    assert len(event_ids(first)) == 19 and "Page 1 of 1" in first.text
    page_1 = admin.get(EVENTS)
    assert "Events 1 to 20 of 49" in page_1.text and "Page 1 of 3" in page_1.text
    assert f'href="{EVENTS}?page=2" rel' not in page_1.text
    assert re.search(rf'rel="next" href="{EVENTS}\?page=2"', page_1.text)
    page_3 = admin.get(f"{EVENTS}?page=3")
    assert "Events 41 to 49 of 49" in page_3.text and event_ids(page_3)[-2:] == ["old-p", "old-a"]
    assert re.search(rf'rel="prev" href="{EVENTS}\?page=2"', page_3.text)
    assert 'rel="next"' not in page_3.text
    assert "Page 3 of 3" in admin.get(f"{EVENTS}?page=99").text
    filtered = admin.get(f"{EVENTS}?type=payment")  # 34 payments: the filter stays in the links
    assert "Events 1 to 20 of 34" in filtered.text
    assert re.search(rf'rel="next" href="{EVENTS}\?type=payment&amp;page=2"', filtered.text)


def test_bad_filters_are_left_out_with_a_message(app, admin, history):
    page = admin.get(f"{EVENTS}?user_id=h1&min_amount=12.345&from=yesterday&type=Pay!&page=x")
    assert page.status_code == 200
    messages = re.findall(r'role="alert">([^<]*)<', page.text)
    assert [html.unescape(m) for m in messages] == [
        "That event type does not exist; it was left out.",
        "Minimum amount must be an amount such as 12.50; it was left out.",
        "From must be a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM); it was left out."]
    assert len(event_ids(page)) == 7  # h1's events, the user filter kept
    assert "No event matches these filters." in admin.get(f"{EVENTS}?user_id=nobody").text
    # A time that is no instant (before year 1 once in UTC), a NUL in an id.
    for query in ("from=0001-01-01", "to=0001-01-01T00:00%2B14:00", "user_id=a%00b",
                  "page=99999999999999999999", "merchant_id=,,"):
        assert admin.get(f"{EVENTS}?{query}").status_code == 200, query


def test_period_choice(app, admin, history):
    page = admin.get(f"{RISK}?days=7")
    assert "(7 days)" in page.text
    bad = admin.get(f"{RISK}?days=0")
    assert bad.status_code == 200 and "That period cannot be shown" in bad.text
    assert "(30 days)" in bad.text


def test_empty_ledger(app, admin):
    page = admin.get(RISK)
    assert page.status_code == 200
    for text in ("No campaign rewards in this period.",
                 "No device was used by 2 users or more in this period.",
                 "No payment was rewarded in this period.",
                 "No open, paused or closed campaign has a minimum amount.",
                 "No monthly cashback cap is in force", "No cashback this month."):
        assert text in page.text, text
    assert "No event matches these filters." in admin.get(EVENTS).text


def test_chinese(app, admin, history):
    admin.get("/portal/lang/zh")
    page = admin.get(RISK)
    assert '<html lang="zh-Hans">' in page.text
    for text in ("风险监控", "获得活动奖励最多的用户", "多个用户共用的设备", "各商户获奖支付的退款情况",
                 "刚好超过活动最低金额的支付", "高于最低金额 5% 以内", "本月每位用户的返现", "异常",
                 "全计划：28 笔获奖支付中有 8 笔退款（28.6%）。", "风控策略的每月返现上限：每位用户 ¥20.00。"):
        assert text in page.text, text
    assert cells(page, "risk-users", "data-user-id", "n1")[3] == "¥265.00"
    events = admin.get(f"{EVENTS}?user_id=h2")
    for text in ("事件", "最新的在前", "第 1 至 6 条，共 6 条事件", "已退款 ¥50.00", "返回风险监控"):
        assert text in events.text, text
    payment = cells(events, "events", "data-event-id", "p-h2-0")
    assert payment[1] == "支付" and re.match(r"\d{4}年\d{1,2}月\d{1,2}日 ", payment[0])


@pytest.mark.parametrize("path", [RISK, f"{EVENTS}?user_id=h1"])
def test_admins_only(app, client, merchant_a, path):
    assert merchant_a.get(path).status_code == 404
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and "/portal/login" in anonymous.headers["Location"]
    assert f'href="{RISK}"' not in merchant_a.get("/portal/offers").text
