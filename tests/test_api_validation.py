"""Every class of malformed event gets a 4xx naming the field, never a 500."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from promo_engine.api.request_fields import WHOLE_NUMBER_MESSAGE
from promo_engine.api.schemas import POINTS_OFF_MESSAGE, EventRequestSchema, QuoteRequestSchema
from promo_engine.core.event import BUILTIN_EVENT_TYPES, Event

from wallet import activation, new_wallet_client, payment, refund


@pytest.fixture
def wallet(app):
    return new_wallet_client(app)


def future(seconds: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def redemption(event_id: str, *, user_id: str = "u_1", **fields) -> dict:
    """A plain burn of 100 points, unless `fields` say otherwise."""
    body = {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": "2026-06-15T13:00:00+08:00", "points": 100}
    body.update(fields)
    return body


def cancel(event_id: str, original: str, *, user_id: str = "u_1") -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id,
            "occurred_at": "2026-06-15T14:00:00+08:00", "original_event_id": original}


def quoted(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "event_id"}


ABSENT = "<absent>"  # a change that takes the field out


def changed(body: dict, change: dict) -> dict:
    """`body` with `change` applied: a value of ABSENT takes the field out."""
    body = dict(body)
    for key, value in change.items():
        if value == ABSENT:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def refused_fields(response) -> dict:
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    return error["fields"]


CASES = [
    ("missing event_id", {"event_id": None}, "event_id"),
    ("empty event_id", {"event_id": ""}, "event_id"),
    ("event_id of 65 chars", {"event_id": "e" * 65}, "event_id"),
    ("event_id with a space", {"event_id": "evt 1"}, "event_id"),
    ("unknown type", {"type": "purchase"}, "type"),
    ("missing user_id", {"user_id": None}, "user_id"),
    ("user_id with slash", {"user_id": "u/1"}, "user_id"),
    ("occurred_at without offset", {"occurred_at": "2026-06-15T12:00:00"}, "occurred_at"),
    ("occurred_at a date only", {"occurred_at": "2026-06-15"}, "occurred_at"),
    ("occurred_at nonsense", {"occurred_at": "yesterday"}, "occurred_at"),
    ("occurred_at impossible day", {"occurred_at": "2026-02-30T12:00:00Z"}, "occurred_at"),
    ("occurred_at a number", {"occurred_at": 1781234567}, "occurred_at"),
    ("occurred_at 10 minutes ahead", {"occurred_at": "FUTURE600"}, "occurred_at"),
    ("occurred_at offset minutes 60", {"occurred_at": "2026-06-15T12:00:00+00:60"}, "occurred_at"),
    ("occurred_at offset -00:60", {"occurred_at": "2026-06-15T12:00:00-00:60"}, "occurred_at"),
    ("occurred_at offset +13:60", {"occurred_at": "2026-06-15T12:00:00+13:60"}, "occurred_at"),
    ("occurred_at offset hours 24", {"occurred_at": "2026-06-15T12:00:00+24:00"}, "occurred_at"),
    ("occurred_at leap second", {"occurred_at": "2016-12-31T23:59:60Z"}, "occurred_at"),
    ("occurred_at before 1970", {"occurred_at": "1969-12-31T23:59:59Z"}, "occurred_at"),
    ("occurred_at with a space", {"occurred_at": "2026-06-15 12:00:00+08:00"}, "occurred_at"),
    ("payment without merchant", {"merchant_id": None}, "merchant_id"),
    ("payment without amount", {"amount": None}, "amount"),
    ("amount as a float", {"amount": 12.5}, "amount"),
    ("amount with 3 decimals", {"amount": "12.505"}, "amount"),
    ("amount zero", {"amount": "0.00"}, "amount"),
    ("amount 0", {"amount": "0"}, "amount"),
    ("amount 00.0", {"amount": "00.0"}, "amount"),
    ("amount with a leading point", {"amount": ".5"}, "amount"),
    ("amount with a trailing point", {"amount": "10."}, "amount"),
    ("amount with a plus sign", {"amount": "+5"}, "amount"),
    ("amount negative", {"amount": "-5.00"}, "amount"),
    ("amount over a billion", {"amount": "1000000000.01"}, "amount"),
    ("amount with exponent", {"amount": "1e3"}, "amount"),
    ("amount not a number", {"amount": "ten"}, "amount"),
    ("amount NaN text", {"amount": "NaN"}, "amount"),
    ("amount without currency", {"currency": None}, "currency"),
    ("currency not configured", {"currency": "USD"}, "currency"),
    ("currency lowercase", {"currency": "cny"}, "currency"),
    ("mcc of 3 digits", {"mcc": "581"}, "mcc"),
    ("mcc as number", {"mcc": 5812}, "mcc"),
    ("channel with spaces", {"channel": "in store"}, "channel"),
    ("original_event_id on a payment", {"original_event_id": "evt_0"}, "original_event_id"),
    ("attributes not an object", {"attributes": ["a"]}, "attributes"),
    ("attribute value null", {"attributes": {"segment": None}}, "attributes.segment"),
    ("attribute value nested", {"attributes": {"segment": {"a": 1}}}, "attributes.segment"),
    ("33 attributes", {"attributes": {f"k{i}": i for i in range(33)}}, "attributes"),
    ("unknown field", {"coupon": "X"}, "coupon"),
    ("device_id empty", {"device_id": ""}, "device_id"),
    ("device_id of 129 chars", {"device_id": "d" * 129}, "device_id"),
    ("device_id with a slash", {"device_id": "dev/1"}, "device_id"),
    ("device_id a number", {"device_id": 7}, "device_id"),
    ("redeem_points zero", {"redeem_points": 0}, "redeem_points"),
    ("redeem_points negative", {"redeem_points": -5}, "redeem_points"),
    ("redeem_points as text", {"redeem_points": "100"}, "redeem_points"),
    ("redeem_points a boolean", {"redeem_points": True}, "redeem_points"),
    ("redeem_points 1.0", {"redeem_points": 1.0}, "redeem_points"),
    ("redeem_points 1.5", {"redeem_points": 1.5}, "redeem_points"),
    ("redeem_points over 10^12", {"redeem_points": 10**12 + 1}, "redeem_points"),
    ("redeem_points worth more than the amount", {"redeem_points": 1001}, "redeem_points"),
    ("vouchers empty", {"vouchers": []}, "vouchers"),
    ("6 vouchers", {"vouchers": [f"CODE{n:06d}" for n in range(6)]}, "vouchers"),
    ("vouchers a string", {"vouchers": "ABCDEFGHIJ"}, "vouchers"),
    ("voucher code lowercase", {"vouchers": ["abcdefghij"]}, "vouchers.0"),
    ("voucher code of 9", {"vouchers": ["ABCDEFGHI"]}, "vouchers.0"),
    ("voucher code of 33", {"vouchers": ["A" * 33]}, "vouchers.0"),
    ("voucher code a number", {"vouchers": ["ABCDEFGHIJ", 1234567890]}, "vouchers.1"),
    ("voucher code twice", {"vouchers": ["ABCDEFGHIJ", "ABCDEFGHIJ"]}, "vouchers"),
    ("points on a payment", {"points": 10}, "points"),
    ("campaign_id on a payment", {"campaign_id": "offer"}, "campaign_id"),
    ("reference on a payment", {"reference": "order-1"}, "reference"),
]


@pytest.mark.parametrize("name, change, field", CASES, ids=[c[0] for c in CASES])
def test_invalid_payment_is_422_naming_the_field(wallet, name, change, field):
    body = payment("evt_1", "10.00")
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = future(600) if value == "FUTURE600" else value
    response = wallet.event(**body)
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"], error


def test_refund_without_original_event_id_is_422(wallet):
    body = refund("r_1", "evt_0", "1.00")
    del body["original_event_id"]
    response = wallet.event(**body)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "original_event_id": ["is required for refund events"]}


REDEMPTION_CASES = [
    ("points zero", {"points": 0}, "points"),
    ("points negative", {"points": -1}, "points"),
    ("points over 10^12", {"points": 10**12 + 1}, "points"),
    ("points as text", {"points": "100"}, "points"),
    ("points 100.0", {"points": 100.0}, "points"),
    ("points 1e2", {"points": 1e2}, "points"),
    ("points a boolean", {"points": True}, "points"),
    ("points null", {"points": None}, "points"),
    ("neither points nor campaign_id", {"points": ABSENT}, "points"),
    ("both points and campaign_id", {"campaign_id": "offer"}, "campaign_id"),
    ("campaign_id uppercase", {"points": ABSENT, "campaign_id": "Offer"}, "campaign_id"),
    ("campaign_id of 65", {"points": ABSENT, "campaign_id": "c" * 65}, "campaign_id"),
    ("campaign_id empty", {"points": ABSENT, "campaign_id": ""}, "campaign_id"),
    ("campaign_id with underscore", {"points": ABSENT, "campaign_id": "a_b"}, "campaign_id"),
    ("campaign_id null", {"points": ABSENT, "campaign_id": None}, "campaign_id"),
    ("reference empty", {"reference": ""}, "reference"),
    ("reference of 65", {"reference": "r" * 65}, "reference"),
    ("reference with a space", {"reference": "order 1"}, "reference"),
    ("merchant_id", {"merchant_id": "m_100"}, "merchant_id"),
    ("amount and currency", {"amount": "1.00", "currency": "CNY"}, "amount"),
    ("currency", {"currency": "CNY"}, "currency"),
    ("original_event_id", {"original_event_id": "p_1"}, "original_event_id"),
    ("redeem_points", {"redeem_points": 5}, "redeem_points"),
    ("vouchers", {"vouchers": ["ABCDEFGHIJ"]}, "vouchers"),
    ("device_id of 129", {"device_id": "d" * 129}, "device_id"),
]


@pytest.mark.parametrize("name, change, field", REDEMPTION_CASES,
                         ids=[c[0] for c in REDEMPTION_CASES])
def test_invalid_redemption_is_422_naming_the_field(wallet, name, change, field):
    assert field in refused_fields(wallet.event(**changed(redemption("b_1"), change)))


CANCEL_CASES = [
    ("without original_event_id", {"original_event_id": ABSENT}, "original_event_id"),
    ("original_event_id null", {"original_event_id": None}, "original_event_id"),
    ("original_event_id with a space", {"original_event_id": "b 1"}, "original_event_id"),
    ("merchant_id", {"merchant_id": "m_100"}, "merchant_id"),
    ("amount", {"amount": "1.00", "currency": "CNY"}, "amount"),
    ("points", {"points": 5}, "points"),
    ("campaign_id", {"campaign_id": "offer"}, "campaign_id"),
    ("reference", {"reference": "order-1"}, "reference"),
    ("redeem_points", {"redeem_points": 5}, "redeem_points"),
    ("vouchers", {"vouchers": ["ABCDEFGHIJ"]}, "vouchers"),
]


@pytest.mark.parametrize("name, change, field", CANCEL_CASES, ids=[c[0] for c in CANCEL_CASES])
def test_invalid_cancel_is_422_naming_the_field(wallet, name, change, field):
    assert field in refused_fields(wallet.event(**changed(cancel("c_1", "b_1"), change)))


QUOTE_CASES = [
    ("a cancel", quoted(cancel("c_1", "b_1")), "original_event_id"),
    ("a cancel without original_event_id",
     changed(quoted(cancel("c_1", "b_1")), {"original_event_id": ABSENT}), "type"),
    ("a refund without original_event_id",
     changed(quoted(refund("r_1", "p_1", "1.00")), {"original_event_id": ABSENT}), "type"),
    ("a redemption with points and campaign_id",
     quoted(redemption("b_1", campaign_id="offer")), "campaign_id"),
    ("a redemption with amount", quoted(redemption("b_1", amount="1.00", currency="CNY")),
     "amount"),
    ("a payment with redeem_points 0", quoted(payment("p_1", "10.00", redeem_points=0)),
     "redeem_points"),
    ("a payment with redeem_points worth more", quoted(payment("p_1", "10.00",
                                                               redeem_points=1001)),
     "redeem_points"),
    ("a payment with a voucher twice",
     quoted(payment("p_1", "10.00", vouchers=["ABCDEFGHIJ", "ABCDEFGHIJ"])), "vouchers"),
    ("an activation with vouchers", quoted({**activation("a_1"), "vouchers": ["ABCDEFGHIJ"]}),
     "vouchers"),
    ("a payment with device_id of 129",
     quoted(payment("p_1", "10.00", device_id="d" * 129)), "device_id"),
]


@pytest.mark.parametrize("name, body, field", QUOTE_CASES, ids=[c[0] for c in QUOTE_CASES])
def test_invalid_quote_is_422_naming_the_field(wallet, name, body, field):
    assert field in refused_fields(wallet.post("/v1/quote", body))


@pytest.mark.parametrize("body, fields", [
    (redemption("b_1", merchant_id="m_100", amount="1.00", currency="CNY"),
     {"merchant_id": ["is not for redemption events"],
      "amount": ["is not for redemption events"],
      "currency": ["is not for redemption events"]}),
    (changed(redemption("b_1"), {"points": ABSENT}),
     {"points": ["a redemption needs points (a burn) or campaign_id (an exchange)"],
      "campaign_id": ["a redemption needs points (a burn) or campaign_id (an exchange)"]}),
    (redemption("b_1", campaign_id="offer"),
     {"points": ["give one of points (a burn) and campaign_id (an exchange), not both"],
      "campaign_id": ["give one of points (a burn) and campaign_id (an exchange), not both"]}),
    (redemption("b_1", points=0), {"points": ["must be from 1 to 1000000000000"]}),
    (redemption("b_1", points=100.0), {"points": [WHOLE_NUMBER_MESSAGE]}),
    (redemption("b_1", points="100"), {"points": ["must be a whole number such as 100, "
                                                  "not a string"]}),
    (changed(redemption("b_1", campaign_id="Spring"), {"points": ABSENT}),
     {"campaign_id": ["must be 1-64 characters of a-z 0-9 - (a campaign's id)"]}),
    (redemption("b_1", redeem_points=5, vouchers=["ABCDEFGHIJ"]),
     {"redeem_points": ["is only for payment events"],
      "vouchers": ["is only for payment events"]}),
    (redemption("b_1", original_event_id="p_1"),
     {"original_event_id": ["is only for refund and cancel events"]}),
    (changed(cancel("c_1", "b_1"), {"original_event_id": ABSENT}),
     {"original_event_id": ["is required for cancel events"]}),
    ({**cancel("c_1", "b_1"), "merchant_id": "m_100", "reference": "order-1"},
     {"merchant_id": ["is not for cancel events"],
      "reference": ["is only for redemption events"]}),
    ({**activation("a_1"), "points": 5, "campaign_id": "offer", "redeem_points": 5},
     {"points": ["is only for redemption events"],
      "campaign_id": ["is only for redemption events"],
      "redeem_points": ["is only for payment events"]}),
    (payment("p_1", "10.00", redeem_points=1001),
     {"redeem_points": ["pays more than the amount: 1001 points at 0.01 are 10.01 CNY, "
                        "the amount is 10.00"]}),
    (payment("p_1", "10.00", redeem_points=1.0), {"redeem_points": [WHOLE_NUMBER_MESSAGE]}),
    (payment("p_1", "10.00", vouchers=["ABCDEFGHIJ", "KLMNOPQRST", "ABCDEFGHIJ"]),
     {"vouchers": ["each voucher at most once: ABCDEFGHIJ given more than once"]}),
    (payment("p_1", "10.00", vouchers=[f"CODE{n:06d}" for n in range(6)]),
     {"vouchers": ["must list 1 to 5 voucher codes"]}),
    (payment("p_1", "10.00", vouchers=["ABCDEFGHIJ", "abc"]),
     {"vouchers.1": ["must be 10-32 characters of A-Z 0-9"]}),
    (payment("p_1", "10.00", device_id="dev 1"),
     {"device_id": ["must be 1-128 characters of A-Z a-z 0-9 _ . : -"]}),
])
def test_refusals_say_exactly_why(wallet, body, fields):
    assert refused_fields(wallet.event(**body)) == fields


def test_cancel_and_refund_cannot_be_quoted(wallet):
    message = "cannot be quoted; quote a payment, a redemption or an activation"
    body = changed(quoted(cancel("c_1", "b_1")), {"original_event_id": ABSENT})
    assert refused_fields(wallet.post("/v1/quote", body)) == {"type": [f"a cancel {message}"]}
    body = changed(quoted(refund("r_1", "p_1", "1.00")), {"original_event_id": ABSENT})
    assert refused_fields(wallet.post("/v1/quote", body)) == {"type": [f"a refund {message}"]}


def test_redeem_points_worth_exactly_the_amount_pass_validation():
    """1000 points at 0.01 pay all of 10.00: the discount is not larger than the amount."""
    event = _event_schema().load(payment("p_1", "10.00", redeem_points=1000))
    assert event.redeem_points == 1000


def _event_schema(point_value: Decimal = Decimal("0.01"), *, quote: bool = False):
    schema_class = QuoteRequestSchema if quote else EventRequestSchema
    return schema_class(event_types=BUILTIN_EVENT_TYPES, currency="CNY",
                        point_value=point_value)


def test_redeem_points_are_refused_when_a_point_is_worth_nothing():
    from marshmallow import ValidationError
    body = payment("p_1", "10.00", redeem_points=1)
    for schema, sent in ((_event_schema(Decimal("0")), body),
                         (_event_schema(Decimal("0"), quote=True), quoted(body))):
        with pytest.raises(ValidationError) as refused:
            schema.load(sent)
        assert refused.value.messages == {"redeem_points": [POINTS_OFF_MESSAGE]}
    # the rest of a payment is still welcome
    assert _event_schema(Decimal("0")).load(payment("p_1", "10.00")).redeem_points is None


def test_point_value_sets_what_redeem_points_may_be_worth():
    from marshmallow import ValidationError
    schema = _event_schema(Decimal("0.10"))
    assert schema.load(payment("p_1", "10.00", redeem_points=100)).redeem_points == 100
    with pytest.raises(ValidationError) as refused:
        schema.load(payment("p_1", "10.00", redeem_points=101))
    assert refused.value.messages == {"redeem_points": [
        "pays more than the amount: 101 points at 0.10 are 10.10 CNY, the amount is 10.00"]}


def test_the_event_carries_every_new_field():
    at = datetime(2026, 6, 15, 5, 0, tzinfo=timezone.utc)
    burn = _event_schema().load(redemption("b_1", reference="order-1", device_id="dev:1"))
    assert burn == Event(type="redemption", user_id="u_1", occurred_at=at, event_id="b_1",
                         points=100, reference="order-1", device_id="dev:1")
    exchange = _event_schema(quote=True).load(
        quoted(changed(redemption("b_1", campaign_id="coffee-for-500"), {"points": ABSENT})))
    assert (exchange.campaign_id, exchange.points, exchange.event_id) == ("coffee-for-500",
                                                                         None, None)
    paid = _event_schema().load(payment("p_1", "10.00", redeem_points=300,
                                        vouchers=["ABCDEFGHIJ", "KLMNOPQRST"]))
    assert (paid.redeem_points, paid.vouchers) == (300, ("ABCDEFGHIJ", "KLMNOPQRST"))
    undo = _event_schema().load(cancel("c_1", "b_1"))
    assert (undo.type, undo.original_event_id, undo.vouchers) == ("cancel", "b_1", ())


def test_device_id_of_each_allowed_character_is_accepted(wallet):
    body = payment("evt_1", "10.00", device_id="Az09_.:-" + "d" * 120)
    response = wallet.event(**body)
    assert response.status_code == 201, response.get_data(as_text=True)


def test_occurred_at_300_seconds_ahead_is_accepted(wallet):
    body = activation("act_1", at=future(290))
    assert wallet.event(**body).status_code == 201


def test_nanosecond_timestamp_and_z_suffix_accepted(wallet):
    assert wallet.event(**activation("act_1", at="2026-06-15T04:00:00.123456789Z")).status_code == 201


def test_attributes_of_each_allowed_kind_are_accepted(wallet):
    body = payment("evt_1", "10.00", attributes={"segment": "student", "age": 21, "vip": True,
                                                  "score": 4.5})
    assert wallet.event(**body).status_code == 201


def test_top_level_array_is_422(wallet):
    response = wallet.post("/v1/events", b"[1, 2]")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_malformed_json_is_400(wallet):
    response = wallet.post("/v1/events", b'{"event_id": ')
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


def test_wrong_content_type_is_415(wallet):
    response = wallet.post("/v1/events", json.dumps(payment("e", "1.00")), content_type="text/plain")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_body_over_64_kib_is_413(wallet):
    body = json.dumps(payment("e", "1.00", attributes={"pad": "x" * 65536})).encode()
    response = wallet.post("/v1/events", body)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                         st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
field_values = {
    "event_id": st.one_of(st.just("evt_h"), json_values),
    "type": st.one_of(st.sampled_from(["payment", "refund", "activation", "redemption",
                                       "cancel"]), json_values),
    "user_id": st.one_of(st.just("u_h"), json_values),
    "occurred_at": st.one_of(st.just("2026-06-15T12:00:00+08:00"), json_values),
    "merchant_id": st.one_of(st.just("m_100"), json_values),
    "amount": st.one_of(st.sampled_from(["10.00", "0.01", "1000000000"]), json_values),
    "currency": st.one_of(st.just("CNY"), json_values),
    "mcc": st.one_of(st.just("5812"), json_values),
    "channel": st.one_of(st.just("qr"), json_values),
    "original_event_id": st.one_of(st.just("evt_h"), json_values),
    "attributes": st.one_of(st.just({"segment": "student"}), json_values),
    "device_id": st.one_of(st.just("dev-1"), json_values),
    "points": st.one_of(st.sampled_from([1, 100, 10**12]), json_values),
    "campaign_id": st.one_of(st.just("coffee"), json_values),
    "reference": st.one_of(st.just("order-1"), json_values),
    "redeem_points": st.one_of(st.sampled_from([1, 1000]), json_values),
    "vouchers": st.one_of(st.just(["ABCDEFGHIJ"]), json_values),
    "surprise": json_values,
}
event_bodies = st.fixed_dictionaries({}, optional=field_values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=event_bodies)
def test_any_event_body_gets_a_clear_answer_never_500(wallet, body):
    response = wallet.post("/v1/events", json.dumps(body))
    assert response.status_code in (200, 201, 400, 409, 422), response.get_data(as_text=True)
    payload = response.get_json()
    if response.status_code >= 400:
        error = payload["error"]
        assert error["code"] in ("validation_error", "malformed_json", "idempotency_conflict",
                                 "unknown_payment", "refund_exceeds_payment",
                                 "insufficient_points", "offer_unavailable",
                                 "voucher_unavailable", "unknown_redemption",
                                 "already_cancelled", "voucher_used")
        assert error["message"]
        if error["code"] == "validation_error":
            assert error["fields"] and all(isinstance(v, list) and v for v in error["fields"].values())
