"""No merchant can see or touch another merchant's data: merchant B on every object URL and
form of merchant A gets 404 and changes nothing."""
from __future__ import annotations

import re

import pytest

from test_portal_support import (OFFER, accounts, admin, approve, audit_rows,  # noqa: F401
                                 campaign_row, merchant_a, merchant_b, offer_row)

GET_PATHS = ("/portal/offers/{id}", "/portal/offers/{id}/edit", "/portal/offers/{id}/results",
             "/portal/offers/{id}/results.csv")
POST_PATHS = ("/portal/offers/{id}/edit", "/portal/offers/{id}/submit",
              "/portal/offers/{id}/pause", "/portal/offers/{id}/resume",
              "/portal/offers/{id}/duplicate")


@pytest.fixture
def offers_of_a(app, merchant_a, admin):
    """Merchant A's offers in every state: draft, pending, approved (live), rejected, paused."""
    draft = merchant_a.create_offer(name="A draft")
    pending = merchant_a.create_offer(name="A pending")
    merchant_a.post(f"/portal/offers/{pending}/submit")
    live = merchant_a.create_offer(name="A live")
    merchant_a.post(f"/portal/offers/{live}/submit")
    approve(admin, live)
    rejected = merchant_a.create_offer(name="A rejected")
    merchant_a.post(f"/portal/offers/{rejected}/submit")
    admin.post(f"/portal/admin/offers/{rejected}/reject", {"reason": "no"})
    paused = merchant_a.create_offer(name="A paused")
    merchant_a.post(f"/portal/offers/{paused}/submit")
    approve(admin, paused)
    merchant_a.post(f"/portal/offers/{paused}/pause")
    return {"draft": draft, "pending": pending, "live": live, "rejected": rejected,
            "paused": paused}


def snapshot(app, offer_ids):
    from sqlalchemy import func, select

    from merchant_portal.models import MerchantOffer
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit, CampaignRecord
    state = {oid: offer_row(app, oid) for oid in offer_ids}
    campaigns = {oid: campaign_row(app, f"m-m-100-{oid}") for oid in offer_ids}
    with app.app_context():
        counts = (db.session.scalar(select(func.count()).select_from(MerchantOffer)),
                  db.session.scalar(select(func.count()).select_from(CampaignRecord)),
                  db.session.scalar(select(func.count()).select_from(CampaignAudit)))
        db.session.remove()
    return state, campaigns, counts


def test_cross_tenant_matrix(app, offers_of_a, merchant_b):
    before = snapshot(app, offers_of_a.values())
    tried = 0
    for state, offer_id in offers_of_a.items():
        for template in GET_PATHS:
            path = template.format(id=offer_id)
            response = merchant_b.get(path)
            assert response.status_code == 404, (state, path)
            assert "A draft" not in response.text and "A live" not in response.text
            tried += 1
        for template in POST_PATHS:
            path = template.format(id=offer_id)
            response = merchant_b.post(path, {**OFFER, "name": "hijacked", "reason": "x"})
            assert response.status_code == 404, (state, path)
            tried += 1
    assert tried == 5 * (len(GET_PATHS) + len(POST_PATHS))
    assert snapshot(app, offers_of_a.values()) == before


def test_other_merchants_offers_are_not_listed(app, offers_of_a, merchant_a, merchant_b):
    own = merchant_b.create_offer(name="B's own")
    listed = re.findall(r'<tr data-offer-id="(\d+)"', merchant_b.get("/portal/offers").text)
    assert listed == [str(own)]
    listed_a = re.findall(r'<tr data-offer-id="(\d+)"', merchant_a.get("/portal/offers").text)
    assert sorted(map(int, listed_a)) == sorted(offers_of_a.values())


def test_a_merchant_cannot_make_an_offer_for_another_merchant(app, merchant_b):
    response = merchant_b.post("/portal/offers/new", {**OFFER, "merchants": "m_100",
                                                      "merchant_id": "m_100", "id": "stolen"})
    offer_id = int(response.headers["Location"].rsplit("/", 1)[1])
    row = offer_row(app, offer_id)
    assert row["merchant_id"] == "m_200"
    assert row["spec"]["merchants"] == ["m_200"]
    assert row["spec"]["id"] == f"m-m-200-{offer_id}"


def test_a_merchant_cannot_pause_or_approve_through_admin_urls(app, offers_of_a, merchant_b):
    before = snapshot(app, offers_of_a.values())
    live = f"m-m-100-{offers_of_a['live']}"
    assert merchant_b.post(f"/portal/admin/campaigns/{live}/pause").status_code == 404
    assert merchant_b.post(
        f"/portal/admin/offers/{offers_of_a['pending']}/approve").status_code == 404
    assert merchant_b.post(f"/portal/admin/offers/{offers_of_a['pending']}/reject",
                           {"reason": "x"}).status_code == 404
    assert snapshot(app, offers_of_a.values()) == before


def test_unknown_offer_ids_are_404_like_foreign_ones(app, merchant_b):
    assert merchant_b.get("/portal/offers/987654").status_code == 404
    assert merchant_b.post("/portal/offers/987654/submit").status_code == 404
    assert merchant_b.get("/portal/offers/not-a-number").status_code == 404


def test_audit_trail_is_untouched_by_the_other_merchant(app, offers_of_a, merchant_b):
    live = f"m-m-100-{offers_of_a['live']}"
    before = audit_rows(app, live)
    merchant_b.post(f"/portal/offers/{offers_of_a['live']}/pause")
    assert audit_rows(app, live) == before
    assert campaign_row(app, live)["status"] == "open"
