"""GET /v1/openapi.json: the OpenAPI 3.1 description, generated from the API's schemas."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app, jsonify

from .. import __version__
from . import bp
from .schemas import (CampaignsResponseSchema, ErrorSchema, EventRequestSchema,
                      EventResponseSchema, PointsResponseSchema, QuoteRequestSchema,
                      QuoteResponseSchema)

SIGNED = [{"PromoKey": [], "PromoTimestamp": [], "PromoSignature": []}]


def _errors(*statuses: int) -> dict:
    described = {400: "malformed JSON", 401: "missing or invalid signature",
                 404: "not found", 409: "event_id reused with a different body",
                 413: "body over 64 KiB", 415: "not application/json",
                 422: "validation error, unknown or over-refunded payment",
                 503: "database or Redis unavailable; retry after Retry-After seconds"}
    return {str(s): {"description": described[s],
                     "content": {"application/json": {"schema": "Error"}}} for s in statuses}


def build_spec(event_types, currency: str) -> dict:
    spec = APISpec(title="promo-engine wallet API", version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Signed JSON API for the wallet backend. Every /v1/ "
                                        "request except this description carries X-Promo-Key, "
                                        "X-Promo-Timestamp and X-Promo-Signature."})
    for name, header in (("PromoKey", "X-Promo-Key"), ("PromoTimestamp", "X-Promo-Timestamp"),
                         ("PromoSignature", "X-Promo-Signature")):
        spec.components.security_scheme(name, {"type": "apiKey", "in": "header", "name": header})
    request_schema = EventRequestSchema(event_types=event_types, currency=currency)
    quote_schema = QuoteRequestSchema(event_types=event_types, currency=currency)
    spec.components.schema("EventRequest", schema=request_schema)
    spec.components.schema("QuoteRequest", schema=quote_schema)
    spec.components.schema("EventResponse", schema=EventResponseSchema)
    spec.components.schema("QuoteResponse", schema=QuoteResponseSchema)
    spec.components.schema("PointsResponse", schema=PointsResponseSchema)
    spec.components.schema("CampaignsResponse", schema=CampaignsResponseSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    json_of = lambda ref: {"application/json": {"schema": ref}}  # noqa: E731

    spec.path(path="/v1/events", operations={"post": {
        "summary": "Record one event and apply the campaigns (idempotent per event_id)",
        "security": SIGNED,
        "requestBody": {"required": True, "content": json_of("EventRequest")},
        "responses": {
            "201": {"description": "recorded", "content": json_of("EventResponse")},
            "200": {"description": "replay of an event already recorded with the same body",
                    "headers": {"Idempotent-Replayed": {"schema": {"type": "string",
                                                                   "enum": ["true"]}}},
                    "content": json_of("EventResponse")},
            **_errors(400, 401, 409, 413, 415, 422, 503)}}})
    spec.path(path="/v1/quote", operations={"post": {
        "summary": "Evaluate a payment without side effects",
        "security": SIGNED,
        "requestBody": {"required": True, "content": json_of("QuoteRequest")},
        "responses": {"200": {"description": "what would be granted now",
                              "content": json_of("QuoteResponse")},
                      **_errors(400, 401, 413, 415, 422, 503)}}})
    spec.path(path="/v1/users/{user_id}/points", operations={"get": {
        "summary": "A user's points balance and ledger entries, newest first",
        "security": SIGNED,
        "parameters": [
            {"name": "user_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
            {"name": "cursor", "in": "query", "required": False,
             "schema": {"type": "string"}}],
        "responses": {"200": {"description": "balance and entries",
                              "content": json_of("PointsResponse")},
                      **_errors(401, 422, 503)}}})
    spec.path(path="/v1/campaigns", operations={"get": {
        "summary": "The open campaigns, for the wallet to show (no budget internals)",
        "security": SIGNED,
        "parameters": [
            {"name": "merchant_id", "in": "query", "required": False,
             "description": "only the campaigns that apply at this merchant (bank-wide ones "
                            "included)",
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}}],
        "responses": {"200": {"description": "open campaigns, highest priority first",
                              "content": json_of("CampaignsResponse")},
                      **_errors(401, 422, 503)}}})
    spec.path(path="/v1/openapi.json", operations={"get": {
        "summary": "This description (no signature needed)",
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    return spec.to_dict()


@bp.get("/v1/openapi.json")
def openapi_json():
    service = current_app.extensions["promo"]
    cached = current_app.extensions.get("promo_openapi")
    if cached is None:
        cached = current_app.extensions["promo_openapi"] = build_spec(
            service.registry.event_types, service.settings.currency)
    return jsonify(cached)
