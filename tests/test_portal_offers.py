"""Merchant offers in the portal: list, create, edit, validation errors inline, submit,
duplicate, pause and resume."""
from __future__ import annotations

import re

from test_portal_support import (MERCHANT_A, MULTIPLIER, OFFER, Portal, accounts,  # noqa: F401
                                 admin, approve, audit_rows, campaign_row, field_errors, flashes,
                                 merchant_a, offer_row)


def test_empty_list_says_what_to_do_next(app, merchant_a):
    page = merchant_a.get("/portal/offers")
    assert page.status_code == 200
    assert 'class="card empty-state"' in page.text
    assert 'href="/portal/offers/new"' in page.text
    assert 'id="offers"' not in page.text


def test_new_offer_form_has_the_contract_fields(app, merchant_a):
    page = merchant_a.get("/portal/offers/new")
    assert page.status_code == 200
    for name in ("type", "timezone"):
        assert re.search(rf'<select[^>]*name="{name}"', page.text), name
    for name in ("name", "window_from", "window_to", "min_amount", "percent", "max_discount",
                 "amount_off", "multiplier", "budget_amount", "budget_points", "per_user",
                 "per_user_daily", "max_redemptions"):
        assert re.search(rf'<input[^>]*name="{name}"', page.text), name
    for name in ("starts_at", "ends_at"):
        assert re.search(rf'<input[^>]*name="{name}"[^>]*type="datetime-local"', page.text)
    # Text, not type="time", so that 24:00 (the end of the day) can be typed.
    assert re.search(r'<input[^>]*name="window_from"[^>]*placeholder="00:00"[^>]*type="text"',
                     page.text)
    assert re.search(r'<input[^>]*name="window_to"[^>]*placeholder="24:00"[^>]*type="text"',
                     page.text)
    assert len(re.findall(r'<input type="checkbox" name="window_days"', page.text)) == 7
    assert '<option selected value="Asia/Shanghai">' in page.text
    assert 'value="holiday_discount"' in page.text and 'value="points_multiplier"' in page.text


def test_create_offer_stores_a_draft_scoped_to_the_merchant(app, merchant_a):
    response = merchant_a.post("/portal/offers/new", {
        **OFFER, "window_days": ["sat", "sun"], "window_from": "11:00", "window_to": "14:00",
        "min_amount": "50.00", "per_user": "3", "per_user_daily": "1",
        "max_redemptions": "500", "multiplier": "9"})
    assert response.status_code == 302
    offer_id = int(response.headers["Location"].rsplit("/", 1)[1])
    row = offer_row(app, offer_id)
    assert row["merchant_id"] == MERCHANT_A
    assert row["state"] == "draft" and row["campaign_id"] is None
    assert row["spec"] == {
        "id": f"m-m-100-{offer_id}", "type": "holiday_discount", "merchants": ["m_100"],
        "name": "Spring 15% off", "timezone": "Asia/Shanghai",
        "starts_at": "2026-01-01T00:00", "ends_at": "2030-01-01T00:00",
        "windows": [{"days": ["sat", "sun"], "from": "11:00", "to": "14:00"}],
        "conditions": {"min_amount": "50.00"}, "budget": {"amount": "1000.00"},
        "limits": {"per_user": 3, "per_user_daily": 1, "max_redemptions": 500},
        "params": {"percent": "15", "max_discount": "30.00"}}  # no multiplier: not this type
    assert flashes(merchant_a.get(f"/portal/offers/{offer_id}")) == [
        "Offer saved as a draft. Send it for approval when it is ready."]


def test_list_shows_status_window_and_budget(app, merchant_a):
    offer_id = merchant_a.create_offer()
    page = merchant_a.get("/portal/offers")
    assert 'id="offers"' in page.text
    row = re.search(rf'<tr data-offer-id="{offer_id}">(.*?)</tr>', page.text, re.S).group(1)
    assert re.search(r'<td class="status"[^>]*>.*data-state="draft">draft</span>', row, re.S)
    assert "Spring 15% off" in row
    assert "1/1/26" in row and "1/1/30" in row
    assert "CN¥0.00 / CN¥1,000.00" in row


def test_invalid_offer_shows_errors_next_to_the_fields(app, merchant_a):
    response = merchant_a.post("/portal/offers/new", {
        **OFFER, "name": "", "percent": "150", "ends_at": "2025-01-01T00:00",
        "per_user": "three", "window_from": "14:00", "window_to": "11:00",
        "budget_amount": "", "budget_points": "100"})
    assert response.status_code == 422
    assert field_errors(response) == {
        "ends_at": ["The end must be later than the start"],
        "window_to": ["The end time must be later than the start time; hours cannot run past "
                      "midnight (end at 24:00)"],
        "per_user": ["Enter a whole number"],
        "percent": ["Enter a number from 0 to 100"],
    }
    assert 'value="150"' in response.text  # what was typed is kept
    assert offer_row_count(app) == 0


def test_budget_in_the_wrong_unit_is_an_error_on_the_budget_field(app, merchant_a):
    response = merchant_a.post("/portal/offers/new", {**OFFER, "budget_amount": "",
                                                      "budget_points": "100"})
    assert response.status_code == 422
    assert field_errors(response) == {
        "budget_points": ["This offer gives money off: set its budget as an amount of money"]}


def test_missing_required_values_are_reported_per_field(app, merchant_a):
    response = merchant_a.post("/portal/offers/new", {"type": "points_multiplier",
                                                      "timezone": "Asia/Shanghai"})
    assert response.status_code == 422
    assert field_errors(response) == {"starts_at": ["Please fill in this field"],
                                      "ends_at": ["Please fill in this field"],
                                      "multiplier": ["Please fill in this field"]}


def test_unknown_type_and_timezone_are_refused_by_the_schema(app, merchant_a):
    response = merchant_a.post("/portal/offers/new", {**OFFER, "type": "free_money",
                                                      "timezone": "Mars/Olympus"})
    assert response.status_code == 422
    errors = field_errors(response)
    assert errors["timezone"] == ["Choose a time zone from the list"]
    assert errors["type"] == ["Choose an offer type from the list"]


def offer_row_count(app) -> int:
    from sqlalchemy import func, select

    from merchant_portal.models import MerchantOffer
    from promo_engine.ledger.extensions import db
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(MerchantOffer))
        db.session.remove()
        return count


def test_detail_page_shows_the_offer_in_local_time(app, merchant_a):
    offer_id = merchant_a.create_offer(starts_at="2027-02-05T10:00", ends_at="2027-02-13T00:00")
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert page.status_code == 200
    assert "Feb 5, 2027, 10:00:00\u202fAM" in page.text
    assert "Feb 13, 2027, 12:00:00\u202fAM" in page.text
    assert "CN¥30.00" in page.text
    assert f'action="/portal/offers/{offer_id}/submit"' in page.text


def test_edit_form_is_filled_from_the_offer_and_saves_changes(app, merchant_a):
    offer_id = merchant_a.create_offer(window_days=["mon"], window_from="09:30",
                                       window_to="11:00")
    page = merchant_a.get(f"/portal/offers/{offer_id}/edit")
    assert page.status_code == 200
    assert re.search(r'name="name"[^>]*value="Spring 15% off"', page.text)
    assert re.search(r'name="starts_at"[^>]*value="2026-01-01T00:00"', page.text)
    assert '<input type="checkbox" name="window_days" value="mon" checked>' in page.text
    assert re.search(r'name="percent"[^>]*value="15"', page.text)
    response = merchant_a.post(f"/portal/offers/{offer_id}/edit",
                               {**OFFER, "name": "Spring 20% off", "percent": "20"})
    assert response.headers["Location"] == f"/portal/offers/{offer_id}"
    spec = offer_row(app, offer_id)["spec"]
    assert spec["name"] == "Spring 20% off" and spec["params"]["percent"] == "20"
    assert spec["id"] == f"m-m-100-{offer_id}" and spec["merchants"] == ["m_100"]
    assert "windows" not in spec


def test_edit_with_errors_changes_nothing(app, merchant_a):
    offer_id = merchant_a.create_offer()
    before = offer_row(app, offer_id)
    response = merchant_a.post(f"/portal/offers/{offer_id}/edit", {**OFFER, "percent": "-1"})
    assert response.status_code == 422
    assert field_errors(response) == {"percent": ["Enter a number from 0 to 100"]}
    assert offer_row(app, offer_id) == before


def test_submit_sends_a_draft_for_approval_once(app, merchant_a):
    offer_id = merchant_a.create_offer()
    response = merchant_a.post(f"/portal/offers/{offer_id}/submit")
    assert response.headers["Location"] == f"/portal/offers/{offer_id}"
    assert offer_row(app, offer_id)["state"] == "pending"
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert flashes(page) == ["Sent for approval. The bank will review it."]
    assert "Waiting for the bank" in page.text
    again = merchant_a.post(f"/portal/offers/{offer_id}/submit", follow_redirects=True)
    assert flashes(again) == ["only a draft or rejected offer can be sent for approval"]
    assert audit_rows(app, f"m-m-100-{offer_id}") == [
        ("draft", "pending", "portal:tea@shop-a.cn", "offer sent for approval")]


def test_duplicate_makes_a_new_draft_copy(app, merchant_a):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    response = merchant_a.post(f"/portal/offers/{offer_id}/duplicate")
    copy_id = int(response.headers["Location"].split("/")[-2])
    assert response.headers["Location"] == f"/portal/offers/{copy_id}/edit"
    copy = offer_row(app, copy_id)
    original = offer_row(app, offer_id)
    assert copy_id != offer_id and copy["state"] == "draft" and copy["campaign_id"] is None
    assert copy["spec"] == {**original["spec"], "id": f"m-m-100-{copy_id}",
                            "name": "Spring 15% off (copy)"}


def test_pause_and_resume_a_live_offer(app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    approve(admin, offer_id)
    campaign_id = f"m-m-100-{offer_id}"
    assert campaign_row(app, campaign_id)["status"] == "open"
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert f'action="/portal/offers/{offer_id}/pause"' in page.text
    paused = merchant_a.post(f"/portal/offers/{offer_id}/pause", follow_redirects=True)
    assert flashes(paused) == ["Offer paused. It gives no rewards until you resume it."]
    assert campaign_row(app, campaign_id)["status"] == "paused"
    assert f'action="/portal/offers/{offer_id}/resume"' in paused.text
    merchant_a.post(f"/portal/offers/{offer_id}/resume")
    assert campaign_row(app, campaign_id)["status"] == "open"
    assert audit_rows(app, campaign_id)[-2:] == [
        ("open", "paused", "portal:tea@shop-a.cn", "paused by the merchant"),
        ("paused", "open", "portal:tea@shop-a.cn", "resumed in the portal")]


def test_pause_and_resume_need_an_approved_offer(app, merchant_a):
    offer_id = merchant_a.create_offer()
    paused = merchant_a.post(f"/portal/offers/{offer_id}/pause", follow_redirects=True)
    assert flashes(paused) == ["Only an approved offer can be paused."]
    resumed = merchant_a.post(f"/portal/offers/{offer_id}/resume", follow_redirects=True)
    assert flashes(resumed) == ["Only a paused offer can be resumed."]


def test_editing_an_approved_offer_keeps_the_live_version_until_approved_again(
        app, merchant_a, admin):
    offer_id = merchant_a.create_offer()
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    approve(admin, offer_id)
    campaign_id = f"m-m-100-{offer_id}"
    live_before = campaign_row(app, campaign_id)
    merchant_a.post(f"/portal/offers/{offer_id}/edit", {**OFFER, "percent": "25"})
    assert offer_row(app, offer_id)["state"] == "draft"
    assert campaign_row(app, campaign_id) == live_before
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert "The approved version is still running" in page.text
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    approve(admin, offer_id)
    live_after = campaign_row(app, campaign_id)
    assert live_after["spec"]["params"] == {"percent": "25", "max_discount": "30.00"}
    assert live_after["status"] == "open" and offer_row(app, offer_id)["state"] == "approved"


def test_points_multiplier_offer(app, merchant_a):
    offer_id = merchant_a.create_offer(**MULTIPLIER, percent="", max_discount="",
                                       budget_amount="")
    spec = offer_row(app, offer_id)["spec"]
    assert spec["params"] == {"multiplier": "2"} and spec["budget"] == {"points": 100000}
    page = merchant_a.get("/portal/offers")
    assert "0 / 100,000" in page.text


NASTY = ["", " ", "0", "-1", "1e999", "NaN", "99999999999999999999", "２", "<script>", "'; --",
         "\x00", "x" * 5000, "2027-02-30T10:00", "24:00", "25:61", "0.001"]


def test_no_form_input_gives_a_server_error(app, merchant_a):
    fields = [name for name in OFFER] + ["window_days", "window_from", "window_to",
                                         "min_amount", "amount_off", "multiplier",
                                         "budget_points", "per_user", "per_user_daily",
                                         "max_redemptions"]
    token = merchant_a.csrf_token()
    for kind in ("holiday_discount", "points_multiplier"):
        for field in fields:
            for value in NASTY:
                data = {**OFFER, "type": kind, field: value, "csrf_token": token}
                response = merchant_a.client.post("/portal/offers/new", data=data)
                expected = (400,) if "\x00" in value else (302, 422)  # no form takes NUL
                assert response.status_code in expected, (kind, field, value)


def test_type_fields_are_grouped_and_labelled_by_type(app, merchant_a):
    """Without JavaScript every field shows, each type's group labelled with its type; the
    script (offer_form.js) hides the groups of the other type."""
    def groups(page):
        return [(kind, legend, re.findall(r'name="(\w+)"', body)) for kind, legend, body in
                re.findall(r'<fieldset data-for-type="(\w+)">\s*<legend>([^<]*)</legend>(.*?)'
                           r'</fieldset>', page.text, re.S)]

    page = merchant_a.get("/portal/offers/new")
    assert groups(page) == [
        ("holiday_discount", "Discount (holiday discount offers only)",
         ["percent", "max_discount", "amount_off", "budget_amount"]),
        ("points_multiplier", "Points (points multiplier offers only)",
         ["multiplier", "budget_points"])]
    assert '<script src="/portal/static/offer_form.js" defer></script>' in page.text
    merchant_a.get("/portal/lang/zh")
    assert [legend for _kind, legend, _names in groups(merchant_a.get("/portal/offers/new"))] \
        == ["折扣（仅限节日折扣优惠）", "积分（仅限积分倍增优惠）"]
