"""Stored values as people read them: days of the week translated, a window to the end of
the day shown as 24:00 or "all day" (and 24:00 accepted in the form), and names, not ids."""
from __future__ import annotations

import re

from test_portal_support import accounts, admin, approve, merchant_a, offer_row  # noqa: F401


def facts(page) -> dict[str, str]:
    return {key: re.sub(r"\s+", " ", value).strip() for key, value in re.findall(
        r'<dd data-stat="(\w+)">([^<]*)</dd>', page.text)}


def test_days_and_all_day_in_both_languages(app, merchant_a):
    offer_id = merchant_a.create_offer(window_days=["sun", "sat"])
    assert offer_row(app, offer_id)["spec"]["windows"] == [
        {"days": ["sun", "sat"], "from": "00:00", "to": "24:00"}]
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert facts(page) == {"days": "Sat, Sun", "hours": "all day"}
    merchant_a.get("/portal/lang/zh")
    assert facts(merchant_a.get(f"/portal/offers/{offer_id}")) == {"days": "周六、周日",
                                                                   "hours": "全天"}


def test_24_00_is_accepted_as_the_end_of_the_day(app, merchant_a):
    offer_id = merchant_a.create_offer(window_days=["mon"], window_from="18:00",
                                       window_to="24:00")
    assert offer_row(app, offer_id)["spec"]["windows"] == [
        {"days": ["mon"], "from": "18:00", "to": "24:00"}]
    assert facts(merchant_a.get(f"/portal/offers/{offer_id}")) == {"days": "Mon",
                                                                   "hours": "18:00–24:00"}
    edit = merchant_a.get(f"/portal/offers/{offer_id}/edit")
    assert re.search(r'name="window_to"[^>]*value="24:00"', edit.text)
    merchant_a.get("/portal/lang/zh")
    assert facts(merchant_a.get(f"/portal/offers/{offer_id}")) == {"days": "周一",
                                                                   "hours": "18:00–24:00"}


def test_a_window_to_00_00_reads_as_24_00(app, merchant_a):
    offer_id = merchant_a.create_offer(window_from="18:00", window_to="00:00")
    assert facts(merchant_a.get(f"/portal/offers/{offer_id}")) == {"days": "every day",
                                                                   "hours": "18:00–24:00"}
    edit = merchant_a.get(f"/portal/offers/{offer_id}/edit")
    assert re.search(r'name="window_to"[^>]*value="24:00"', edit.text)


def test_pages_name_the_offer_and_merchant_not_their_ids(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    approve(admin, offer_id)
    for path in ("/portal/offers", f"/portal/offers/{offer_id}",
                 f"/portal/offers/{offer_id}/results"):
        main = re.search(r"<main.*?</main>", merchant_a.get(path).text, re.S).group(0)
        assert "m-m-100" not in main and "m_100" not in main, path
    for path in ("/portal/admin/offers?state=all", f"/portal/offers/{offer_id}"):
        main = re.search(r"<main.*?</main>", admin.get(path).text, re.S).group(0)
        assert "m-m-100" not in main and "m_100" not in main, path
        assert "Tea House" in main, path
