"""Hostile input at scale: schemathesis runs every operation of /v1/openapi.json against the app.

The description is loaded from the running app (the WSGI app in-process), and each operation
gets a few hundred generated requests, valid and invalid ones (positive and negative mode,
the examples, coverage and fuzzing phases). Every response must be no server error, with a
status code, content type, headers and body that the description documents.

The signed run signs each generated request with a real API client's key and secret (an auth
provider over the exact bytes sent), so the cases reach validation and the ledger: a hook
steers most events into the campaigns' dates, onto payments made beforehand (refunds)
and onto fresh event ids, and the run must have earned campaign rewards, reversed some, and
met the idempotency answers. Every request it sends must get the description's verdict:
refused with 422 validation_error exactly when the description refuses it. The unsigned
run must get 401 JSON for everything signed.

Seeded and derandomized: the same cases every run, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import collections
import itertools
import json
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)
from werkzeug.test import EnvironBuilder

from promo_engine.api.auth import signed_headers
from promo_engine.api.schemas import FUTURE_MESSAGE

from conftest import make_settings
from openapi_verdicts import Description, unstatable_refusal, validation_errors
from wallet import WalletClient, install_campaigns, payment

MAX_EXAMPLES = 150  # per operation and mode; the unsigned run needs fewer
SEED = 20261122

# Campaigns open over the years the steered events fall in, so payments earn rewards of
# every kind; one in a zone west of UTC, one with windows, one with a budget and limits.
RANGE = "starts_at: 2020-01-01T00:00:00\nends_at: 2100-01-01T00:00:00\n"
CAMPAIGNS = f"""
id: dining
type: holiday_discount
{RANGE}conditions: {{min_amount: "50.00"}}
budget: {{amount: "2000.00"}}
limits: {{per_user: 3, per_user_daily: 1}}
priority: 100
params: {{percent: 15, max_discount: "30.00"}}
---
id: weekend-lunch
type: holiday_discount
merchants: [m_100]
timezone: America/New_York
{RANGE}windows:
  - days: [sat, sun]
    from: "11:00"
    to: "14:30"
params: {{amount_off: "5.00"}}
---
id: weekend-3x
type: points_multiplier
{RANGE}windows:
  - days: [sat, sun]
    from: "00:00"
    to: "00:00"
params: {{multiplier: 3}}
---
id: double
type: points_multiplier
merchants: [m_100, m_200]
{RANGE}params: {{multiplier: "2.50"}}
---
id: welcome
type: first_activation_bonus
{RANGE}params: {{voucher: {{amount: "5.00", valid_days: 7}}}}
---
id: first-pay
type: first_activation_bonus
{RANGE}params: {{on: first_payment, cashback: "10.00"}}
"""

# Payments made before the run, for the steered refunds to refund (several in part, one
# more than once, so some refunds go over the payment).
SEEDED = [(f"su{n}", f"seed-{n}") for n in range(4)]
SEED_AMOUNT = "500.00"
MERCHANTS = ["m_100", "m_200", "m_300"]
OFFSETS = ["Z", "+08:00", "-05:00", "+05:45", "+14:00", "-12:00", "+00:00"]
FIRST_DAY, LAST_DAY = datetime(2024, 1, 1), datetime(2026, 1, 1)  # inside RANGE, past


def config(**generation) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "suppress-health-check": ["too_slow"],  # depends on the machine's load, not the app
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none", **generation},
    })


def load_schema(app, **generation):
    """The description as the running app serves it (GET /v1/openapi.json, in-process)."""
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app, config=config(**generation))


def request_target_and_body(case) -> tuple[str, bytes]:
    """The path with query string and the body exactly as the case will send them: the same
    serialization schemathesis does, through the same Werkzeug request builder."""
    kwargs = {k: v for k, v in case.as_transport_kwargs().items() if k != "base_url"}
    environ = EnvironBuilder(**kwargs).get_environ()
    target = environ["REQUEST_URI"]
    if environ.get("QUERY_STRING"):
        target += "?" + environ["QUERY_STRING"]
    return target, environ["wsgi.input"].read()


# Answers that come before validation, or instead of it: they say nothing of the verdict.
NOT_VALIDATED = {400, 401, 404, 405, 413, 415, 429, 503}


def verdict_agrees_with_description(ctx, response, case) -> None:
    """The server refuses the request sent (422 validation_error) exactly when the
    description refuses it, but for the rules it can state only in words.

    This stands in for schemathesis' positive_data_acceptance and negative_data_rejection,
    which go by how a case was generated: the steering hook rewrites bodies after that
    (a negative body may be made valid, a positive one sent to a refund that fails), so
    the request as sent is judged here instead, by the same reading of the description as
    test_openapi_agrees.py."""
    if case.method.upper() != case.operation.method.upper() or \
            response.status_code in NOT_VALIDATED:
        return
    target, raw = request_target_and_body(case)
    url = urlsplit(target)
    pairs = parse_qsl(url.query, keep_blank_values=True)
    if len({name for name, _ in pairs}) < len(pairs):
        return  # a repeated parameter: the description has no rule for it
    try:
        body = json.loads(raw) if raw else None
    except ValueError:  # e.g. the empty form a GET is sent with (a JSON body would get 400)
        body = None
    description = Description(case.operation.schema.raw_schema)
    accepted = description.accepts(case.method, url.path, args=dict(pairs), body=body)
    errors = validation_errors(response.status_code, response.content)
    if accepted and errors is not None and not unstatable_refusal(errors):
        raise AssertionError(f"the description allows this request; the server refused it: "
                             f"{errors}")
    if not accepted and errors is None:
        raise AssertionError(f"the description refuses this request; the server answered "
                             f"{response.status_code}: {response.text[:500]}")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          verdict_agrees_with_description]


def signer(key_id: str, secret: str):
    class SignRequest:
        """A schemathesis auth provider: the three X-Promo-* headers over the exact request."""

        def get(self, case, context):
            return key_id, secret

        def set(self, case, data, context):
            target, body = request_target_and_body(case)
            case.headers = {**(case.headers or {}),
                            **signed_headers(*data, case.method, target, body)}

    return SignRequest


def _timestamp(moment: datetime, offset: str, fraction: bool) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (moment.strftime(".%f") if fraction else "")
    return text + offset


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


RECORDABLE_TIMES = [
    "2025-03-01T12:30:00+08:00",         # a Saturday lunch in Shanghai
    "2025-03-08T12:00:00-05:00",         # a Saturday lunch in New York
    "2025-03-08T23:59:59.999999-05:00",  # the last moment of that Saturday there
    "2024-02-29T23:30:00+14:00",
    "2025-06-30T16:00:00Z",              # midnight in Shanghai
]
# the edges of what Python's datetime holds, and of what the API takes
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "0001-01-01T07:59:59Z", "9999-12-31T23:59:59-14:00",
              "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2100-01-01T00:00:00+08:00"]
TIMES = (st.sampled_from(RECORDABLE_TIMES + RECORDABLE_TIMES + EDGE_TIMES)
         | st.builds(_timestamp, st.datetimes(FIRST_DAY, LAST_DAY), st.sampled_from(OFFSETS),
                     st.booleans()))
# Rewarding amounts first: Hypothesis leans towards the first of a sampled_from (its
# simplest), and what else it draws moves with the constants it collects from the modules
# loaded, i.e. with the rest of the suite; the run must still earn every kind of reward.
AMOUNTS = st.sampled_from(["128.50", "88.80", "50.00", "499.99", "2000.00", "9.99", "0.01",
                           "1000000000.00"]) | st.integers(1, 10**11).map(_money)
REFUNDS = st.sampled_from(["0.01", "100.00", "250.00", "499.99", "500.00", "500.01", "900.00"])
STEERING = st.fixed_dictionaries({
    # "again": the last recorded event's body once more (a replay, 200); "reuse": that body
    # at another time (a conflict, 409); "as is": the body as generated
    "how": st.sampled_from(["fresh", "fresh", "fresh", "again", "reuse", "reuse", "as is"]),
    "at": TIMES,
    "merchant": st.sampled_from(MERCHANTS),
    "seeded": st.sampled_from(SEEDED),
    "payment": AMOUNTS,
    "refund": REFUNDS,
})


# The first fresh payments steered per operation go where every campaign kind a payment can
# earn applies (a Saturday lunch in Shanghai at m_100, above dining's minimum: base points,
# the discount, both multipliers, and the first payment's cashback for a new user), so the
# run reaches them whatever Hypothesis draws; which cases it draws moves with the suite.
SURE_PAYMENT = {"amount": "128.50", "occurred_at": RECORDABLE_TIMES[0], "merchant_id": "m_100"}
SURE_PAYMENTS_PER_OPERATION = 5


class Steering:
    """A flatmap_body hook: most generated event bodies moved to where the ledger acts.

    Event ids are made fresh from a counter (what Hypothesis draws repeats a lot), and the
    last event recorded is kept for replays and conflicts, so the state is per run: the
    cases come in a fixed order, and so do the ids."""

    def __init__(self):
        self.fresh_ids = itertools.count()
        self.last: dict[str, dict] = {}
        self.sure_payments = collections.Counter()  # per operation path
        self.sure_replay_done = False  # one replay of a recorded event, whatever is drawn
        self.sure_over_refund_done = False  # one refund over its payment, likewise

    def remember(self, case, response) -> None:
        if case.operation.path == "/v1/events" and response.status_code == 201:
            self.last[case.operation.path] = dict(case.body)

    def flatmap_body(self, context, body):
        path = context.operation.path if context.operation is not None else None
        if path not in ("/v1/events", "/v1/quote") or not isinstance(body, dict) \
                or body.get("type") not in ("activation", "payment", "refund"):
            return st.just(body)
        return STEERING.map(lambda draw: self.steer(path, body, draw))

    def steer(self, path: str, body: dict, draw: dict) -> dict:
        last = self.last.get(path)
        if last is not None and not self.sure_replay_done:
            # The first case after an event was recorded sends it again (a replay, 200):
            # how often Hypothesis draws "again" moves with the suite, like the amounts.
            self.sure_replay_done = True
            return dict(last)
        if draw["how"] == "as is":
            return body
        if draw["how"] == "again" and last is not None:
            return dict(last)
        if draw["how"] == "reuse" and last is not None:
            other = next(t for t in RECORDABLE_TIMES if t != last["occurred_at"])
            return {**last, "occurred_at": other}
        body = {**body, "occurred_at": draw["at"]}
        if isinstance(body.get("event_id"), str):
            body["event_id"] = f"{body['event_id'][:40]}-{next(self.fresh_ids)}"
        if "amount" in body:
            body["amount"] = draw["payment"]
        if body["type"] in ("payment", "refund"):
            body.update(merchant_id=draw["merchant"], currency="CNY")
        if body["type"] == "payment":
            body["amount"] = draw["payment"]
            if self.sure_payments[path] < SURE_PAYMENTS_PER_OPERATION:
                self.sure_payments[path] += 1
                # a user of its own: dining's per_user_daily limit, used up by an event of
                # a user Hypothesis draws again, would keep the quote's discount away
                body.update(SURE_PAYMENT, user_id=f"sure{path.replace('/', '-')}-"
                                                  f"{self.sure_payments[path]}")
                # nor points to spend or vouchers it does not have: the new user owns none,
                # and Hypothesis draws these optional fields more or less often by schema
                for spending in ("redeem_points", "vouchers"):
                    body.pop(spending, None)
        if body["type"] == "refund":
            body["user_id"], body["original_event_id"] = draw["seeded"]
            body["amount"] = draw["refund"]
            if not self.sure_over_refund_done:
                # The first refund asks for more than its 500.00 payment
                # (refund_exceeds_payment), whatever amounts Hypothesis draws this run.
                self.sure_over_refund_done = True
                body["amount"] = "500.01"
        return body


@pytest.fixture
def settings(database_url):
    """Without the per-client rate limit: how many requests fit in its window depends on
    the machine, and the runs must not (the 429 has its own test in test_openapi.py). Nor
    the limit on failed authentications per address: the unsigned run is one address
    failing over and over (tested in test_auth.py)."""
    from promo_engine.config import Settings
    no_limit = {name: None for name in ("api_rate_limit", "auth_failure_limit")
                if name in Settings.__dataclass_fields__}
    return make_settings(database_url, **no_limit)


@pytest.fixture
def wallet_app(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    return app


@pytest.fixture
def api_client(wallet_app):
    from promo_engine.ledger.api_clients import create_client
    with wallet_app.app_context():
        key_id, secret = create_client("schemathesis")
    wallet = WalletClient(wallet_app.test_client(), key_id, secret)
    for user_id, event_id in SEEDED:
        response = wallet.event(**payment(event_id, SEED_AMOUNT, user_id=user_id,
                                          at="2025-03-01T12:00:00+08:00"))
        assert response.status_code == 201, response.get_data(as_text=True)
    return key_id, secret


@pytest.fixture
def steering():
    return Steering()


@pytest.fixture
def signed_api(wallet_app, api_client, steering, request):
    _pytest_9_2_node_id(request)
    schema = load_schema(wallet_app)
    schema.auth(refresh_interval=None)(signer(*api_client))  # a new signature per request

    @schema.hook
    def flatmap_body(context, body):
        return steering.flatmap_body(context, body)

    return schema


@pytest.fixture
def unsigned_api(wallet_app, request):
    _pytest_9_2_node_id(request)
    return load_schema(wallet_app, **{"max-examples": MAX_EXAMPLES // 3})


def _pytest_9_2_node_id(request) -> None:
    # schemathesis 4.32 renames the test node per operation through `Node._nodeid`, which
    # pytest 9.2 no longer has (it keeps `_id`); without it every from_fixture test errors.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


class Tally:
    """What the signed run reached, per operation: statuses, error codes, reward kinds."""

    def __init__(self):
        self.seen: collections.Counter = collections.Counter()

    def record(self, case, response) -> None:
        if case.method.upper() != case.operation.method.upper():
            return  # the coverage phase's unsupported methods
        label = case.operation.label
        self.seen[label, response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if "error" in body:
            self.seen[label, body["error"]["code"]] += 1
        for reward in body.get("rewards") or ():
            kind = reward["kind"] if reward.get("campaign_id") else "base " + reward["kind"]
            self.seen[label, "reversal" if "reverses" in reward else kind] += 1

    def missing(self, expected: dict[str, list]) -> list:
        return [(label, what) for label, whats in expected.items() for what in whats
                if not self.seen[label, what]]


@pytest.fixture
def tally():
    return Tally()


# schemathesis leaves out the operation that served the description unless asked for it
signed = schemathesis.pytest.from_fixture("signed_api").include(path_regex="^/v1/")
unsigned = schemathesis.pytest.from_fixture("unsigned_api").include(path_regex="^/v1/")


@pytest.fixture
def reached(tally):
    """After the signed run: the generated requests got past the signature to every answer."""
    yield
    missing = tally.missing({
        "POST /v1/events": [201, 200, 409, 400, 415, 422, "validation_error", "unknown_payment",
                            "refund_exceeds_payment", "base points", "points", "discount",
                            "cashback", "voucher", "reversal"],
        "POST /v1/quote": [200, 400, 415, 422, "base points", "discount"],
        "GET /v1/users/{user_id}/points": [200, 422],
        "GET /v1/campaigns": [200, 422],
        "GET /v1/users/{user_id}/offers": [200, 422],
        "GET /v1/openapi.json": [200],
    })
    seen = sorted(tally.seen.items(), key=str)
    assert not missing, f"the signed run never reached: {missing}\nit saw: {seen}"


@signed.parametrize()
def test_signed_requests_get_documented_answers(case, steering, tally, reached):
    response = case.call_and_validate(checks=CHECKS)
    steering.remember(case, response)
    tally.record(case, response)


@unsigned.parametrize()
def test_unsigned_requests_get_documented_401(case):
    response = case.call_and_validate(checks=CHECKS)
    if case.operation.path == "/v1/openapi.json" and case.method.upper() in ("GET", "HEAD"):
        assert response.status_code == 200
    else:
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == ["application/json"]
        assert response.json()["error"]["code"] == "unauthorized"


# What the hostile runs found, pinned as plain examples (one app per database for all).

EDGE_TIMESTAMPS = [
    # datetime overflowed turning these into UTC or into local days: a 500 before
    ("0001-01-01T00:00:00+14:00", "must not be before the year 1970"),
    ("9999-12-31T23:59:59-14:00", FUTURE_MESSAGE),
    ("0001-01-01T07:59:59Z", "must not be before the year 1970"),
    ("1969-12-31T23:59:59Z", "must not be before the year 1970"),
]


def test_timestamps_at_the_edges_of_datetime_are_422(app):
    from wallet import activation, new_wallet_client
    wallet = new_wallet_client(app)
    wrong = []
    for at, message in EDGE_TIMESTAMPS:
        for kind, response in (
                ("payment", wallet.event(**payment("p1", "10.00", at=at))),
                ("activation", wallet.event(**activation("a1", at=at))),
                ("quote", wallet.post("/v1/quote", payment("q1", "10.00", at=at)))):
            fields = (response.get_json().get("error") or {}).get("fields")
            if response.status_code != 422 or fields != {"occurred_at": [message]}:
                wrong.append((at, kind, response.status_code, response.get_data(as_text=True)))
    assert not wrong
    response = wallet.event(**activation("a1", at="1970-01-01T00:00:00Z"))
    assert response.status_code == 201, response.get_data(as_text=True)


REFUSED_VALUES = [
    # `$` in the documented patterns is the end of the text, but Python's re.match let a
    # final newline through; and \d took any Unicode digit
    ("event_id", "p1\n"), ("user_id", "u_1\n"), ("merchant_id", "m_100\n"),
    ("channel", "qr\n"), ("mcc", "5812\n"), ("mcc", "\u0665\u0668\u0661\u0662"),
    ("occurred_at", "2026-06-15T12:00:00+08:00\n"),
    ("occurred_at", "\uff12\uff10\uff12\uff16-06-15T12:00:00+08:00"),
    ("attributes", {"segment\n": "student"}),
]


def test_values_the_description_refuses_are_refused(app):
    from wallet import new_wallet_client
    wallet = new_wallet_client(app)
    wrong = []
    for field, value in REFUSED_VALUES:
        response = wallet.event(**{**payment("p1", "10.00"), field: value})
        code = response.get_json()["error"]["code"] if response.status_code >= 400 else None
        if response.status_code != 422 or code != "validation_error":
            wrong.append((field, value, response.status_code, response.get_data(as_text=True)))
    assert not wrong
