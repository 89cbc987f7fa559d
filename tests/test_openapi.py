"""/v1/openapi.json describes every /v1/ endpoint, and real responses conform to it."""
from __future__ import annotations

import json

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from conftest import running_app
from wallet import (OPEN_RANGE, WalletClient, activation, install_campaigns, new_wallet_client,
                    payment, refund)

CAMPAIGNS = f"""
id: dining
type: holiday_discount
{OPEN_RANGE}params: {{percent: 10}}
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "5.00", valid_days: 7}}}}
"""


@pytest.fixture
def openapi(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    response = app.test_client().get("/v1/openapi.json")
    assert response.status_code == 200
    return OpenAPI.from_dict(response.get_json())


def redemption(event_id: str, *, user_id: str = "u_1", **fields) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": "2026-06-15T13:00:00+08:00", **fields}


def cancel(event_id: str, original: str, *, user_id: str = "u_1") -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id,
            "occurred_at": "2026-06-15T14:00:00+08:00", "original_event_id": original}


SERVER = "http://127.0.0.1:8000"  # the description's server: openapi-core matches it


def conforms(openapi, response, body: bytes = b"", *, request_too: bool = True):
    """Validate the request that was sent (its body given again: the stream is consumed)
    and the response against the description."""
    sent = response.request
    request = MockRequest(SERVER, sent.method.lower(), sent.path,
                          args=dict(sent.args), headers=dict(sent.headers), data=body,
                          content_type=sent.mimetype or "application/json")
    if request_too:
        openapi.validate_request(request)
    openapi.validate_response(request, MockResponse(response.get_data(), response.status_code,
                                                    headers=dict(response.headers),
                                                    content_type=response.mimetype))


def test_description_lists_every_v1_route(app):
    spec = app.test_client().get("/v1/openapi.json").get_json()
    routes = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/v1/") for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path.replace("{", "<").replace("}", ">"), method)
                 for path, operations in spec["paths"].items() for method in operations}
    assert routes == described
    assert spec["openapi"] == "3.1.0"


def test_openapi_needs_no_signature(client):
    assert client.get("/v1/openapi.json").status_code == 200


def test_responses_conform_to_the_description(app, openapi):
    wallet = new_wallet_client(app)
    for send in (lambda: wallet.event(**activation("a1")),
                 lambda: wallet.event(**payment("p1", "88.80")),
                 lambda: wallet.event(**payment("p1", "88.80")),
                 lambda: wallet.event(**refund("r1", "p1", "8.88")),
                 lambda: wallet.post("/v1/quote", {k: v for k, v in payment("x", "10.00").items()
                                                   if k != "event_id"}),
                 lambda: wallet.get("/v1/users/u_1/points?limit=1"),
                 lambda: wallet.event(**redemption("b1", points=10, reference="order-7")),
                 lambda: wallet.event(**cancel("c1", "b1")),
                 lambda: wallet.event(**payment("p2", "20.00", redeem_points=5,
                                                device_id="dev-1")),
                 lambda: wallet.post("/v1/quote", {k: v for k, v in redemption("q", points=1).items()
                                                   if k != "event_id"}),
                 lambda: wallet.get("/v1/users/u_1/points"),
                 lambda: wallet.get("/v1/users/u_1/vouchers"),
                 lambda: wallet.get("/v1/users/u_1/vouchers?status=all"),
                 lambda: wallet.get("/v1/campaigns"),
                 lambda: wallet.get("/v1/campaigns?merchant_id=m_100"),
                 lambda: wallet.get("/v1/users/u_1/offers"),
                 lambda: wallet.get("/v1/users/u_1/offers?merchant_id=m_100&mcc=5812"
                                    "&channel=qr&amount=10.00")):
        response = send()
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        conforms(openapi, response, wallet.last_body)


@pytest.mark.parametrize("make, status", [
    (lambda w: w.event(**payment("p1", "99.00")), 409),
    (lambda w: w.event(**payment("p2", "-1")), 422),
    (lambda w: w.post("/v1/events", b"{nope"), 400),
    (lambda w: w.post("/v1/events", json.dumps(payment("p3", "1.00")), content_type="text/csv"), 415),
    (lambda w: w.event(**refund("r9", "missing", "1.00")), 422),
    (lambda w: w.get("/v1/users/u_1/points?limit=0"), 422),
    (lambda w: w.get("/v1/users/u_1/vouchers?status=voided"), 422),
    (lambda w: w.event(**redemption("b9", points=10**9)), 422),
    (lambda w: w.event(**cancel("c9", "missing")), 422),
    (lambda w: w.get("/v1/campaigns?merchant_id=m%20100"), 422),
    (lambda w: w.get("/v1/campaigns?merchant=m_100"), 422),
    (lambda w: w.get("/v1/users/u_1/offers?amount=abc"), 422),
    (lambda w: w.get("/v1/users/u_1/offers?mcc=12"), 422),
])
def test_error_responses_conform_to_the_description(app, openapi, make, status):
    wallet = new_wallet_client(app)
    wallet.event(**payment("p1", "88.80"))
    response = make(wallet)
    assert response.status_code == status
    conforms(openapi, response, wallet.last_body, request_too=False)


def test_unsigned_request_gets_described_401(app, openapi):
    body = json.dumps(payment("p1", "1.00")).encode()
    response = app.test_client().post("/v1/events", data=body, content_type="application/json")
    assert response.status_code == 401
    conforms(openapi, response, body, request_too=False)


def test_open_campaigns_conform_to_the_description(app, openapi):
    """Both kinds of campaign the fixture installs: a discount (every merchant, no
    windows) and a voucher bonus; nulls and empty lists included."""
    response = new_wallet_client(app).get("/v1/campaigns")
    assert [c["id"] for c in response.get_json()["campaigns"]] == ["dining", "welcome"]
    conforms(openapi, response)


def test_campaigns_with_windows_and_conditions_conform_to_the_description(app, openapi, tmp_path):
    install_campaigns(app, f"""
id: lunch
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}windows:
  - days: [sat, sun]
    from: "11:00"
    to: "00:00"
conditions:
  min_amount: "50.00"
  mcc: ["5812"]
  channels: [qr]
params: {{percent: 15, max_discount: "30.00"}}
""", tmp_path, name="lunch.yaml")
    response = new_wallet_client(app).get("/v1/campaigns?merchant_id=m_100")
    assert [c["id"] for c in response.get_json()["campaigns"]] == ["dining", "lunch", "welcome"]
    conforms(openapi, response)


def test_unsigned_campaigns_request_gets_described_401(app, openapi):
    response = app.test_client().get("/v1/campaigns")
    assert response.status_code == 401
    conforms(openapi, response, request_too=False)


SIGNED_OPERATIONS = [("/v1/events", "post"), ("/v1/quote", "post"),
                     ("/v1/users/{user_id}/points", "get"),
                     ("/v1/users/{user_id}/vouchers", "get"), ("/v1/campaigns", "get")]


@pytest.mark.parametrize("path, method", SIGNED_OPERATIONS)
def test_every_signed_operation_documents_what_any_signed_request_can_meet(app, path, method):
    """The signature (401) is checked after the body is read (413); the per-client rate
    limit (429) and a backing service that is down (503) can answer any of them, with
    Retry-After."""
    responses = app.test_client().get("/v1/openapi.json").get_json()["paths"][path][method][
        "responses"]
    for status in ("401", "413", "422", "429", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}, status
    for status in ("429", "503"):
        assert responses[status]["headers"]["Retry-After"]["required"] is True
    assert "Retry-After" not in responses["401"].get("headers", {})


def request_schema(doc: dict, name: str = "EventRequest") -> dict:
    """A request body's schema with the document's components, for a JSON Schema
    validator (the variants of the oneOf are references)."""
    return {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}


def test_request_description_states_the_programs_rules(app):
    schemas = app.test_client().get("/v1/openapi.json").get_json()["components"]["schemas"]
    assert schemas["EventRequest"]["discriminator"] == {"propertyName": "type", "mapping": {
        kind: f"#/components/schemas/{kind.capitalize()}Event"
        for kind in ("activation", "cancel", "payment", "redemption", "refund")}}
    assert schemas["QuoteRequest"]["discriminator"] == {"propertyName": "type", "mapping": {
        kind: f"#/components/schemas/{kind.capitalize()}Quote"
        for kind in ("activation", "payment", "redemption")}}
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["EventRequest"]["oneOf"]] == [
        "ActivationEvent", "CancelEvent", "PaymentEvent", "RedemptionEvent", "RefundEvent"]
    event = schemas["PaymentEvent"]
    assert event["properties"]["type"]["enum"] == ["payment"]
    assert event["required"] == ["type", "user_id", "occurred_at", "event_id", "merchant_id",
                                 "amount", "currency"]
    assert schemas["RefundEvent"]["required"][-1] == "original_event_id"
    assert schemas["CancelEvent"]["required"] == ["type", "user_id", "occurred_at", "event_id",
                                                  "original_event_id"]
    assert schemas["PaymentQuote"]["required"] == ["type", "user_id", "occurred_at",
                                                   "merchant_id", "amount", "currency"]
    assert event["properties"]["currency"]["enum"] == ["CNY"]
    assert event["properties"]["amount"]["pattern"] == (
        r"^0*([1-9][0-9]{0,8}(\.[0-9]{1,2})?|1000000000(\.0{1,2})?|0\.([1-9][0-9]{0,1}|0[1-9]))$")
    assert event["properties"]["occurred_at"]["pattern"] == (
        r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
        r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
    assert schemas["ActivationEvent"]["dependentRequired"] == {"amount": ["currency"],
                                                               "currency": ["amount"]}
    for kind in ("Activation", "Payment", "RedemptionBurn", "RedemptionExchange"):
        assert "original_event_id" not in schemas[kind + "Quote"]["properties"]
    for kind in ("RedemptionBurn", "RedemptionExchange", "Cancel"):
        assert not {"merchant_id", "amount", "currency"} & set(
            schemas[kind + "Event"]["properties"])
    # a redemption burns points or exchanges them for a campaign's reward: exactly one
    assert schemas["RedemptionEvent"]["oneOf"] == [
        {"$ref": "#/components/schemas/RedemptionBurnEvent"},
        {"$ref": "#/components/schemas/RedemptionExchangeEvent"}]
    burn, exchange = schemas["RedemptionBurnEvent"], schemas["RedemptionExchangeEvent"]
    assert (burn["required"][-1], exchange["required"][-1]) == ("points", "campaign_id")
    assert "campaign_id" not in burn["properties"] and "points" not in exchange["properties"]
    for kind in ("DiscountReward", "CashbackReward"):
        assert schemas[kind]["properties"]["amount"]["pattern"] == r"^-?[0-9]+\.[0-9]{2}$"
    assert exchange["properties"]["campaign_id"]["pattern"] == "^[a-z0-9-]{1,64}$"
    assert event["properties"]["device_id"]["pattern"] == "^[A-Za-z0-9_.:-]{1,128}$"
    assert burn["properties"]["points"] | {"description": ""} == {
        "type": "integer", "minimum": 1, "maximum": 10**12, "description": ""}
    assert event["properties"]["vouchers"] | {"description": ""} == {
        "type": "array", "minItems": 1, "maxItems": 5, "uniqueItems": True, "description": "",
        "items": {"type": "string", "pattern": "^[A-Z0-9]{10,32}$"}}
    assert "0.01 CNY each" in event["properties"]["redeem_points"]["description"]
    for voucher in ("Voucher", "UserVoucher"):
        assert schemas[voucher]["properties"]["min_amount"]["pattern"] == r"^[0-9]+\.[0-9]{2}$"


def test_rewards_are_a_oneof_keyed_on_kind(app):
    schemas = app.test_client().get("/v1/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Reward"]["discriminator"] == {"propertyName": "kind", "mapping": {
        kind: f"#/components/schemas/{kind.capitalize()}Reward"
        for kind in ("points", "discount", "cashback", "voucher")}}
    assert {name: schemas[name]["required"] for name in (
        "PointsReward", "DiscountReward", "CashbackReward", "VoucherReward")} == {
        "PointsReward": ["campaign_id", "kind", "points"],
        "DiscountReward": ["amount", "campaign_id", "currency", "kind"],
        "CashbackReward": ["amount", "campaign_id", "currency", "kind"],
        "VoucherReward": ["campaign_id", "kind", "voucher"]}
    assert "held" in schemas["CashbackReward"]["properties"]
    assert "held" not in schemas["DiscountReward"]["properties"]


def test_description_refuses_redeem_points_when_a_point_is_worth_nothing():
    """PROMO_POINT_VALUE=0 turns paying with points off: the description and the request
    schema both refuse redeem_points then."""
    from decimal import Decimal

    from jsonschema import Draft202012Validator
    from marshmallow import ValidationError

    from promo_engine.api.openapi import build_spec
    from promo_engine.api.schemas import POINTS_OFF_MESSAGE, EventRequestSchema
    from promo_engine.core.event import BUILTIN_EVENT_TYPES
    body = payment("p1", "10.00", redeem_points=1)
    for value, valid in ((Decimal("0"), False), (Decimal("0.05"), True)):
        doc = build_spec(BUILTIN_EVENT_TYPES, "CNY", value)
        assert Draft202012Validator(request_schema(doc)).is_valid(body) == valid
        server = EventRequestSchema(event_types=BUILTIN_EVENT_TYPES, currency="CNY",
                                    point_value=value)
        if valid:
            assert server.load(body).redeem_points == 1
        else:
            with pytest.raises(ValidationError) as refused:
                server.load(body)
            assert refused.value.messages == {"redeem_points": [POINTS_OFF_MESSAGE]}
            assert "turned off" in doc["components"]["schemas"]["PaymentEvent"][
                "properties"]["redeem_points"]["description"]


@pytest.mark.parametrize("body, valid", [
    (payment("p1", "10.00"), True),
    (activation("a1"), True),
    (refund("r1", "p1", "1.00"), True),
    ({k: v for k, v in payment("p1", "10.00").items() if k != "merchant_id"}, False),
    ({k: v for k, v in payment("p1", "10.00").items() if k != "currency"}, False),
    ({**activation("a1"), "currency": "CNY"}, False),
    ({k: v for k, v in refund("r1", "p1", "1.00").items() if k != "original_event_id"}, False),
    ({**payment("p1", "10.00"), "original_event_id": "p0"}, False),
    ({**payment("p1", "10.00"), "amount": "10.001"}, False),
    ({**payment("p1", "10.00"), "amount": "1000000000.00"}, True),
    ({**payment("p1", "10.00"), "amount": "1000000000.01"}, False),
    ({**payment("p1", "10.00"), "amount": "0.00"}, False),
    ({**payment("p1", "10.00"), "amount": ".5"}, False),
    ({**payment("p1", "10.00"), "amount": "010.50"}, True),
    ({**activation("a1"), "occurred_at": "2026-06-15T12:00:00+00:60"}, False),
    ({**activation("a1"), "occurred_at": "1969-12-31T23:59:59Z"}, False),
    ({**payment("p1", "10.00"), "currency": "USD"}, False),
    ({**activation("a1"), "attributes": {"bad name": 1}}, False),
    ({**activation("a1"), "device_id": "d" * 128}, True),
    ({**payment("p1", "10.00"), "redeem_points": 5, "device_id": "dev-1"}, True),
    (redemption("b1", points=5, reference="order-1", device_id="dev-1"), True),
    ({**activation("a1"), "device_id": "d" * 129}, False),
    ({**payment("p1", "10.00"), "redeem_points": 5, "vouchers": None}, False),
    ({**payment("p1", "10.00"), "redeem_points": 0}, False),
    ({**payment("p1", "10.00"), "vouchers": []}, False),
    ({**payment("p1", "10.00"), "vouchers": ["ABCDEFGHIJ", "ABCDEFGHIJ"]}, False),
    ({**payment("p1", "10.00"), "points": 5}, False),
    ({**activation("a1"), "redeem_points": 5}, False),
    (redemption("b1"), False),
    (redemption("b1", points=5, campaign_id="offer"), False),
    (redemption("b1", points=5, merchant_id="m_100"), False),
    (redemption("b1", points=5, amount="1.00", currency="CNY"), False),
    (redemption("b1", points=5, vouchers=["ABCDEFGHIJ"]), False),
    (redemption("b1", points=5, original_event_id="p1"), False),
    ({**cancel("c1", "b0"), "original_event_id": None}, False),
    ({k: v for k, v in cancel("c1", "b0").items() if k != "original_event_id"}, False),
    ({**cancel("c1", "b0"), "reference": "order-1"}, False),
    ({**cancel("c1", "b0"), "points": 5}, False),
    ({**cancel("c1", "b0"), "merchant_id": "m_100"}, False),
])
def test_request_description_agrees_with_the_server(app, body, valid):
    """What the description's JSON Schema accepts, the server accepts, and the reverse."""
    from jsonschema import Draft202012Validator
    doc = app.test_client().get("/v1/openapi.json").get_json()
    assert Draft202012Validator(request_schema(doc)).is_valid(body) == valid
    wallet = new_wallet_client(app)
    wallet.event(**payment("p1", "10.00"))
    response = wallet.event(**body)
    assert (response.status_code in (200, 201, 409)) == valid, response.get_data(as_text=True)


def test_unavailable_database_gets_described_503(openapi):
    from promo_engine.app import create_app
    from promo_engine.ledger.extensions import db

    from conftest import make_settings
    down = create_app(make_settings("sqlite:////nonexistent-directory/promo.db"),
                      test_config={"TESTING": True})
    try:
        body = json.dumps(payment("p1", "1.00")).encode()
        wallet = WalletClient(down.test_client(), "pk_x", "secret")
        response = wallet.post("/v1/events", body)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        conforms(openapi, response, body, request_too=False)
    finally:
        with down.app_context():
            db.engine.dispose()


def test_rate_limited_client_gets_described_429(settings):
    from dataclasses import fields, replace
    if "api_rate_limit" not in {f.name for f in fields(settings)}:
        pytest.skip("no per-client rate limit in this build")
    with running_app(replace(settings, api_rate_limit="2/minute")) as app:
        openapi = OpenAPI.from_dict(app.test_client().get("/v1/openapi.json").get_json())
        wallet = new_wallet_client(app)
        responses = [wallet.get("/v1/campaigns") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert int(responses[-1].headers["Retry-After"]) >= 1
        conforms(openapi, responses[-1])
