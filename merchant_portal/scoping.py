"""Tenant scoping, in one place: every merchant view reads offers through these.

A merchant sees only its own offers; an offer of another merchant is "not found" (404),
never "forbidden", so its existence does not leak either. Admins see every offer.
"""
from __future__ import annotations

from flask import abort
from sqlalchemy import Select, select

from merchant_portal.models import MerchantOffer, PortalLogin
from promo_engine.ledger.extensions import db


def offers_for(user: PortalLogin) -> Select:
    """A SELECT of the offers `user` may see, for views to refine (filter, order)."""
    query = select(MerchantOffer)
    if not user.is_admin:
        query = query.where(MerchantOffer.merchant_id == user.merchant_id)
    return query


def offer_or_404(user: PortalLogin, offer_id: int, *, for_update: bool = False) -> MerchantOffer:
    query = offers_for(user).where(MerchantOffer.id == offer_id)
    if for_update:
        query = query.with_for_update()
    offer = db.session.scalar(query)
    if offer is None:
        abort(404)
    return offer


def own_offer_or_404(user: PortalLogin, offer_id: int, *, for_update: bool = False) -> MerchantOffer:
    """For the merchant's own actions (edit, submit...): an admin has none of these."""
    if user.is_admin:
        abort(404)
    return offer_or_404(user, offer_id, for_update=for_update)
