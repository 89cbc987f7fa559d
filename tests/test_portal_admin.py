"""The bank admin in the portal: every campaign, approval and rejection of merchant offers,
pausing, the audit log; and only an approved offer ever gives a reward."""
from __future__ import annotations

import re

from test_portal_support import (MULTIPLIER, OFFER, accounts, admin,  # noqa: F401
                                 approve, audit_rows, campaign_row, flashes, merchant_a,
                                 merchant_b, offer_row)
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, without_ids

YAML = f"""
id: spring-dining
name: Spring dining
type: holiday_discount
merchants: [m_900]
{OPEN_RANGE}params: {{percent: 10}}
"""


def submitted_offer(merchant, **fields) -> int:
    offer_id = merchant.create_offer(**fields)
    assert merchant.post(f"/portal/offers/{offer_id}/submit").status_code == 302
    return offer_id


def test_admin_sees_every_campaign_and_yaml_ones_are_managed_in_code(app, admin, merchant_a,
                                                                     tmp_path):
    install_campaigns(app, YAML, tmp_path)
    offer_id = submitted_offer(merchant_a)
    approve(admin, offer_id)
    page = admin.get("/portal/admin/campaigns")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr data-campaign-id="([^"]+)"[^>]*>(.*?)</tr>', page.text, re.S))
    assert sorted(rows) == [f"m-m-100-{offer_id}", "spring-dining"]
    yaml_row = rows["spring-dining"]
    assert '<span class="badge badge-managed"' in yaml_row and "managed in code" in yaml_row
    assert "<form" not in yaml_row and "<button" not in yaml_row
    portal_row = rows[f"m-m-100-{offer_id}"]
    assert "badge-managed" not in portal_row
    assert f'action="/portal/admin/campaigns/m-m-100-{offer_id}/pause"' in portal_row
    assert 'data-campaign-status="open"' in portal_row
    # people see the merchant's name and the offer's name, never their ids
    shown = re.sub(r"<[^>]+>", " ", portal_row)
    assert "merchant: Tea House" in " ".join(shown.split())
    assert "m-m-100" not in shown and "m_100" not in shown
    assert "placeholder" not in portal_row  # a labelled reason, not a placeholder cut off
    assert "<code" in yaml_row and "spring-dining" in re.sub(r"<[^>]+>", " ", yaml_row)


def test_admin_cannot_pause_a_yaml_campaign_from_the_portal(app, admin, tmp_path):
    install_campaigns(app, YAML, tmp_path)
    response = admin.post("/portal/admin/campaigns/spring-dining/pause", {"reason": "x"},
                          follow_redirects=True)
    assert flashes(response) == ["campaigns managed in code are paused with the command line"]
    assert campaign_row(app, "spring-dining")["status"] == "open"


def test_pending_offers_list_with_approve_and_reject_forms(app, admin, merchant_a, merchant_b):
    pending = submitted_offer(merchant_a)
    draft = merchant_b.create_offer()
    page = admin.get("/portal/admin/offers?state=pending")
    ids = re.findall(r'<tr data-offer-id="(\d+)"', page.text)
    assert ids == [str(pending)]
    assert f'action="/portal/admin/offers/{pending}/approve"' in page.text
    assert re.search(rf'action="/portal/admin/offers/{pending}/reject".*?name="reason" required',
                     page.text, re.S)
    assert "placeholder" not in page.text  # no placeholder to be cut off: a labelled field
    everything = admin.get("/portal/admin/offers?state=all")
    assert sorted(re.findall(r'<tr data-offer-id="(\d+)"', everything.text)) == sorted(
        [str(pending), str(draft)])
    empty = admin.get("/portal/admin/offers?state=rejected")
    assert 'class="card empty-state"' in empty.text


def test_approval_creates_the_campaign_in_one_audited_step(app, admin, merchant_a):
    offer_id = submitted_offer(merchant_a)
    response = approve(admin, offer_id)
    assert response.headers["Location"] == "/portal/admin/offers?state=pending"
    campaign_id = f"m-m-100-{offer_id}"
    assert flashes(admin.get("/portal/admin/offers")) == [
        "Approved: “Spring 15% off” gives rewards on its dates."]
    offer = offer_row(app, offer_id)
    assert offer["state"] == "approved" and offer["campaign_id"] == campaign_id
    assert offer["decided_by"] == "marketing@bank.cn"
    campaign = campaign_row(app, campaign_id)
    assert campaign["source"] == "portal" and campaign["status"] == "open"
    assert campaign["spec"] == offer["spec"]
    assert audit_rows(app, campaign_id) == [
        ("draft", "pending", "portal:tea@shop-a.cn", "offer sent for approval"),
        (None, "open", "portal:marketing@bank.cn", f"offer {offer_id} approved")]
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage, ProgramState
    with app.app_context():
        usage = db.session.get(CampaignUsage, campaign_id)
        assert (usage.spent, usage.redemptions) == (0, 0)
        assert db.session.get(ProgramState, 1).campaigns_revision >= 1


def test_approval_of_a_future_offer_schedules_it(app, admin, merchant_a):
    offer_id = submitted_offer(merchant_a, starts_at="2029-01-01T00:00")
    approve(admin, offer_id)
    assert campaign_row(app, f"m-m-100-{offer_id}")["status"] == "scheduled"


def test_only_pending_offers_can_be_approved(app, admin, merchant_a):
    offer_id = merchant_a.create_offer()
    response = admin.post(f"/portal/admin/offers/{offer_id}/approve", follow_redirects=True)
    assert flashes(response) == ["only a pending offer can be approved"]
    assert campaign_row(app, f"m-m-100-{offer_id}") is None


def test_rejection_needs_a_reason_and_shows_it_to_the_merchant(app, admin, merchant_a):
    offer_id = submitted_offer(merchant_a)
    blank = admin.post(f"/portal/admin/offers/{offer_id}/reject", {"reason": "  "},
                       follow_redirects=True)
    assert flashes(blank) == ["Give a reason for the rejection: the merchant will see it."]
    assert offer_row(app, offer_id)["state"] == "pending"
    admin.post(f"/portal/admin/offers/{offer_id}/reject",
               {"reason": "Discount too deep for the budget"})
    offer = offer_row(app, offer_id)
    assert offer["state"] == "rejected"
    assert offer["rejection_reason"] == "Discount too deep for the budget"
    page = merchant_a.get(f"/portal/offers/{offer_id}")
    assert re.search(r'id="rejection-reason">.*Discount too deep for the budget</div>',
                     page.text, re.S)
    assert 'data-state="rejected"' in merchant_a.get("/portal/offers").text
    assert audit_rows(app, f"m-m-100-{offer_id}")[-1] == (
        "pending", "rejected", "portal:marketing@bank.cn", "Discount too deep for the budget")
    assert campaign_row(app, f"m-m-100-{offer_id}") is None
    # and it can be fixed and sent again
    merchant_a.post(f"/portal/offers/{offer_id}/edit", {**OFFER, "percent": "10"})
    merchant_a.post(f"/portal/offers/{offer_id}/submit")
    assert offer_row(app, offer_id)["state"] == "pending"
    assert offer_row(app, offer_id)["rejection_reason"] is None


def test_admin_pauses_and_resumes_a_merchant_campaign(app, admin, merchant_a):
    offer_id = submitted_offer(merchant_a)
    approve(admin, offer_id)
    campaign_id = f"m-m-100-{offer_id}"
    response = admin.post(f"/portal/admin/campaigns/{campaign_id}/pause",
                          {"reason": "complaints"}, follow_redirects=True)
    assert flashes(response) == ["“Spring 15% off” paused."]
    assert campaign_row(app, campaign_id)["status"] == "paused"
    assert audit_rows(app, campaign_id)[-1] == ("open", "paused", "portal:marketing@bank.cn",
                                                "complaints")
    assert 'data-campaign-status="paused"' in merchant_a.get("/portal/offers").text
    admin.post(f"/portal/admin/campaigns/{campaign_id}/resume")
    assert campaign_row(app, campaign_id)["status"] == "open"


def test_pausing_an_unknown_campaign_is_404(app, admin):
    assert admin.post("/portal/admin/campaigns/nope/pause").status_code == 404


def test_merchants_cannot_reach_admin_pages(app, merchant_a, admin):
    offer_id = submitted_offer(merchant_a)
    for path in ("/portal/admin/campaigns", "/portal/admin/offers?state=pending"):
        assert merchant_a.get(path).status_code == 404
    for path in (f"/portal/admin/offers/{offer_id}/approve",
                 f"/portal/admin/offers/{offer_id}/reject"):
        assert merchant_a.post(path, {"reason": "mine"}).status_code == 404
    assert offer_row(app, offer_id)["state"] == "pending"


def test_admins_have_no_merchant_forms(app, admin, merchant_a):
    offer_id = merchant_a.create_offer()
    assert admin.get("/portal/offers").headers["Location"] == "/portal/admin/campaigns"
    assert admin.get("/portal/offers/new").status_code == 404
    assert admin.post(f"/portal/offers/{offer_id}/submit").status_code == 404
    assert admin.get(f"/portal/offers/{offer_id}").status_code == 200  # read-only view


# --- no reward before approval, through the signed wallet API ---------------------------------

def _rewards(wallet, event_id, amount="100.00"):
    response = wallet.event(**payment(event_id, amount))
    assert response.status_code == 201, response.json
    return without_ids(response.json["rewards"])


def test_draft_pending_and_rejected_offers_give_no_rewards(app, admin, merchant_a):
    base_only = [{"campaign_id": None, "kind": "points", "points": 100}]
    wallet = new_wallet_client(app)
    merchant_a.create_offer()                                  # a draft
    assert _rewards(wallet, "e1") == base_only
    pending = submitted_offer(merchant_a)                      # pending
    assert _rewards(wallet, "e2") == base_only
    admin.post(f"/portal/admin/offers/{pending}/reject", {"reason": "no"})
    assert _rewards(wallet, "e3") == base_only                 # rejected


def test_an_approved_offer_gives_rewards_and_a_paused_one_stops(app, admin, merchant_a):
    wallet = new_wallet_client(app)
    offer_id = submitted_offer(merchant_a)
    approve(admin, offer_id)
    campaign_id = f"m-m-100-{offer_id}"
    assert _rewards(wallet, "e1") == [
        {"campaign_id": None, "kind": "points", "points": 100},
        {"campaign_id": campaign_id, "kind": "discount", "amount": "15.00", "currency": "CNY"}]
    # another merchant's payment gets nothing from it
    other = wallet.event(**payment("e2", "100.00", merchant_id="m_200"))
    assert without_ids(other.json["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 100}]
    merchant_a.post(f"/portal/offers/{offer_id}/pause")
    assert _rewards(wallet, "e3") == [{"campaign_id": None, "kind": "points", "points": 100}]


def decision_forms(page) -> dict[str, str]:
    """action -> the form's HTML, for the approve and reject forms of a page."""
    return dict(re.findall(r'<form method="post" action="(/portal/admin/offers/\d+/\w+)"'
                           r'[^>]*>(.*?)</form>', page.text, re.S))


def test_offer_page_has_approve_and_reject_for_admins_only(app, admin, merchant_a):
    offer_id = submitted_offer(merchant_a)
    page = admin.get(f"/portal/offers/{offer_id}")
    forms = decision_forms(page)
    assert sorted(forms) == [f"/portal/admin/offers/{offer_id}/approve",
                             f"/portal/admin/offers/{offer_id}/reject"]
    for form in forms.values():  # POST with the CSRF token, back to this page
        assert re.search(r'name="csrf_token" value="[^"]+"', form)
        assert '<input type="hidden" name="back" value="offer">' in form
    reject = forms[f"/portal/admin/offers/{offer_id}/reject"]
    assert re.search(r'<textarea id="reason-\d+" name="reason" required', reject)
    # Each confirmed in place: the buttons open a <details> with the confirming form.
    assert re.findall(r'<summary class="btn[^"]*">([^<]*)</summary>', page.text) == [
        "Approve…", "Reject…"]
    assert "Approve “Spring 15% off”? It gives rewards on its dates from then on." in page.text
    assert "Tea House" in page.text  # the merchant, by name
    assert decision_forms(merchant_a.get(f"/portal/offers/{offer_id}")) == {}
    admin.get("/portal/lang/zh")
    chinese = admin.get(f"/portal/offers/{offer_id}")
    assert re.findall(r'<summary class="btn[^"]*">([^<]*)</summary>', chinese.text) == [
        "批准…", "拒绝…"]
    assert "批准「Spring 15% off」？批准后它将在其日期内发放奖励。" in chinese.text


def test_approve_and_reject_from_the_offer_page_come_back_to_it(app, admin, merchant_a):
    first, second = submitted_offer(merchant_a), submitted_offer(merchant_a)
    response = admin.post(f"/portal/admin/offers/{first}/approve", {"back": "offer"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/portal/offers/{first}"
    page = admin.get(f"/portal/offers/{first}")
    assert flashes(page) == ["Approved: “Spring 15% off” gives rewards on its dates."]
    assert decision_forms(page) == {}  # approved: nothing left to decide
    admin.get("/portal/lang/zh")
    response = admin.post(f"/portal/admin/offers/{second}/reject",
                          {"back": "offer", "reason": "预算过高"})
    assert response.headers["Location"] == f"/portal/offers/{second}"
    assert flashes(admin.get(f"/portal/offers/{second}")) == ["已拒绝。商户会看到您的原因。"]
    assert offer_row(app, second)["rejection_reason"] == "预算过高"


def test_approvals_list_shows_each_offers_budget(app, admin, merchant_a):
    money = submitted_offer(merchant_a)
    points = submitted_offer(merchant_a, **{**MULTIPLIER, "budget_amount": ""})
    uncapped = submitted_offer(merchant_a, budget_amount="")

    def budgets(page):
        return dict(re.findall(r'<tr data-offer-id="(\d+)">.*?data-stat="budget">([^<]*)</td>',
                               page.text, re.S))

    page = admin.get("/portal/admin/offers?state=pending")
    assert "<th>Budget</th>" in page.text
    assert budgets(page) == {str(money): "CN¥1,000.00", str(points): "100,000 points",
                             str(uncapped): "no budget cap"}
    admin.get("/portal/lang/zh")
    assert budgets(admin.get("/portal/admin/offers?state=pending")) == {
        str(money): "¥1,000.00", str(points): "100,000 积分", str(uncapped): "无预算上限"}
