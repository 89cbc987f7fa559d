"""GET /v1/campaigns: the open campaigns, as a wallet may show them to its users.

Read from the service's compiled engine, so the list is exactly the campaigns that give
rewards now (it follows a pause or an apply within the same second the rewards do), and a
request costs no database query.
"""
from __future__ import annotations

import logging
import re

from flask import jsonify, request

from promo_engine.api import bp
from promo_engine.api.errors import ApiError
from promo_engine.api.schemas import ID_MESSAGE, ID_PATTERN
from promo_engine.core.campaign_views import applies_at, wallet_order, wallet_view
from promo_engine.service import promo_service

log = logging.getLogger(__name__)

QUERY_PARAMETERS = ("merchant_id",)


def _merchant_filter() -> str | None:
    errors = {name: ["is not a parameter of this endpoint; known: "
                     + ", ".join(QUERY_PARAMETERS)]
              for name in request.args if name not in QUERY_PARAMETERS}
    values = request.args.getlist("merchant_id")
    if len(values) > 1:
        errors["merchant_id"] = ["give it once"]
    elif values and not re.fullmatch(ID_PATTERN, values[0]):
        errors["merchant_id"] = [ID_MESSAGE]
    if errors:
        raise ApiError(422, "validation_error", "invalid query parameters", fields=errors)
    return values[0] if values else None


def _summary(service, campaign) -> str:
    campaign_type = service.registry.campaign_type(campaign.type)
    try:
        return campaign_type.summary(campaign.params, campaign.currency)
    except Exception:  # a plugin's bug costs its campaign the nice text, not the response
        log.exception("campaign type %s could not summarise campaign %s", campaign.type,
                      campaign.id)
        return campaign_type.name


@bp.get("/v1/campaigns")
def list_open_campaigns():
    merchant_id = _merchant_filter()
    service = promo_service()
    campaigns = [compiled.campaign for compiled in service.engine().campaigns.values()]
    if merchant_id is not None:
        campaigns = [c for c in campaigns if applies_at(c, merchant_id)]
    return jsonify({"campaigns": [wallet_view(c, _summary(service, c))
                                  for c in sorted(campaigns, key=wallet_order)]})
