"""Every class of malformed event gets a 4xx naming the field, never a 500."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from wallet import activation, new_wallet_client, payment, refund


@pytest.fixture
def wallet(app):
    return new_wallet_client(app)


def future(seconds: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


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
    "type": st.one_of(st.sampled_from(["payment", "refund", "activation"]), json_values),
    "user_id": st.one_of(st.just("u_h"), json_values),
    "occurred_at": st.one_of(st.just("2026-06-15T12:00:00+08:00"), json_values),
    "merchant_id": st.one_of(st.just("m_100"), json_values),
    "amount": st.one_of(st.sampled_from(["10.00", "0.01", "1000000000"]), json_values),
    "currency": st.one_of(st.just("CNY"), json_values),
    "mcc": st.one_of(st.just("5812"), json_values),
    "channel": st.one_of(st.just("qr"), json_values),
    "original_event_id": st.one_of(st.just("evt_h"), json_values),
    "attributes": st.one_of(st.just({"segment": "student"}), json_values),
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
                                 "unknown_payment", "refund_exceeds_payment")
        assert error["message"]
        if error["code"] == "validation_error":
            assert error["fields"] and all(isinstance(v, list) and v for v in error["fields"].values())
