"""Data minimisation: PROMO_ALLOWED_ATTRIBUTES refuses any other attribute name with 422
naming it, on POST /v1/events, POST /v1/quote and the stream consumer (dead-lettered
without the refused values), and nothing of such an event is stored. And the streams'
retention: a consumer trims what is older than PROMO_RETENTION_DAYS and settled."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from sqlalchemy import func, select

from promo_engine.consumer.options import ConsumerOptions
from promo_engine.consumer.stream import StreamConsumer
from promo_engine.consumer.trimming import DAY_MS, trim_streams
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord

from conftest import make_settings
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

ONLY = "is not accepted: this program accepts only segment, tier"
CAMPAIGN = f"""
id: gold
type: holiday_discount
{OPEN_RANGE}conditions: {{attributes: {{segment: [gold]}}}}
params: {{amount_off: "1.00"}}
"""


@pytest.fixture
def settings(database_url):
    return make_settings(database_url, allowed_attributes=("segment", "tier"))


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGN, tmp_path)
    return new_wallet_client(app)


def stored_events(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(EventRecord))
        db.session.rollback()
    return count


PERSONAL = {"segment": "gold", "phone": "13800138000", "id_number": "110101199003070000"}
REFUSED = {"code": "validation_error", "message": "the event is not valid",
           "fields": {"attributes.id_number": [ONLY], "attributes.phone": [ONLY]}}


def test_an_attribute_not_allowed_is_refused_naming_it_and_nothing_is_stored(app, wallet):
    response = wallet.event(**payment("p1", "10.00", attributes=PERSONAL))
    assert (response.status_code, response.get_json()) == (422, {"error": REFUSED})
    assert stored_events(app) == 0
    allowed = wallet.event(**payment("p2", "10.00", attributes={"segment": "gold", "tier": 2}))
    assert allowed.status_code == 201
    assert [r["campaign_id"] for r in allowed.get_json()["rewards"]] == [None, "gold"]
    assert stored_events(app) == 1


def test_a_quote_refuses_the_same_attributes(app, wallet):
    body = payment("q1", "10.00", attributes=PERSONAL)
    response = wallet.post("/v1/quote", body)
    assert (response.status_code, response.get_json()) == (422, {"error": REFUSED})
    body["attributes"] = {"segment": "gold"}
    assert wallet.post("/v1/quote", body).status_code == 200


def test_a_name_refused_for_its_value_too_is_named_for_both(wallet):
    response = wallet.event(**payment("p1", "10.00", attributes={"phone": {"n": 1}}))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "attributes.phone": ["must be a string, number or boolean", ONLY]}


def test_no_attributes_at_all_when_set_to_none(database_url, tmp_path):
    from conftest import running_app
    with running_app(make_settings(database_url, allowed_attributes=())) as app:
        wallet = new_wallet_client(app)
        response = wallet.event(**payment("p1", "10.00", attributes={"segment": "gold"}))
        assert response.get_json()["error"]["fields"] == {
            "attributes.segment": ["is not accepted: this program accepts no attributes"]}
        assert wallet.event(**payment("p2", "10.00")).status_code == 201


def test_the_description_lists_the_allowed_names(wallet):
    doc = wallet.client.get("/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    # each body is a oneOf of one schema per event type (a redemption's, of one per choice)
    names = [name for name in schemas if name.endswith(("Event", "Quote"))]
    assert len(names) == 12
    for name in names:
        if "oneOf" in schemas[name]:
            continue
        attributes = schemas[name]["properties"]["attributes"]["propertyNames"]
        assert attributes == {"pattern": "^[A-Za-z0-9_.:-]{1,64}$", "enum": ["segment", "tier"]}


# -- the stream consumer ----------------------------------------------------------------

@pytest.fixture
def streams(redis_client):
    base = f"promo-test-{uuid.uuid4().hex}"
    names = {"events": f"{base}:events", "results": f"{base}:results",
             "dead": f"{base}:events:dead"}
    yield names
    redis_client.delete(*names.values())


def test_the_consumer_dead_letters_it_without_the_refused_values(app, wallet, redis_client,
                                                                 streams):
    body = payment("s1", "10.00", attributes=PERSONAL)
    redis_client.xadd(streams["events"], {"event": json.dumps(body)})
    consumer = StreamConsumer(app, redis_client, ConsumerOptions(
        stream=streams["events"], consumer="c1", results_stream=streams["results"],
        block_ms=50))
    assert consumer.step() == 1
    assert stored_events(app) == 0
    [(_, dead)] = redis_client.xrange(streams["dead"])
    assert json.loads(dead[b"error"]) == {"error": REFUSED}
    kept = json.loads(dead[b"event"])
    assert kept == {**body, "attributes": {"segment": "gold"}}
    assert b"13800138000" not in b"".join(dead.values())


def test_retention_trims_old_dead_letters_results_and_settled_events(redis_client,
                                                                     streams):
    now_ms = int(time.time() * 1000)
    old, recent = now_ms - 31 * DAY_MS, now_ms - 29 * DAY_MS
    for stream in ("dead", "results"):
        redis_client.xadd(streams[stream], {"x": "old"}, id=f"{old}-0")
        redis_client.xadd(streams[stream], {"x": "recent"}, id=f"{recent}-0")
    events = streams["events"]
    for n, at in enumerate((old, old + 1, old + 2, recent)):
        redis_client.xadd(events, {"event": "{}"}, id=f"{at}-0")
    redis_client.xgroup_create(events, "promo-engine", id="0")
    # The group has read the first two; it acknowledged only the first.
    [(_, read)] = redis_client.xreadgroup("promo-engine", "c1", {events: ">"}, count=2)
    redis_client.xack(events, "promo-engine", read[0][0])
    options = ConsumerOptions(stream=events, consumer="c1", results_stream=streams["results"])

    trimmed = trim_streams(redis_client, options, retention_days=30, now_ms=now_ms)

    assert trimmed == {streams["dead"]: 1, streams["results"]: 1, events: 1}
    assert [m[1][b"x"] for m in redis_client.xrange(streams["dead"])] == [b"recent"]
    # Kept: the one still pending, the one not yet read (old as they are), the recent one.
    assert [m[0] for m in redis_client.xrange(events)] == [
        f"{old + 1}-0".encode(), f"{old + 2}-0".encode(), f"{recent}-0".encode()]
    assert trim_streams(redis_client, options, retention_days=30, now_ms=now_ms) == {
        streams["dead"]: 0, streams["results"]: 0, events: 0}


def test_a_consumer_trims_its_streams_when_it_runs_with_a_retention_period(
        sqlite_url, redis_client, streams):
    import threading

    from conftest import running_app
    old = int(time.time() * 1000) - 31 * DAY_MS
    redis_client.xadd(streams["dead"], {"x": "old"}, id=f"{old}-0")
    redis_client.xadd(streams["dead"], {"x": "new"})
    with running_app(make_settings(sqlite_url, retention_days=30)) as app:
        consumer = StreamConsumer(app, redis_client, ConsumerOptions(
            stream=streams["events"], consumer="c1", block_ms=50))
        stop = threading.Event()
        runner = threading.Thread(target=consumer.run, args=(stop,))
        runner.start()
        deadline = time.monotonic() + 10
        while redis_client.xlen(streams["dead"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        runner.join(10)
    assert [m[1][b"x"] for m in redis_client.xrange(streams["dead"])] == [b"new"]
