"""Every error outside the portal is JSON `{"error": {"code", "message", "fields"?}}`."""
from __future__ import annotations

import io
import logging
from decimal import Decimal

import pytest
from flask import abort, g
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DataError

from promo_engine.api import auth
from promo_engine.api.auth import signed_headers
from promo_engine.api.errors import ApiError
from promo_engine.api.requests import canonical_body_hash, json_body
from promo_engine.ledger.api_clients import create_client

from conftest import make_settings

LIMIT = 64 * 1024
PARSE = "/v1/_test/parse"


@pytest.fixture
def app(app):
    """The API app plus test-only routes: one that parses its body, some that fail."""
    def parse():
        body = json_body()
        return {"client_id": g.client_id,
                "types": {key: type(value).__name__ for key, value in body.items()},
                "values": {key: str(value) for key, value in body.items()}}

    def api_error():
        raise ApiError(422, "validation_error", "the event is not valid",
                       fields={"amount": ["must be greater than 0"]})

    def plain_api_error():
        raise ApiError(409, "idempotency_conflict", "event_id evt_1 was already used")

    def bad_request():
        abort(400)

    def redis_down():
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    def bug():
        raise RuntimeError("secret internals")

    def unstorable():
        raise DataError("INSERT INTO events ...", {}, Exception("value out of range"))

    app.add_url_rule(PARSE, "test_parse", parse, methods=["POST"])
    for name, view in [("api_error", api_error), ("plain_api_error", plain_api_error),
                       ("bad_request", bad_request), ("redis_down", redis_down), ("bug", bug),
                       ("unstorable", unstorable)]:
        app.add_url_rule(f"/_test/{name}", f"test_{name}", view)
    return app


@pytest.fixture
def post(app, client):
    """POST to the parsing route, signed by a real client."""
    with app.app_context():
        key_id, secret = create_client("wallet-backend")

    def send(body: bytes, content_type: str | None = "application/json"):
        headers = signed_headers(key_id, secret, "POST", PARSE, body)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return client.post(PARSE, data=body, headers=headers)
    return send


def error_of(response, status: int) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    return body["error"]


def test_api_error_with_fields(client):
    assert error_of(client.get("/_test/api_error"), 422) == {
        "code": "validation_error", "message": "the event is not valid",
        "fields": {"amount": ["must be greater than 0"]}}


def test_api_error_without_fields_has_no_fields_key(client):
    assert error_of(client.get("/_test/plain_api_error"), 409) == {
        "code": "idempotency_conflict", "message": "event_id evt_1 was already used"}


def test_unknown_path_is_json_404(client):
    assert error_of(client.get("/no/such/page"), 404)["code"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.post("/healthz")
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_werkzeug_abort_is_json(client):
    assert error_of(client.get("/_test/bad_request"), 400)["code"] == "bad_request"


def test_body_over_64_kib_is_413(client):
    response = client.post("/v1/events", data=b"x" * (LIMIT + 1),
                           content_type="application/json")
    assert error_of(response, 413) == {"code": "payload_too_large",
                                       "message": "the request body is larger than 64 KiB"}


def test_body_of_exactly_64_kib_is_not_413(client):
    response = client.post("/v1/events", data=b"x" * LIMIT, content_type="application/json")
    assert error_of(response, 401)["code"] == "unauthorized"


def chunked(client, size: int):
    """A streamed body with no Content-Length, as a server that de-chunks hands it over."""
    return client.post("/v1/events", input_stream=io.BytesIO(b"x" * size),
                       headers={"Transfer-Encoding": "chunked",
                                "Content-Type": "application/json"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_unsigned_request_is_401_before_its_content_type_is_looked_at(client):
    response = client.post("/v1/events", data=b"not json", content_type="text/plain")
    assert error_of(response, 401)["code"] == "unauthorized"


def test_chunked_body_over_64_kib_is_413(client):
    assert error_of(chunked(client, LIMIT + 1), 413)["code"] == "payload_too_large"


def test_chunked_body_of_exactly_64_kib_is_read_whole(client):
    assert error_of(chunked(client, LIMIT), 401)["code"] == "unauthorized"


def test_chunked_body_is_what_the_signature_covers(app, client):
    with app.app_context():
        key_id, secret = create_client("wallet-backend")
    body = b'{"event_id": "evt_1", "amount": 1.50}'
    headers = signed_headers(key_id, secret, "POST", PARSE, body)
    headers.update({"Transfer-Encoding": "chunked", "Content-Type": "application/json"})
    response = client.post(PARSE, input_stream=io.BytesIO(body), headers=headers,
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 200
    assert response.get_json()["values"] == {"event_id": "evt_1", "amount": "1.50"}


def test_json_numbers_are_decimals_never_floats(post):
    response = post(b'{"amount": 10.10, "count": 3}')
    assert response.get_json()["types"] == {"amount": "Decimal", "count": "int"}
    assert response.get_json()["values"] == {"amount": "10.10", "count": "3"}


def test_json_with_charset_is_accepted(post):
    assert post(b"{}", "application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None, "application/json-seq"])
def test_body_that_is_not_declared_json_is_415(post, content_type):
    assert error_of(post(b"{}", content_type), 415)["code"] == "unsupported_media_type"


def test_json_in_another_charset_is_415(post):
    response = post(b"{}", "application/json; charset=latin-1")
    assert error_of(response, 415) == {"code": "unsupported_media_type",
                                       "message": "JSON bodies must be UTF-8"}


@pytest.mark.parametrize("body", [b'{"a": ', b"{'a': 1}", b'{"a": 1,}', b"", b"  ",
                                  b'{"a": 1} {"b": 2}', b"\xef\xbb\xbf{}"])
def test_malformed_json_is_400(post, body):
    assert error_of(post(body), 400)["code"] == "malformed_json"


def test_body_that_is_not_utf8_is_400(post):
    assert error_of(post(b'{"name": "\xff"}'), 400) == {
        "code": "malformed_json", "message": "the body is not valid UTF-8"}


def test_duplicate_key_is_400_naming_the_key(post):
    assert error_of(post(b'{"amount": "1.00", "amount": "100.00"}'), 400) == {
        "code": "malformed_json", "message": 'duplicate key "amount"'}


def test_duplicate_key_in_a_nested_object_is_400(post):
    response = post(b'{"attributes": {"segment": "a", "segment": "b"}}')
    assert error_of(response, 400)["message"] == 'duplicate key "segment"'


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_400(post, constant):
    assert error_of(post(f'{{"amount": {constant}}}'.encode()), 400) == {
        "code": "malformed_json", "message": f"{constant} is not a JSON number"}


@pytest.mark.parametrize("body", [b"[]", b'"payment"', b"1", b"null", b"true"])
def test_top_level_that_is_not_an_object_is_422(post, body):
    assert error_of(post(body), 422) == {
        "code": "validation_error", "message": "the body must be a JSON object",
        "fields": {"_schema": ["must be a JSON object"]}}


def test_deeply_nested_json_is_400_not_a_crash(post):
    assert error_of(post(b"[" * 50_000), 400)["code"] == "malformed_json"


def test_json_nested_beyond_32_levels_is_422(post):
    body = b'{"a": ' + b"[" * 32 + b"]" * 32 + b"}"
    assert error_of(post(body), 422)["fields"] == {"a": ["nested more than 32 levels deep"]}


def test_integer_too_long_to_convert_is_400(post):
    assert error_of(post(b'{"n": ' + b"9" * 5000 + b"}"), 400)["code"] == "malformed_json"


def test_lone_surrogate_is_400(post):
    assert error_of(post(b'{"user_id": "\\ud800"}'), 400)["code"] == "malformed_json"


def test_nul_character_is_422_naming_the_field(post):
    assert error_of(post(b'{"attributes": {"segment": "a\\u0000b"}}'), 422)["fields"] == {
        "attributes": ["must not contain the NUL character (U+0000)"]}


def test_body_hash_ignores_whitespace_and_key_order():
    first = {"event_id": "evt_1", "amount": Decimal("10.50"), "attributes": {"b": 1, "a": True}}
    second = {"attributes": {"a": True, "b": 1}, "amount": Decimal("10.50"), "event_id": "evt_1"}
    assert canonical_body_hash(first) == canonical_body_hash(second)


@pytest.mark.parametrize("other", [{"amount": "10.50"}, {"amount": Decimal("10.5")},
                                   {"amount": Decimal("10.51")}, {"amount": [Decimal("10.50")]}])
def test_body_hash_differs_for_any_other_change(other):
    assert canonical_body_hash({"amount": Decimal("10.50")}) != canonical_body_hash(other)


def test_body_hash_of_parsed_bodies_that_differ_only_in_layout_is_equal(app):
    from promo_engine.api.requests import parse_json
    compact = parse_json(b'{"a":1.50,"b":{"y":[1,2],"x":"\xc3\xa9"}}')
    spaced = parse_json(b'{ "b" : { "x" : "\\u00e9", "y" : [ 1 , 2 ] } ,\n "a" : 1.50 }')
    assert canonical_body_hash(compact) == canonical_body_hash(spaced)


def test_redis_connection_error_is_503_with_retry_after(client, caplog):
    with caplog.at_level(logging.ERROR, logger="promo_engine.api.errors"):
        response = client.get("/_test/redis_down")
    assert error_of(response, 503) == {
        "code": "unavailable", "message": "a backing service is unavailable, and the event "
        "may or may not have been recorded: retry with the same event_id and body (a recorded "
        "event is answered as a replay)"}
    assert response.headers["Retry-After"] == "1"
    assert "ConnectionError" in caplog.text


def test_unexpected_exception_is_json_500_without_internals(client, caplog):
    with caplog.at_level(logging.ERROR, logger="promo_engine.api.errors"):
        response = client.get("/_test/bug")
    assert error_of(response, 500) == {"code": "internal_error", "message": "internal error"}
    assert "secret internals" not in response.get_data(as_text=True)
    assert "RuntimeError: secret internals" in caplog.text  # logged with its traceback


def test_value_the_database_refuses_is_422_not_500(client, caplog):
    with caplog.at_level(logging.ERROR, logger="promo_engine.api.errors"):
        response = client.get("/_test/unstorable")
    assert error_of(response, 422) == {"code": "validation_error",
                                       "message": "a value is out of range or cannot be stored"}
    assert "value out of range" in caplog.text


def test_portal_pages_keep_their_own_errors(client):
    response = client.get("/portal/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def database_down_urls():
    return {"sqlite": "sqlite:////nonexistent-directory/promo.db",
            "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/promo"}


@pytest.fixture(params=["sqlite", "postgresql"])
def down_app(request, monkeypatch):
    """An app whose database cannot be reached (closed port / unopenable file)."""
    from promo_engine.app import create_app
    monkeypatch.setattr(auth, "server_time", lambda: 1_800_000_000)
    app = create_app(make_settings(database_down_urls()[request.param]),
                     test_config={"TESTING": True})
    yield app
    with app.app_context():
        from promo_engine.ledger.extensions import db
        db.engine.dispose()


def test_database_down_is_503_with_retry_after(down_app):
    headers = signed_headers("pk_x", "secret", "GET", "/v1/users/u1/points",
                             timestamp=1_800_000_000)
    response = down_app.test_client().get("/v1/users/u1/points", headers=headers)
    assert error_of(response, 503)["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
