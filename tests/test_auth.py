"""HMAC-signed requests: every /v1/ path but GET /v1/openapi.json needs a valid signature."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import InvalidToken
from flask import g, request
from sqlalchemy import text

from promo_engine.api import auth
from promo_engine.api.auth import sign_request
from promo_engine.ledger.api_clients import (ApiClient, client_directory, create_client,
                                             decrypt_secret, encrypt_secret, revoke_client)

from conftest import make_settings

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


def test_revocation_by_another_process_is_seen_within_a_second(client, app, api_client):
    key_id, secret = api_client
    now = [0.0]
    with app.app_context():
        client_directory().clock = lambda: now[0]
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    with app.app_context():  # as `promo-engine clients revoke` would, elsewhere
        from promo_engine.ledger.extensions import db
        db.session.execute(text("UPDATE api_clients SET revoked_at = created_at "
                                "WHERE key_id = :k"), {"k": key_id})
        db.session.commit()
    now[0] = 0.99  # the clients are read at most once a second
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    now[0] = 1.0
    assert unauthorized(client.get(ECHO, headers=signed(key_id, secret)))


def test_client_created_by_another_process_works_within_a_second(client, app, api_client):
    key_id, secret = api_client
    now = [0.0]
    with app.app_context():
        client_directory().clock = lambda: now[0]
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    with app.app_context():  # as `promo-engine clients create` would, elsewhere
        from promo_engine.ledger.extensions import db
        db.session.add(ApiClient(key_id="pk_elsewhere", name="other host",
                                 secret_ciphertext=encrypt_secret(
                                     "made-elsewhere", "test-secret-key-0123456789")))
        db.session.commit()
    now[0] = 0.5
    assert unauthorized(client.get(ECHO, headers=signed("pk_elsewhere", "made-elsewhere")))
    now[0] = 1.0
    response = client.get(ECHO, headers=signed("pk_elsewhere", "made-elsewhere"))
    assert response.status_code == 200
    assert response.get_json()["client_id"] == "pk_elsewhere"


@pytest.fixture
def statements(app):
    """The SQL statements the app runs from now on."""
    from sqlalchemy import event

    from promo_engine.ledger.extensions import db
    seen: list[str] = []

    def remember(conn, cursor, statement, *args):
        seen.append(statement)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", remember)
    yield seen
    event.remove(engine, "before_cursor_execute", remember)


@pytest.fixture
def hmacs(monkeypatch):
    """How many times the server has computed a request's HMAC."""
    computed = []

    def counting(*args, **kwargs):
        computed.append(args[0])
        return sign_request(*args, **kwargs)
    monkeypatch.setattr(auth, "sign_request", counting)
    return computed


def test_unknown_key_id_costs_what_a_wrong_signature_costs(client, api_client, statements,
                                                            hmacs):
    """No database lookup and one HMAC for either, so the time taken does not tell which key
    ids exist."""
    key_id, secret = api_client
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200  # loaded
    statements.clear()
    hmacs.clear()
    assert unauthorized(client.get(ECHO, headers=signed("pk_" + "0" * 32, secret))) == (
        "invalid key or signature")
    assert (statements, len(hmacs)) == ([], 1)
    assert hmacs[0] != secret
    assert unauthorized(client.get(ECHO, headers=signed(key_id, "not-the-secret"))) == (
        "invalid key or signature")
    assert (statements, len(hmacs)) == ([], 2)
    assert hmacs[1] == secret


def test_more_than_eight_signatures_are_refused(client, api_client):
    key_id, secret = api_client
    good = sign_request(secret, NOW, "GET", ECHO, b"")
    others = [sign_request(f"old-{n}", NOW, "GET", ECHO, b"") for n in range(8)]
    response = client.get(ECHO, headers=signed(key_id, secret, **{
        "X-Promo-Signature": ",".join(others + [good])}))
    assert unauthorized(response) == ("at most 8 signatures in X-Promo-Signature, "
                                      "comma-separated (a secret rotation needs 2 or 3)")
    response = client.get(ECHO, headers=signed(key_id, secret, **{
        "X-Promo-Signature": ",".join(others[:7] + [good])}))
    assert response.status_code == 200


def test_secret_is_stored_encrypted(app, api_client):
    key_id, secret = api_client
    with app.app_context():
        from promo_engine.ledger.extensions import db
        row = db.session.execute(text("SELECT * FROM api_clients WHERE key_id = :k"),
                                 {"k": key_id}).mappings().one()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert secret not in stored
    assert decrypt_secret(row["secret_ciphertext"], "test-secret-key-0123456789") == secret


def test_another_secret_key_cannot_decrypt_the_secret(app, api_client):
    key_id, _ = api_client
    with app.app_context():
        from promo_engine.ledger.extensions import db
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
            from promo_engine.ledger.extensions import db
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


# -- revocations and new clients broadcast through Redis -------------------------------------

def test_revocation_and_new_clients_reach_another_worker_at_once_by_broadcast(
        database_url, redis_prefix):
    """Two apps on one database and Redis, as two worker processes: the first reads the
    clients table only when told (its interval is an hour), and still sees at once a client
    that the second revokes or creates."""
    from promo_engine.service import promo_service

    from conftest import make_redis_settings, running_app
    from wallet import WalletClient, new_wallet_client
    settings = make_redis_settings(database_url, redis_prefix)
    with running_app(settings) as worker, running_app(settings) as operator:
        wallet = new_wallet_client(operator)
        on_worker = WalletClient(worker.test_client(), wallet.key_id, wallet.secret)
        assert on_worker.get("/v1/users/u_1/points").status_code == 200
        with worker.app_context():
            client_directory().interval = 3600
        assert promo_service(worker).listener.connected.wait(5)

        with operator.app_context():
            assert revoke_client(wallet.key_id) is True
        assert eventually(lambda: on_worker.get("/v1/users/u_1/points").status_code == 401)

        created = new_wallet_client(operator)
        created_on_worker = WalletClient(worker.test_client(), created.key_id, created.secret)
        assert eventually(lambda: created_on_worker.get("/v1/users/u_1/points").status_code
                          == 200)


def eventually(condition, within: float = 1.0) -> bool:
    import time
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- failed authentications per address --------------------------------------------------------

OTHER_ADDRESS = {"REMOTE_ADDR": "192.0.2.7"}


@pytest.fixture
def limited_app(database_url, frozen_clock):
    """The app with a limit of 3 failed authentications per address and minute."""
    from conftest import running_app
    with running_app(make_settings(database_url, auth_failure_limit="3/minute")) as app:
        app.add_url_rule(ECHO, "test_echo", lambda: {"client_id": g.client_id})
        yield app


def rate_limited(response) -> int:
    """The Retry-After of a 429 for failed authentications."""
    assert response.status_code == 429
    assert response.get_json() == {"error": {
        "code": "rate_limited",
        "message": "too many failed authentications from this address; retry later"}}
    return int(response.headers["Retry-After"])


def test_an_address_is_turned_away_after_the_limit_of_failed_authentications(limited_app,
                                                                              hmacs):
    client = limited_app.test_client()
    with limited_app.app_context():
        key_id, secret = create_client("wallet-backend")
    assert unauthorized(client.get(ECHO))  # unsigned
    assert unauthorized(client.get(ECHO, headers=signed("pk_guess", secret)))
    assert unauthorized(client.get(ECHO, headers=signed(key_id, "a-guess")))
    hmacs.clear()
    # Even a good signature: the address is blocked before any key lookup or HMAC.
    assert 1 <= rate_limited(client.get(ECHO, headers=signed(key_id, secret))) <= 60
    assert 1 <= rate_limited(client.post("/v1/events", data=b"{}")) <= 60
    assert hmacs == []
    other = limited_app.test_client()
    assert other.get(ECHO, headers=signed(key_id, secret),
                     environ_base=OTHER_ADDRESS).status_code == 200


def test_behind_a_trusted_proxy_the_clients_address_is_counted(database_url, frozen_clock):
    """With PROMO_TRUSTED_PROXIES=1 the address is the one the load balancer saw, so one
    caller's failures do not turn away every wallet behind the same balancer."""
    from conftest import running_app
    settings = make_settings(database_url, auth_failure_limit="3/minute", trusted_proxies=1)
    with running_app(settings) as app:
        app.add_url_rule(ECHO, "test_echo", lambda: {"client_id": g.client_id})
        with app.app_context():
            key_id, secret = create_client("wallet-backend")
        client = app.test_client()
        balancer = {"REMOTE_ADDR": "10.0.0.5"}
        attacker = {**signed(key_id, "a-guess"), "X-Forwarded-For": "198.51.100.9"}
        for _ in range(3):
            assert unauthorized(client.get(ECHO, headers=attacker, environ_base=balancer))
        rate_limited(client.get(ECHO, headers=attacker, environ_base=balancer))
        wallet = {**signed(key_id, secret), "X-Forwarded-For": "203.0.113.20"}
        assert client.get(ECHO, headers=wallet, environ_base=balancer).status_code == 200
        # A forged hop in front of the real one is not believed: the balancer's entry is.
        forged = {**signed(key_id, secret), "X-Forwarded-For": "203.0.113.20, 198.51.100.9"}
        rate_limited(client.get(ECHO, headers=forged, environ_base=balancer))


def test_requests_that_pass_are_not_counted(limited_app):
    client = limited_app.test_client()
    with limited_app.app_context():
        key_id, secret = create_client("wallet-backend")
    for _ in range(20):
        assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
    assert unauthorized(client.get(ECHO, headers=signed(key_id, "a-guess")))
    assert unauthorized(client.get(ECHO, headers=signed(key_id, "a-guess")))
    assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200


def test_failures_are_counted_per_ipv6_64_block(limited_app):
    client = limited_app.test_client()
    for host in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"):
        assert unauthorized(client.get(ECHO, environ_base={"REMOTE_ADDR": host}))
    rate_limited(client.get(ECHO, environ_base={"REMOTE_ADDR": "2001:db8:0:1::99"}))
    assert unauthorized(client.get(ECHO, environ_base={"REMOTE_ADDR": "2001:db8:0:2::1"}))


@pytest.mark.parametrize("remote_addr,key", [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:0:1:2:3:4:5", "2001:db8:0:1::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    (None, "unknown"),
])
def test_address_key(remote_addr, key):
    from promo_engine.api.auth_failures import address_key
    assert address_key(remote_addr) == key


def test_a_blocked_address_is_let_in_again_when_the_window_has_passed(database_url):
    import time

    from conftest import running_app
    from wallet import new_wallet_client
    with running_app(make_settings(database_url, auth_failure_limit="2/second")) as app:
        wallet = new_wallet_client(app)
        forged = type(wallet)(app.test_client(), wallet.key_id, "a-guess")
        assert unauthorized(forged.get("/v1/users/u_1/points"))
        assert unauthorized(forged.get("/v1/users/u_1/points"))
        assert rate_limited(wallet.get("/v1/users/u_1/points")) == 1
        time.sleep(1.05)
        assert wallet.get("/v1/users/u_1/points").status_code == 200


def test_failures_are_counted_in_redis_across_workers(database_url, redis_prefix,
                                                      redis_client, frozen_clock):
    """Two apps sharing Redis, as two worker processes: their failures add up. Each learns
    that the address is blocked from a failure of its own; requests that pass never touch
    the count."""
    from promo_engine.api.auth_failures import auth_failure_limit

    from conftest import make_redis_settings, running_app
    settings = make_redis_settings(database_url, redis_prefix, auth_failure_limit="3/minute")
    with running_app(settings) as first, running_app(settings) as second:
        clients = []
        for app in (first, second):
            app.add_url_rule(ECHO, "test_echo", lambda: {"client_id": g.client_id})
            with app.app_context():
                auth_failure_limit().clock = lambda: NOW + 10.0  # in one window
            clients.append(app.test_client())
        with first.app_context():
            key_id, secret = create_client("wallet-backend")
        for client in clients * 5:
            assert client.get(ECHO, headers=signed(key_id, secret)).status_code == 200
        assert list(redis_client.scan_iter(match=f"{redis_prefix}:auth-failures:*")) == []

        one, two = clients
        assert unauthorized(one.get(ECHO, headers=signed(key_id, "a-guess")))
        assert unauthorized(one.get(ECHO, headers=signed(key_id, "a-guess")))
        assert unauthorized(two.get(ECHO, headers=signed(key_id, "a-guess")))  # the third
        assert rate_limited(two.get(ECHO, headers=signed(key_id, secret))) == 50
        assert one.get(ECHO, headers=signed(key_id, secret)).status_code == 200
        assert unauthorized(one.get(ECHO, headers=signed(key_id, "a-guess")))
        assert rate_limited(one.get(ECHO, headers=signed(key_id, secret))) == 50
        window = int((NOW + 10) // 60)
        assert redis_client.get(f"{redis_prefix}:auth-failures:{window}:127.0.0.1") == b"4"


def test_openapi_description_says_how_many_signatures_are_read(client):
    schemes = client.get("/v1/openapi.json").get_json()["components"]["securitySchemes"]
    signature = schemes["PromoSignature"]
    assert (signature["type"], signature["in"], signature["name"]) == (
        "apiKey", "header", "X-Promo-Signature")
    assert ("comma-separated (`v1=abc..., v1=def...`) while a secret is rotated: one match "
            "suffices; at most 8 (a rotation needs 2 or 3), more gets 401") in \
        signature["description"]


def test_a_new_client_is_known_to_lookups_made_while_another_thread_reloads(app):
    """A lookup after `invalidate()` waits for the load in progress and gets the secrets it
    read, rather than the ones read before the client existed."""
    import threading

    from promo_engine.ledger.api_clients import ClientDirectory, create_client
    loading, go_on = threading.Event(), threading.Event()
    hold = {"on": False}
    directory = ClientDirectory(app.config["SECRET_KEY"], interval=60)
    decrypt = directory.cipher.decrypt

    def slow_decrypt(token):  # the load has read the rows and is still working on them
        if hold["on"]:
            loading.set()
            go_on.wait(10)
        return decrypt(token)

    directory.cipher = type("SlowCipher", (), {"decrypt": staticmethod(slow_decrypt)})()
    with app.app_context():
        assert directory.secret("pk_missing") is None  # loaded once: fresh for 60 s
        key_id, secret = create_client("late-client")
        directory.invalidate()
        hold["on"] = True
        found = {}

        def look(name):
            with app.app_context():
                found[name] = directory.secret(key_id)

        first = threading.Thread(target=look, args=("first",))
        first.start()
        assert loading.wait(10)  # the first lookup is loading now
        second = threading.Thread(target=look, args=("second",))
        second.start()
        second.join(0.3)
        assert second.is_alive()  # it waits for that load instead of answering from the old
        go_on.set()
        first.join(10)
        second.join(10)
    assert found == {"first": secret, "second": secret}
