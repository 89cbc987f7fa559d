"""HMAC-signed requests: every /v1/ path but GET /v1/openapi.json needs a valid signature."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import InvalidToken
from flask import g, request
from sqlalchemy import text

from conftest import make_settings
from promo_engine.api import auth
from promo_engine.api.auth import sign_request
from promo_engine.api_clients import (ApiClient, create_client, decrypt_secret, revoke_client,
                                      secret_cache)

NOW = 1_800_000_000
ECHO = "/v1/_test/echo"


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(auth, "server_time", lambda: NOW)
    return NOW


@pytest.fixture
def app(app, frozen_clock):
    """The API app plus a test-only route that shows who the request was signed by."""
    def echo(name=None):
        return {"client_id": g.client_id, "body": request.get_data(as_text=True),
                "name": name}
    app.add_url_rule(ECHO, "test_echo", echo, methods=["GET", "POST"])
    app.add_url_rule(f"{ECHO}/<name>", "test_echo_name", echo, methods=["GET"])
    return app


@pytest.fixture
def api_client(app):
    with app.app_context():
        return create_client("wallet-backend")


def signed(key_id, secret, method="GET", path=ECHO, body=b"", timestamp=NOW, **overrides):
    headers = {"X-Promo-Key": key_id, "X-Promo-Timestamp": str(timestamp),
               "X-Promo-Signature": sign_request(secret, timestamp, method, path, body)}
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def unauthorized(response) -> str:
    assert response.status_code == 401
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized"
    return body["error"]["message"]


def test_sign_request_is_hmac_sha256_of_timestamp_method_target_and_body():
    message = b'1800000000.POST./v1/events?dry=1.{"a": 1}'
    expected = hmac.new(b"s3cret", message, hashlib.sha256).hexdigest()
    assert sign_request("s3cret", 1800000000, "post", "/v1/events?dry=1",
                        b'{"a": 1}') == f"v1={expected}"


def test_valid_signature_passes(client, api_client):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret))
    assert response.status_code == 200
    assert response.get_json()["client_id"] == key_id


def test_valid_signature_over_a_body_passes(client, api_client):
    key_id, secret = api_client
    body = b'{"event_id": "evt_1"}'
    response = client.post(ECHO, data=body, content_type="application/json",
                           headers=signed(key_id, secret, "POST", ECHO, body))
    assert response.status_code == 200
    assert response.get_json()["body"] == '{"event_id": "evt_1"}'


@pytest.mark.parametrize("header", ["X-Promo-Key", "X-Promo-Timestamp", "X-Promo-Signature"])
def test_missing_header_is_rejected(client, api_client, header):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret, **{header: None}))
    assert unauthorized(response) == f"missing {header} header"


def test_unknown_key_is_rejected(client, api_client):
    _, secret = api_client
    response = client.get(ECHO, headers=signed("pk_unknown", secret))
    assert unauthorized(response) == "invalid key or signature"


@pytest.mark.parametrize("key_id", ["pk_" + "a" * 38, "../pk_1", "pk 1", "pk_1;--"])
def test_key_that_cannot_be_a_key_id_is_rejected(client, api_client, key_id):
    _, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret))
    assert unauthorized(response) == "invalid key or signature"


def test_wrong_signature_is_rejected(client, api_client):
    key_id, _ = api_client
    response = client.get(ECHO, headers=signed(key_id, "not-the-secret"))
    assert unauthorized(response) == "invalid key or signature"


def test_the_error_never_shows_the_expected_signature(client, api_client):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, "not-the-secret"))
    expected = sign_request(secret, NOW, "GET", ECHO, b"").split("=", 1)[1]
    assert expected not in response.get_data(as_text=True)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_more_than_300_seconds_away_is_rejected(client, api_client, offset):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret, timestamp=NOW + offset))
    assert unauthorized(response) == ("X-Promo-Timestamp is more than 300 s from the "
                                      "server clock")


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_300_seconds_away_passes(client, api_client, offset):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret, timestamp=NOW + offset))
    assert response.status_code == 200


@pytest.mark.parametrize("timestamp", ["1800000000.0", "abc", "-1800000000", "1e9", " "])
def test_timestamp_that_is_not_whole_seconds_is_rejected(client, api_client, timestamp):
    key_id, secret = api_client
    headers = signed(key_id, secret, **{"X-Promo-Timestamp": timestamp})
    assert unauthorized(client.get(ECHO, headers=headers)) in (
        "X-Promo-Timestamp must be Unix time in whole seconds", "missing X-Promo-Timestamp header")


def test_several_v1_values_pass_when_one_matches(client, api_client):
    key_id, secret = api_client
    good = sign_request(secret, NOW, "GET", ECHO, b"")
    old = sign_request("the-previous-secret", NOW, "GET", ECHO, b"")
    response = client.get(ECHO, headers=signed(key_id, secret,
                                                **{"X-Promo-Signature": f"{old}, {good}"}))
    assert response.status_code == 200


def test_several_v1_values_fail_when_none_matches(client, api_client):
    key_id, _ = api_client
    values = ",".join(sign_request(s, NOW, "GET", ECHO, b"") for s in ("a", "b", "c"))
    response = client.get(ECHO, headers=signed(key_id, "x", **{"X-Promo-Signature": values}))
    assert unauthorized(response) == "invalid key or signature"


@pytest.mark.parametrize("value", ["sha256=" + "0" * 64, "v1=xyz", "v1=", "0" * 64])
def test_signature_not_in_v1_hex_form_is_rejected(client, api_client, value):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret, **{"X-Promo-Signature": value}))
    assert unauthorized(response) == "X-Promo-Signature must be v1=<hex HMAC-SHA256>"


def test_signature_over_another_path_fails(client, api_client):
    key_id, secret = api_client
    response = client.get(ECHO, headers=signed(key_id, secret, path="/v1/_test/other"))
    assert unauthorized(response) == "invalid key or signature"


def test_signature_over_the_path_and_query_passes(client, api_client):
    key_id, secret = api_client
    target = f"{ECHO}?limit=5&cursor=abc"
    response = client.get(target, headers=signed(key_id, secret, path=target))
    assert response.status_code == 200


def test_signature_over_another_query_fails(client, api_client):
    key_id, secret = api_client
    headers = signed(key_id, secret, path=f"{ECHO}?limit=5")
    assert unauthorized(client.get(f"{ECHO}?limit=500", headers=headers))


def test_signature_without_the_query_fails_when_a_query_is_sent(client, api_client):
    key_id, secret = api_client
    assert unauthorized(client.get(f"{ECHO}?limit=5", headers=signed(key_id, secret)))


def test_query_is_signed_when_the_server_keeps_it_apart_from_the_raw_uri(client, api_client):
    key_id, secret = api_client
    headers = signed(key_id, secret, path=f"{ECHO}?limit=5")
    response = client.get(ECHO, query_string="limit=5", headers=headers)
    assert response.status_code == 200


def test_path_is_signed_as_sent_percent_escapes_included(client, api_client):
    key_id, secret = api_client
    target = f"{ECHO}/a%20b"
    response = client.get(target, headers=signed(key_id, secret, path=target))
    assert response.status_code == 200
    assert response.get_json()["name"] == "a b"


def test_signature_over_the_decoded_path_fails(client, api_client):
    key_id, secret = api_client
    response = client.get(f"{ECHO}/a%20b", headers=signed(key_id, secret, path=f"{ECHO}/a b"))
    assert unauthorized(response)


def test_signature_over_another_body_fails(client, api_client):
    key_id, secret = api_client
    headers = signed(key_id, secret, "POST", ECHO, b'{"amount": "1.00"}')
    response = client.post(ECHO, data=b'{"amount": "100.00"}', content_type="application/json",
                           headers=headers)
    assert unauthorized(response)


def test_signature_over_the_body_reformatted_fails(client, api_client):
    key_id, secret = api_client
    headers = signed(key_id, secret, "POST", ECHO, b'{"a":1}')
    response = client.post(ECHO, data=b'{"a": 1}', content_type="application/json",
                           headers=headers)
    assert unauthorized(response)


def test_signature_over_another_method_fails(client, api_client):
    key_id, secret = api_client
    response = client.post(ECHO, headers=signed(key_id, secret, "GET", ECHO, b""))
    assert unauthorized(response)


def test_signature_with_another_timestamp_fails(client, api_client):
    key_id, secret = api_client
    headers = signed(key_id, secret, timestamp=NOW)
    headers["X-Promo-Timestamp"] = str(NOW + 1)
    assert unauthorized(client.get(ECHO, headers=headers))


def test_revoked_client_is_rejected(client, app, api_client):
    key_id, secret = api_client
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    with app.app_context():
        assert revoke_client(key_id) is True
    assert unauthorized(client.get(ECHO, headers=signed(key_id, secret)))


def test_revocation_by_another_process_is_seen_when_the_cache_entry_expires(client, app,
                                                                             api_client):
    key_id, secret = api_client
    now = [0.0]
    with app.app_context():
        secret_cache().clock = lambda: now[0]
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    with app.app_context():  # as `promo-engine clients revoke` would, elsewhere
        from promo_engine.extensions import db
        db.session.execute(text("UPDATE api_clients SET revoked_at = created_at "
                                "WHERE key_id = :k"), {"k": key_id})
        db.session.commit()
    now[0] = 29.0
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    now[0] = 30.0
    assert unauthorized(client.get(ECHO, headers=signed(key_id, secret)))


def test_secret_is_stored_encrypted(app, api_client):
    key_id, secret = api_client
    with app.app_context():
        from promo_engine.extensions import db
        row = db.session.execute(text("SELECT * FROM api_clients WHERE key_id = :k"),
                                 {"k": key_id}).mappings().one()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert secret not in stored
    assert decrypt_secret(row["secret_ciphertext"], "test-secret-key-0123456789") == secret


def test_another_secret_key_cannot_decrypt_the_secret(app, api_client):
    key_id, _ = api_client
    with app.app_context():
        from promo_engine.extensions import db
        ciphertext = db.session.get(ApiClient, key_id).secret_ciphertext
    with pytest.raises(InvalidToken):
        decrypt_secret(ciphertext, "another-secret-key-0123456789")


def test_an_app_with_another_secret_key_rejects_the_client(settings, api_client, frozen_clock):
    from promo_engine.app import create_app
    key_id, secret = api_client
    other = create_app(make_settings(settings.database_url,
                                     secret_key="another-secret-key-0123456789"),
                       test_config={"TESTING": True})
    other.add_url_rule(ECHO, "test_echo", lambda: "ok")
    try:
        response = other.test_client().get(ECHO, headers=signed(key_id, secret))
        assert unauthorized(response) == "invalid key or signature"
    finally:
        with other.app_context():
            from promo_engine.extensions import db
            db.engine.dispose()


def test_unsigned_request_to_an_unknown_v1_path_is_401_not_404(client):
    assert unauthorized(client.get("/v1/no-such-endpoint"))


def test_unsigned_request_to_a_v1_endpoint_is_rejected(client):
    assert unauthorized(client.get("/v1/users/x/points"))


def test_signed_request_to_a_v1_endpoint_gets_past_authentication(client, api_client):
    key_id, secret = api_client
    response = client.get("/v1/users/x/points",
                          headers=signed(key_id, secret, path="/v1/users/x/points"))
    assert response.status_code != 401


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_openapi_description_needs_no_signature(client, method):
    response = client.open("/v1/openapi.json", method=method)
    assert response.status_code != 401


def test_openapi_description_needs_a_signature_for_other_methods(client):
    assert unauthorized(client.post("/v1/openapi.json"))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints_need_no_signature(client, path):
    assert client.get(path).status_code == 200


def test_oversized_body_gets_413_before_401(client):
    response = client.post(ECHO, data=b"x" * (64 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413
