"""GET /v1/users/{user_id}/offers: what the user can still earn, for the wallet to show.

The campaigns are the service's compiled engine's (exactly those events see now); the
user's history (and the named device's uses, the denylist and the risk policy's counters)
and the campaigns' usage are read as quotes read them, without a lock, and judged by the
pure `core/offers.py`, with the same rules as events.
"""
from __future__ import annotations

import logging
import re
from zoneinfo import ZoneInfo

from flask import jsonify, request

from promo_engine.api import bp
from promo_engine.api.errors import ApiError
from promo_engine.api.request_fields import (AMOUNT_SHAPE_MESSAGE, CHANNEL_PATTERN,
                                             DEVICE_ID_MESSAGE, DEVICE_ID_PATTERN, ID_MESSAGE,
                                             ID_PATTERN, MCC_PATTERN)
from promo_engine.api.schemas import amount_pattern
from promo_engine.core import money
from promo_engine.core.campaign_views import rfc3339_local
from promo_engine.core.offers import Offer, PaymentFilter, offers
from promo_engine.ledger.extensions import db
from promo_engine.ledger.quotes import load_user_state
from promo_engine.ledger.usage import current_usage
from promo_engine.service import promo_service

log = logging.getLogger(__name__)

# The payment's values, then the device (which narrows nothing: its limits are judged)
PAYMENT_PARAMETERS = ("merchant_id", "mcc", "channel", "amount")
OFFER_PARAMETERS = PAYMENT_PARAMETERS + ("device_id",)
LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"
MCC_MESSAGE = "must be 4 digits"
CHANNEL_MESSAGE = "must be 1-32 characters of A-Z a-z 0-9 _ . : -"


def summary_language(header: str | None) -> str:
    """zh or en from Accept-Language: the one of them with the highest q that is not 0, the
    first listed on a tie; en when neither is there. A malformed q leaves its entry out."""
    ranked = []
    for position, part in enumerate((header or "").split(",")):
        tag, *options = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                quality = float(value) if re.fullmatch(r"(0(\.[0-9]{0,3})?|1(\.0{0,3})?)",
                                                        value.strip()) else 0.0
        language = tag.split("-")[0].lower()
        if language in LANGUAGES and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def _query(currency: str) -> tuple[PaymentFilter, str | None]:
    """The payment the query describes, and the device it names (or None)."""
    errors = {name: ["is not a parameter of this endpoint; known: "
                     + ", ".join(OFFER_PARAMETERS)]
              for name in request.args if name not in OFFER_PARAMETERS}
    values = {}
    for name in OFFER_PARAMETERS:
        given = request.args.getlist(name)
        if len(given) > 1:
            errors[name] = ["give it once"]
        elif given:
            values[name] = given[0]
    checks = {"merchant_id": (ID_PATTERN, ID_MESSAGE), "mcc": (MCC_PATTERN, MCC_MESSAGE),
              "channel": (CHANNEL_PATTERN, CHANNEL_MESSAGE),
              "device_id": (DEVICE_ID_PATTERN, DEVICE_ID_MESSAGE)}
    for name, (pattern, message) in checks.items():
        if name in values and name not in errors and not re.fullmatch(pattern, values[name]):
            errors[name] = [message]
    amount = None
    if "amount" in values and "amount" not in errors:
        text = values["amount"]
        try:
            amount = money.parse_amount(text, currency)
        except money.MoneyError as exc:
            errors["amount"] = [str(exc)]
        else:
            if not re.fullmatch(amount_pattern(currency), text):
                errors["amount"] = [AMOUNT_SHAPE_MESSAGE]
    if errors:
        raise ApiError(422, "validation_error", "invalid query parameters", fields=errors)
    payment = PaymentFilter(merchant_id=values.get("merchant_id"), mcc=values.get("mcc"),
                            channel=values.get("channel"), amount=amount)
    return payment, values.get("device_id")


def _summary(service, campaign, language: str) -> str:
    campaign_type = service.registry.campaign_type(campaign.type)
    try:
        return campaign_type.localized_summary(campaign.params, campaign.currency, language)
    except Exception:  # a plugin's bug costs its campaign the nice text, not the response
        log.exception("campaign type %s could not summarise campaign %s", campaign.type,
                      campaign.id)
        return campaign_type.name


def _offer_json(service, offer: Offer, language: str) -> dict:
    campaign = offer.compiled.campaign
    zone = campaign.timezone
    return {"campaign_id": campaign.id, "name": campaign.name, "type": campaign.type,
            "summary": _summary(service, campaign, language),
            "starts_at": rfc3339_local(campaign.starts_at, zone),
            "ends_at": rfc3339_local(campaign.ends_at, zone),
            "in_window_now": offer.in_window_now, "uses_left": offer.uses_left,
            "cost_points": offer.compiled.cost_points}


@bp.get("/v1/users/<user_id>/offers")
def user_offers(user_id: str):
    if not re.fullmatch(ID_PATTERN, user_id):
        raise ApiError(422, "validation_error", "invalid user_id", fields={"user_id": [ID_MESSAGE]})
    service = promo_service()
    payment, device_id = _query(service.settings.currency)
    language = summary_language(request.headers.get("Accept-Language"))
    engine = service.engine()
    campaigns = list(engine.campaigns.values())
    now = service.clock()
    risk_zone = ZoneInfo(service.settings.timezone) if engine.risk is not None else None
    try:
        user = load_user_state(user_id, now, device_id=device_id, risk_zone=risk_zone)
        limited = [c.id for c in campaigns
                   if c.budget_limit is not None or c.max_redemptions is not None]
        usage = current_usage(db.session, limited, service.reservations)
    finally:
        db.session.rollback()
    found = offers(campaigns, user, payment, now, usage, device_given=device_id is not None,
                   risk=engine.risk, money_campaigns=_money_campaigns(service, engine))
    return jsonify({"user_id": user_id,
                    "offers": [_offer_json(service, offer, language) for offer in found]})


def _money_campaigns(service, engine) -> frozenset[str]:
    """The campaigns whose rewards are money, which the risk policy's money caps limit
    (none to find without a policy capping money)."""
    risk = engine.risk
    if risk is None or (risk.user_minor is None and risk.device_minor is None):
        return frozenset()
    found = set()
    for compiled in engine.campaigns.values():
        campaign = compiled.campaign
        try:
            unit = service.registry.campaign_type(campaign.type).reward_unit(campaign.params)
        except Exception:  # a plugin's bug: judged as money, the cautious side
            log.exception("campaign type %s could not name its reward unit", campaign.type)
            unit = "money"
        if unit == "money":
            found.add(compiled.id)
    return frozenset(found)
