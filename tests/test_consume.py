"""`promo-engine consume`: events from a Redis Stream, each applied exactly once.

In-process tests drive `StreamConsumer.step` against real Redis (streams of their own,
deleted afterwards) and a real database (SQLite and PostgreSQL); a probe campaign type
looks at Redis from inside the ledger transaction. The last tests run the command itself:
SIGTERM and SIGINT, and 100,000 events through three processes, one killed with SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text

from promo_engine import hookimpl
from promo_engine.cli import main
from promo_engine.consumer.stream import ConsumerOptions, StreamConsumer
from promo_engine.core.registry import build_registry, get_plugin_manager

from conftest import (PG_ADMIN_URL, TEST_REDIS_URL, make_redis_settings, make_settings,
                      reused_schema_url, running_app)
from factories import PaymentPointsType
from wallet import OPEN_RANGE, activation, install_campaigns, payment, refund

pytestmark = pytest.mark.services  # every test needs Redis

SECRET_KEY = "test-secret-key-0123456789"
CLI = str(Path(sys.executable).with_name("promo-engine"))
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR", "PROMO_REDIS_PREFIX")


# -- a campaign type that looks at Redis from inside the ledger transaction -------------

class ProbeType(PaymentPointsType):
    """Grants nothing; calls `PROBE` (when set) while the event's transaction is open."""
    name = "stream_probe"

    def compile(self, campaign):
        def evaluate(ctx):
            if PROBE["hook"] is not None:
                PROBE["hook"](ctx)
            return None
        return evaluate


PROBE: dict = {"hook": None}


class ProbePlugin:
    @hookimpl
    def promo_campaign_types(self):
        return [ProbeType()]


def probe_registry():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(ProbePlugin(), name="stream-probe")
    return build_registry(pm)


PROBE_CAMPAIGN = f"""
id: probe
type: stream_probe
{OPEN_RANGE}params: {{}}
"""


@pytest.fixture(autouse=True)
def no_probe():
    PROBE["hook"] = None
    yield
    PROBE["hook"] = None


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def app(database_url, tmp_path):
    with running_app(make_settings(database_url), probe_registry()) as app:
        install_campaigns(app, PROBE_CAMPAIGN, tmp_path, name="probe.yaml")
        yield app


class Streams:
    """The test's own stream names; every key is deleted afterwards."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        base = f"promo-test-{uuid.uuid4().hex}"
        self.events, self.results = f"{base}:events", f"{base}:results"
        self.dead = f"{self.events}:dead"  # the default dead-letter stream
        self.group = "promo-engine"

    def add(self, body, **fields) -> bytes:
        """XADD one message; `body` a dict (sent as JSON), str or bytes, or None for none."""
        if body is not None:
            fields["event"] = json.dumps(body) if isinstance(body, dict) else body
        return self.redis.xadd(self.events, fields)

    def pending(self) -> list[dict]:
        return self.redis.xpending_range(self.events, self.group, "-", "+", 10_000)

    def entries(self, stream: str) -> list[tuple[bytes, dict]]:
        return self.redis.xrange(stream)

    def cleanup(self) -> None:
        self.redis.delete(self.events, self.dead, self.results)


@pytest.fixture
def streams(redis_client):
    names = Streams(redis_client)
    yield names
    names.cleanup()


def new_consumer(app, streams: Streams, name: str = "c1", **options) -> StreamConsumer:
    options = {"batch": 100, "block_ms": 50, "claim_idle_ms": 60_000, **options}
    return StreamConsumer(app, streams.redis, ConsumerOptions(
        stream=streams.events, group=streams.group, consumer=name,
        results_stream=streams.results, **options))


def events_in_ledger(app) -> dict[str, dict]:
    """event_id -> the stored response, for the client `stream`."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import EventRecord
    with app.app_context():
        rows = db.session.execute(select(EventRecord.event_id, EventRecord.response)
                                  .where(EventRecord.client_id == "stream")).all()
        db.session.rollback()
    return {event_id: json.loads(response) for event_id, response in rows}


def reward_count(app) -> int:
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import RewardRecord
    with app.app_context():
        count = db.session.execute(select(func.count()).select_from(RewardRecord)).scalar_one()
        db.session.rollback()
    return count


def decoded(fields: dict) -> dict:
    return {key.decode(): value.decode("utf-8", "replace") for key, value in fields.items()}


# -- applied, then acknowledged ---------------------------------------------------------

def test_an_event_is_acknowledged_only_after_its_transaction_committed(app, streams):
    seen = []

    def look_at_redis(ctx):  # runs inside the ledger transaction
        seen.append([(p["message_id"], p["consumer"]) for p in streams.pending()])
    PROBE["hook"] = look_at_redis
    message_id = streams.add(payment("pay-1", "128.50"))
    consumer = new_consumer(app, streams)

    assert consumer.step() == 1

    assert seen == [[(message_id, b"c1")]]  # still pending while the transaction ran
    assert streams.pending() == []
    ledger = events_in_ledger(app)
    assert list(ledger) == ["pay-1"]
    assert [r["points"] for r in ledger["pay-1"]["rewards"]] == [128]
    [(_, result)] = streams.entries(streams.results)
    assert decoded(result) == {"source_id": message_id.decode(), "event_id": "pay-1",
                               "status": "201", "body": json.dumps(ledger["pay-1"])}
    assert consumer.stats.outcomes == {"recorded": 1}
    assert streams.entries(streams.dead) == []


def test_a_batch_is_read_applied_and_acknowledged_together(app, streams):
    ids = [streams.add(payment(f"pay-{n}", "10.00", user_id=f"u{n % 3}")) for n in range(7)]
    consumer = new_consumer(app, streams, batch=5)

    assert consumer.step() == 5
    assert streams.pending() == []  # the five acknowledged, the other two not yet read
    assert consumer.step() == 2
    assert consumer.step() == 0

    assert sorted(events_in_ledger(app)) == sorted(f"pay-{n}" for n in range(7))
    assert [decoded(f)["source_id"] for _, f in streams.entries(streams.results)] == \
        [i.decode() for i in ids]
    info = streams.redis.xinfo_groups(streams.events)[0]
    assert (info["pending"], info["lag"]) == (0, 0)


# -- a failed transaction is not acknowledged ------------------------------------------

@pytest.fixture
def pg_app(postgres_url, tmp_path):
    with running_app(make_settings(postgres_url), probe_registry()) as app:
        install_campaigns(app, PROBE_CAMPAIGN, tmp_path, name="probe.yaml")
        yield app


def terminate_own_connection(ctx) -> None:
    """From inside the ledger transaction: have PostgreSQL end the connections that hold a
    transaction open on the program's database, the ledger's own among them."""
    from promo_engine.ledger.extensions import db
    database = db.engine.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            pids = conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :database"
                " AND state LIKE 'idle in transaction%'"), {"database": database}).scalars().all()
            assert pids, "no open transaction to end"
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                               {"pids": pids}).scalar_one():
                time.sleep(0.01)
    finally:
        admin.dispose()


def test_a_message_whose_transaction_fails_is_not_acknowledged_and_is_redelivered(pg_app, streams):
    from sqlalchemy.exc import OperationalError
    deliveries = []

    def fail_the_first_time(ctx):
        [pending] = streams.pending()
        deliveries.append(pending["times_delivered"])
        if len(deliveries) == 1:
            terminate_own_connection(ctx)
    PROBE["hook"] = fail_the_first_time
    message_id = streams.add(payment("pay-1", "20.00"))
    consumer = new_consumer(pg_app, streams)

    with pytest.raises(OperationalError):
        consumer.step()
    [pending] = streams.pending()
    assert (pending["message_id"], pending["consumer"]) == (message_id, b"c1")
    assert events_in_ledger(pg_app) == {} and reward_count(pg_app) == 0
    assert streams.entries(streams.dead) == [] and streams.entries(streams.results) == []

    assert consumer.step() == 1  # its own pending message first: delivered again

    assert deliveries == [1, 2]
    assert streams.pending() == []
    assert list(events_in_ledger(pg_app)) == ["pay-1"]
    assert reward_count(pg_app) == 1
    assert consumer.stats.outcomes == {"recorded": 1}


def test_a_message_met_by_budget_counters_being_rebuilt_is_retried_not_dead_lettered(
        app, streams, monkeypatch):
    from promo_engine.coordination.reservations import NotReady
    from promo_engine.service import promo_service

    def not_ready(*args, **kwargs):
        raise NotReady(250)
    # Inside the event's transaction (a batch's, on PostgreSQL), where a reservation meets it.
    monkeypatch.setattr(promo_service(app).ledger, "_record_grants", not_ready)
    message_id = streams.add(payment("pay-1", "20.00"))
    consumer = new_consumer(app, streams)

    with pytest.raises(NotReady):  # what run() pauses on, for as long as it asks
        consumer.step()
    assert [p["message_id"] for p in streams.pending()] == [message_id]
    assert streams.entries(streams.dead) == []

    monkeypatch.undo()  # the counters are built
    assert consumer.step() == 1
    assert list(events_in_ledger(app)) == ["pay-1"]
    assert streams.pending() == []


def test_a_message_failing_with_an_unexpected_error_is_retried_then_dead_lettered(pg_app,
                                                                                  streams):
    from sqlalchemy.exc import InternalError

    from promo_engine.ledger.extensions import db

    # A real error from the ledger's own transaction that no retry cures: PostgreSQL refuses
    # every reward row, with SQLSTATE XX000 (internal_error).
    with pg_app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE FUNCTION refuse_rewards() RETURNS trigger LANGUAGE plpgsql"
                              " AS $$ BEGIN RAISE EXCEPTION 'rewards refused by the test'"
                              " USING ERRCODE = 'internal_error'; END $$"))
            conn.execute(text("CREATE TRIGGER refuse_rewards BEFORE INSERT ON rewards"
                              " FOR EACH ROW EXECUTE FUNCTION refuse_rewards()"))
    message_id = streams.add(payment("pay-1", "20.00"))
    consumer = new_consumer(pg_app, streams)

    for attempt in range(1, 5):
        with pytest.raises(InternalError):
            consumer.step()
        [pending] = streams.pending()
        assert (pending["message_id"], pending["times_delivered"]) == (message_id, attempt)
    assert consumer.step() == 1

    assert streams.pending() == []
    assert events_in_ledger(pg_app) == {}
    [(_, dead)] = streams.entries(streams.dead)
    assert json.loads(dead[b"error"]) == error(
        "internal_error", "internal error (InternalError), 5 times; the message can be added "
                          "to the stream again once that is fixed")
    assert consumer.stats.outcomes == {"dead_lettered": 1}


def test_run_rides_out_an_unreachable_redis_until_stopped(app, streams):
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    consumer = StreamConsumer(app, unreachable, ConsumerOptions(stream=streams.events,
                                                                consumer="c1", block_ms=50))
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, args=(stop,))
    runner.start()
    try:  # it pauses and tries again, and never crashes
        wait_until(lambda: consumer.stats.interrupted >= 2, 20, "a second attempt")
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert consumer.stats.settled == 0


# -- dead letters -----------------------------------------------------------------------

def error(code, message, fields=None):
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


BAD_MESSAGES = {
    "no event field": (None, {"payload": "{}"}, "400", error(
        "malformed_message",
        "the message has no `event` field (the event's JSON, as POSTed to /v1/events)")),
    "not JSON": ("{\"event_id\": ", {}, "400", error(
        "malformed_json", "invalid JSON at line 1 column 14: Expecting value")),
    "not UTF-8": (b"{\"event_id\": \"\xff\"}", {}, "400", error(
        "malformed_json", "the body is not valid UTF-8")),
    "duplicate key": ('{"event_id": "a", "event_id": "b"}', {}, "400", error(
        "malformed_json", 'duplicate key "event_id"')),
    "not an object": ("[1, 2]", {}, "422", error(
        "validation_error", "the event must be a JSON object",
        {"_schema": ["must be a JSON object"]})),
    "too large": (json.dumps({**payment("big", "1.00"), "mcc": "x" * 70_000}), {}, "413", error(
        "payload_too_large", "the event is larger than 64 KiB")),
    "invalid": ({"event_id": "bad-1", "type": "payment", "user_id": "u 1",
                 "occurred_at": "2026-06-15T12:00:00+08:00", "merchant_id": "m_1",
                 "amount": 12.5, "currency": "CNY", "colour": "red"}, {}, "422", error(
        "validation_error", "the event is not valid",
        {"amount": ['must be a string such as "12.50", not a number',
                    "is required for payment events"],
         "colour": ["Unknown field."],
         "user_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]})),
    "unknown payment": (refund("ref-1", "pay-nowhere", "5.00"), {}, "422", error(
        "unknown_payment", "no payment pay-nowhere of user u_1",
        {"original_event_id": ["no payment pay-nowhere of user u_1"]})),
}


@pytest.mark.parametrize("kind", list(BAD_MESSAGES))
def test_a_message_that_can_never_succeed_is_dead_lettered_and_acknowledged(app, streams, kind):
    body, extra, status, expected = BAD_MESSAGES[kind]
    message_id = streams.add(body, trace="t-1", **extra)
    consumer = new_consumer(app, streams)

    assert consumer.step() == 1

    assert streams.pending() == []
    assert events_in_ledger(app) == {}
    [(_, dead)] = streams.entries(streams.dead)
    original = streams.entries(streams.events)[0][1]
    assert {k: v for k, v in dead.items() if k in original} == original  # kept as sent
    dead = decoded(dead)
    assert json.loads(dead.pop("error")) == expected
    assert {k: dead[k] for k in ("source_id", "consumer")} == \
        {"source_id": message_id.decode(), "consumer": "c1"}
    [(_, result)] = streams.entries(streams.results)
    result = decoded(result)
    assert (result["status"], json.loads(result["body"])) == (status, expected)
    assert consumer.stats.outcomes == {"dead_lettered": 1}


def test_refund_beyond_the_payment_and_a_reused_event_id_are_dead_lettered(app, streams):
    streams.add(payment("pay-1", "30.00"))
    streams.add(refund("ref-1", "pay-1", "20.00"))
    streams.add(refund("ref-2", "pay-1", "20.00"))  # 10.00 is left to refund
    streams.add(payment("pay-1", "31.00"))  # the same event_id, another body
    consumer = new_consumer(app, streams)

    assert consumer.step() == 4

    assert sorted(events_in_ledger(app)) == ["pay-1", "ref-1"]
    errors = [json.loads(decoded(f)["error"]) for _, f in streams.entries(streams.dead)]
    assert errors == [
        error("refund_exceeds_payment",
              "refunds would exceed the payment; at most 10.00 is left to refund",
              {"amount": ["refunds would exceed the payment; at most 10.00 is left to refund"]}),
        error("idempotency_conflict",
              "event_id pay-1 was already recorded with a different body: amount was 30.00, "
              "this request has 31.00. Resend the original body to get the recorded answer",
              {"event_id": ["already recorded with a different body"],
               "amount": ["was 30.00, this request has 31.00"]})]
    statuses = [decoded(f)["status"] for _, f in streams.entries(streams.results)]
    assert statuses == ["201", "201", "422", "409"]
    assert streams.pending() == []


def test_dead_letters_do_not_hold_up_the_good_messages_around_them(app, streams):
    from promo_engine.metrics import metrics
    streams.add(payment("pay-1", "10.00"))
    streams.add("not json")
    streams.add(payment("pay-2", "10.00"))
    streams.add(payment("pay-1", "10.00"))  # a replay
    consumer = new_consumer(app, streams)

    assert consumer.step() == 4

    assert sorted(events_in_ledger(app)) == ["pay-1", "pay-2"]
    assert len(streams.entries(streams.dead)) == 1
    assert consumer.stats.outcomes == {"recorded": 2, "dead_lettered": 1, "replayed": 1}
    counters = metrics(app).stream_messages
    assert {outcome: counters.labels(outcome=outcome)._value.get()
            for outcome in ("recorded", "replayed", "dead_lettered")} == \
        {"recorded": 2, "replayed": 1, "dead_lettered": 1}


# -- replays ------------------------------------------------------------------------------

def test_copies_of_one_event_are_applied_once_whoever_reads_them(app, streams):
    body = payment("pay-1", "99.90")
    streams.add(body)
    streams.add(json.dumps(dict(reversed(list(body.items()))), indent=2))  # same event
    streams.add(body)
    first = new_consumer(app, streams, "c1", batch=1)
    second = new_consumer(app, streams, "c2", batch=1)

    assert [first.step(), second.step(), first.step()] == [1, 1, 1]

    assert list(events_in_ledger(app)) == ["pay-1"]
    assert reward_count(app) == 1
    results = [decoded(f) for _, f in streams.entries(streams.results)]
    assert [r["status"] for r in results] == ["201", "200", "200"]
    assert len({r["body"] for r in results}) == 1
    assert first.stats.outcomes == {"recorded": 1, "replayed": 1}
    assert second.stats.outcomes == {"replayed": 1}
    assert streams.pending() == []


def test_with_budgets_in_redis_copies_are_applied_once_and_the_budget_holds(
        database_url, redis_prefix, streams, tmp_path):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import RewardRecord
    with running_app(make_redis_settings(database_url, redis_prefix)) as app:
        install_campaigns(app, f"""
id: two-only
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "2.00"}}
params: {{amount_off: "1.00"}}
""", tmp_path)
        for n in range(3):
            streams.add(payment(f"pay-{n}", "10.00", user_id=f"u{n}"))
            streams.add(reordered(payment(f"pay-{n}", "10.00", user_id=f"u{n}")))
        consumer = new_consumer(app, streams, batch=2)

        assert [consumer.step() for _ in range(4)] == [2, 2, 2, 0]

        assert consumer.stats.outcomes == {"recorded": 3, "replayed": 3}
        assert sorted(events_in_ledger(app)) == ["pay-0", "pay-1", "pay-2"]
        with app.app_context():
            granted = db.session.execute(select(func.count()).select_from(RewardRecord)
                                         .where(RewardRecord.campaign_id == "two-only")
                                         ).scalar_one()
        assert granted == 2
        assert streams.pending() == []


def test_an_event_already_in_the_ledger_is_replayed_not_applied_again(app, streams):
    """What a consumer finds after one that died between its commit and its XACK."""
    first = new_consumer(app, streams, "c1")
    streams.add(payment("pay-1", "50.00"))
    first.step()
    streams.redis.xgroup_setid(streams.events, streams.group, "0")  # deliver everything again
    again = new_consumer(app, streams, "c2")

    assert again.step() == 1

    assert again.stats.outcomes == {"replayed": 1}
    assert list(events_in_ledger(app)) == ["pay-1"] and reward_count(app) == 1


# -- claiming -----------------------------------------------------------------------------

def test_pending_messages_of_a_dead_consumer_are_claimed_once_idle(app, streams):
    from promo_engine.metrics import metrics
    ids = [streams.add(payment(f"pay-{n}", "10.00")) for n in range(3)]
    consumer = new_consumer(app, streams, "c2", claim_idle_ms=200)
    consumer.ensure_group()
    # A consumer read them and died before applying any.
    streams.redis.xreadgroup(streams.group, "dead", {streams.events: ">"}, count=10)

    assert consumer.step() == 0  # not idle long enough yet
    gauges = metrics(app)
    assert (gauges.stream_pending._value.get(), gauges.stream_lag._value.get()) == (3, 0)
    time.sleep(0.25)
    assert consumer.step() == 3

    assert consumer.stats.claimed == 3
    assert sorted(events_in_ledger(app)) == ["pay-0", "pay-1", "pay-2"]
    assert streams.pending() == []
    assert [decoded(f)["source_id"] for _, f in streams.entries(streams.results)] == \
        [i.decode() for i in ids]
    consumers = {c["name"]: c["pending"] for c in streams.redis.xinfo_consumers(
        streams.events, streams.group)}
    assert consumers == {b"dead": 0, b"c2": 0}


def test_a_consumer_restarted_under_its_name_resumes_its_pending_messages_at_once(app, streams):
    for n in range(3):
        streams.add(payment(f"pay-{n}", "10.00"))
    consumer = new_consumer(app, streams, "c1")
    consumer.ensure_group()
    delivered = streams.redis.xreadgroup(streams.group, "c1", {streams.events: ">"}, count=10)
    streams.redis.xdel(streams.events, delivered[0][1][1][0])  # one is deleted meanwhile

    assert consumer.step() == 3

    assert consumer.stats.outcomes == {"recorded": 2, "deleted": 1}
    assert consumer.stats.claimed == 0
    assert sorted(events_in_ledger(app)) == ["pay-0", "pay-2"]
    assert streams.pending() == []


# -- the command ------------------------------------------------------------------------

def test_consume_without_redis_url_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {name: None for name in ENV_VARS}
    environ.update(DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}", SECRET_KEY=SECRET_KEY)
    result = CliRunner(env=environ).invoke(main, ["consume"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == ("promo-engine: consume: REDIS_URL is not set; the events are read "
                             "from a Redis Stream\n")


def test_consume_on_a_taken_metrics_port_stops_with_one_line(tmp_path, streams, processes):
    from promo_engine.ledger.schema import upgrade
    database_url = f"sqlite:///{tmp_path / 'promo.db'}"
    upgrade(database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        consumer = processes(streams, database_url, "c1", "--metrics-port", str(port))
        assert consumer.wait(60) == 1
    output = consumer.log.read_text()
    assert output.endswith(
        f"\npromo-engine consume: cannot serve metrics on 127.0.0.1:{port} (Address already in "
        "use): stop what runs there or choose another with --metrics-port\n")
    assert "Traceback" not in output


@pytest.fixture
def processes(tmp_path, redis_prefix):
    """Starts `promo-engine consume` processes (their other Redis keys under the test's own
    prefix); any still running is killed afterwards."""
    started: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(REDIS_URL=TEST_REDIS_URL, SECRET_KEY=SECRET_KEY, PROMO_REDIS_PREFIX=redis_prefix,
               PROMO_LOAD_ENTRY_POINTS="0")

    def start(streams: Streams, database_url: str, name: str, *args: str) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [CLI, "consume", "--stream", streams.events, "--group", streams.group,
                 "--consumer", name, "--results-stream", streams.results, *args],
                env={**env, "DATABASE_URL": database_url}, cwd=tmp_path, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        process.log = log
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ledger_count(engine, event_type: str | None = None) -> int:
    query = "SELECT count(*) FROM events" + (" WHERE type = :type" if event_type else "")
    with engine.connect() as conn:
        return conn.execute(text(query), {"type": event_type}).scalar_one()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_the_current_message_and_exits_0(tmp_path, streams, processes,
                                                                signum):
    from promo_engine.ledger.schema import upgrade
    database_url = f"sqlite:///{tmp_path / 'promo.db'}"
    upgrade(database_url)
    for n in range(2000):
        streams.add(payment(f"pay-{n}", "10.00", user_id=f"u{n % 50}"))
    port = free_port()
    consumer = processes(streams, database_url, "c1", "--batch", "500", "--block-ms", "200",
                         "--metrics-port", str(port))
    engine = create_engine(database_url)
    try:
        wait_until(lambda: ledger_count(engine) >= 20, 60, "the first events")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        assert b"# TYPE promo_stream_messages_total counter" in metrics
        assert b'promo_events_total{outcome="recorded",type="payment"}' in metrics
        consumer.send_signal(signum)
        assert consumer.wait(30) == 0
        recorded = ledger_count(engine)
    finally:
        engine.dispose()
    output = consumer.log.read_text()
    assert f"c1 stopped after {recorded:,} messages" in output, output
    # Everything recorded is acknowledged, and nothing else: the batch's other messages
    # stay pending (for a restart under the same name, or for another consumer to claim).
    info = streams.redis.xinfo_groups(streams.events)[0]
    assert 0 < recorded < 500
    assert info["pending"] == 500 - recorded
    assert info["entries-read"] == 500
    pending_events = {json.loads(streams.redis.xrange(streams.events, p["message_id"],
                                                      p["message_id"])[0][1][b"event"])["event_id"]
                      for p in streams.pending()}
    assert pending_events == {f"pay-{n}" for n in range(recorded, 500)}


# -- 100,000 events, three processes, one killed -----------------------------------------

TOTAL_EVENTS = 100_000
USERS = 20_000  # one activation each
REFUNDS = 2_000  # full refunds, added once their payments are in the ledger
PAYMENTS = TOTAL_EVENTS - USERS - REFUNDS
COPIES = 2_000  # payments added twice: an event delivered twice must be applied once
WELCOME_POINTS, WELCOME_BUDGET = 100, 1_500_000  # room for 15,000 of the 20,000 activations
DISCOUNT_MINOR = 100  # 1.00 off every payment (a budget that never runs out)
CONSUMERS = ("c1", "c2", "c3")  # c1 is killed
KILL_AFTER = 30_000  # events in the ledger
CLAIM_IDLE_MS = 10_000  # far above a batch's time, so live consumers keep their messages
LOAD_TIMEOUT = 1800

LOAD_CAMPAIGNS = f"""
id: stream-welcome
type: first_activation_bonus
{OPEN_RANGE}budget: {{points: {WELCOME_BUDGET}}}
params: {{points: {WELCOME_POINTS}}}
---
id: stream-discount
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "1000000.00"}}
params: {{amount_off: "1.00"}}
"""


def load_payment(n: int) -> dict:
    amount = Decimal(10 + n % 490) + Decimal(n % 100) / 100
    return payment(f"pay-{n}", f"{amount:.2f}", user_id=f"u{n % USERS}")


def refunded(n: int) -> bool:
    return n % (PAYMENTS // REFUNDS) == 0 and n // (PAYMENTS // REFUNDS) < REFUNDS


def base_points(body: dict) -> int:
    return int(Decimal(body["amount"]).to_integral_value(ROUND_FLOOR))


def reordered(body: dict) -> str:
    """The same event written differently: keys reversed, indented."""
    return json.dumps(dict(reversed(list(body.items()))), indent=1)


class Producer:
    """XADDs messages in pipelined chunks and remembers what it sent."""

    def __init__(self, streams: Streams):
        self.streams = streams
        self.event_ids: list[bytes] = []  # message ids of well-formed events
        self.bad: dict[bytes, str] = {}  # message id -> the expected dead-letter code

    def send(self, messages: list, chunk: int = 2000) -> None:
        """`messages`: event bodies (dict or text), or (text, expected error code)."""
        for start in range(0, len(messages), chunk):
            pipe = self.streams.redis.pipeline(transaction=False)
            part = messages[start:start + chunk]
            for message in part:
                body = message[0] if isinstance(message, tuple) else message
                pipe.xadd(self.streams.events,
                          {"event": json.dumps(body) if isinstance(body, dict) else body})
            for message, message_id in zip(part, pipe.execute()):
                if isinstance(message, tuple):
                    self.bad[message_id] = message[1]
                else:
                    self.event_ids.append(message_id)


def phase_one_messages() -> list:
    """Activations first (the welcome budget runs out among them), then payments with
    copies: half right after their original, half at the end; and three bad messages."""
    messages: list = [activation(f"act-{n}", user_id=f"u{n}") for n in range(USERS)]
    later = []
    for n in range(PAYMENTS):
        body = load_payment(n)
        messages.append(body)
        if n % (PAYMENTS // COPIES) == 0 and n // (PAYMENTS // COPIES) < COPIES:
            (messages if n % 2 else later).append(reordered(body))
        if n == PAYMENTS // 2:
            messages += [("{oops", "malformed_json"),
                         (json.dumps({**load_payment(n), "amount": "-1"}), "validation_error"),
                         (json.dumps(refund("ref-x", "pay-none", "1.00")), "unknown_payment")]
    return messages + later


def phase_two_messages() -> list:
    """Full refunds of REFUNDS payments (100 of them twice), a refund beyond its payment
    and a payment's event_id reused for another body."""
    messages: list = []
    for n in (n for n in range(PAYMENTS) if refunded(n)):
        body = load_payment(n)
        messages.append(refund(f"ref-{n}", f"pay-{n}", body["amount"], user_id=body["user_id"],
                               merchant_id=body["merchant_id"]))
        if len(messages) % 20 == 0:
            messages.append(reordered(messages[-1]))
    unrefunded = load_payment(1)
    messages += [(json.dumps(refund("ref-too-much", "pay-1", "999.00",
                                    user_id=unrefunded["user_id"])), "refund_exceeds_payment"),
                 (json.dumps({**load_payment(1), "amount": "1.23"}), "idempotency_conflict")]
    return messages


def group_state(streams: Streams) -> dict:
    info = streams.redis.xinfo_groups(streams.events)[0]
    return {"pending": info["pending"], "lag": info["lag"],
            "entries-read": info["entries-read"]}


class AckAudit:
    """Acknowledged only after commit, checked while the consumers run: a result is written
    in the MULTI that acknowledges its message, so every event with a 200 or 201 result
    must be in the ledger (committed) by the time the result can be read."""

    def __init__(self, streams: Streams, engine):
        self.streams, self.engine = streams, engine
        self.last = b"0-0"
        self.checked = 0

    def __call__(self) -> bool:
        while True:
            entries = self.streams.redis.xrange(self.streams.results, f"({self.last.decode()}",
                                                "+", count=5000)
            if not entries:
                return True
            ids = {fields[b"event_id"].decode() for _, fields in entries
                   if fields[b"status"] in (b"200", b"201")}
            with self.engine.connect() as conn:
                committed = conn.execute(text(
                    "SELECT count(*) FROM events WHERE client_id = 'stream' "
                    "AND event_id = ANY(:ids)"), {"ids": list(ids)}).scalar_one()
            assert committed == len(ids), "a message was acknowledged before its commit"
            self.checked += len(entries)
            self.last = entries[-1][0]


def stats_line(log: Path) -> str:
    return [line for line in log.read_text().splitlines() if " stopped after " in line][-1]


@pytest.mark.slow
def test_100000_events_through_three_consumers_one_killed_are_each_applied_once(
        postgres_url, streams, processes, tmp_path):
    from promo_engine.app import create_app
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.schema import upgrade
    upgrade(postgres_url)
    setup_app = create_app(make_settings(postgres_url))
    install_campaigns(setup_app, LOAD_CAMPAIGNS, tmp_path)
    with setup_app.app_context():
        db.engine.dispose()
    engine = create_engine(postgres_url)
    producer = Producer(streams)
    first = phase_one_messages()
    try:
        producer.send(first[:len(first) // 2])
        started = time.monotonic()
        # Batches: one transaction of up to 100 events each, a savepoint per event.
        consumers = {name: processes(streams, postgres_url, name, "--batch", "100",
                                     "--max-wait-ms", "20", "--block-ms", "500",
                                     "--claim-idle-ms", str(CLAIM_IDLE_MS))
                     for name in CONSUMERS}
        audit = AckAudit(streams, engine)
        producer.send(first[len(first) // 2:])

        # Kill c1 with SIGKILL mid-way, while it holds messages (and after the activations).
        wait_until(lambda: audit() and ledger_count(engine) >= KILL_AFTER and
                   ledger_count(engine, "activation") == USERS, LOAD_TIMEOUT, "the kill point",
                   interval=0.5)
        wait_until(lambda: any(c["name"] == b"c1" and c["pending"] for c in
                               streams.redis.xinfo_consumers(streams.events, streams.group)),
                   60, "c1 to hold messages", interval=0.001)
        os.killpg(consumers["c1"].pid, signal.SIGKILL)
        consumers["c1"].wait(10)
        killed_at = ledger_count(engine)
        held_by_dead = streams.redis.xpending_range(streams.events, streams.group, "-", "+",
                                                    10_000, consumername="c1")
        assert held_by_dead

        wait_until(lambda: audit() and ledger_count(engine) == USERS + PAYMENTS and
                   group_state(streams)["pending"] == group_state(streams)["lag"] == 0,
                   LOAD_TIMEOUT, "the first phase", interval=0.5)
        producer.send(phase_two_messages())
        wait_until(lambda: audit() and ledger_count(engine) == TOTAL_EVENTS and
                   group_state(streams)["pending"] == group_state(streams)["lag"] == 0,
                   LOAD_TIMEOUT, "every event", interval=0.5)
        elapsed = time.monotonic() - started
        for name in CONSUMERS[1:]:
            consumers[name].send_signal(signal.SIGTERM)
        for name in CONSUMERS[1:]:
            assert consumers[name].wait(30) == 0
        summaries = {name: stats_line(consumers[name].log) for name in CONSUMERS[1:]}
        print(f"\n{TOTAL_EVENTS:,} events ({len(producer.event_ids) + len(producer.bad):,} "
              f"messages) in {elapsed:.1f} s, {TOTAL_EVENTS / elapsed:.1f} events/s in all; "
              f"c1 killed at {killed_at:,} events holding {len(held_by_dead)} messages; "
              f"{audit.checked:,} results audited against the ledger while running")
        for line in summaries.values():
            print(line)

        # Redis: every message acknowledged, nothing pending, nothing unread.
        length = streams.redis.xlen(streams.events)
        assert length == len(producer.event_ids) + len(producer.bad)
        assert group_state(streams) == {"pending": 0, "lag": 0, "entries-read": length}
        assert streams.pending() == []
        claimed = sum(int(line.split(" claimed from idle")[0].rsplit(" ", 1)[1].replace(",", ""))
                      for line in summaries.values())
        assert claimed >= len(held_by_dead)
        dead = {fields[b"source_id"]: json.loads(fields[b"error"])["error"]["code"]
                for _, fields in streams.entries(streams.dead)}
        assert dead == producer.bad
        assert len(streams.entries(streams.dead)) == len(producer.bad)

        assert audit() and audit.checked == len(streams.entries(streams.results))
        check_ledger(engine, streams)
    finally:
        engine.dispose()


def check_ledger(engine, streams: Streams) -> None:
    """Exactly one event row and one set of rewards per event id, budgets exact, balances,
    stored responses and the results stream all agreeing."""
    with engine.connect() as conn:
        events = {event_id: (pk, kind, json.loads(response)) for pk, event_id, kind, response in
                  conn.execute(text("SELECT id, event_id, type, response FROM events "
                                    "WHERE client_id = 'stream'"))}
        rewards: dict[int, list] = {}
        for row in conn.execute(text(
                "SELECT event_pk, reward_id, campaign_id, points, amount_minor, reverses_id "
                "FROM rewards ORDER BY id")):
            rewards.setdefault(row.event_pk, []).append(row)
        wrong_balances = conn.execute(text(
            "SELECT count(*) FROM users u LEFT JOIN (SELECT user_id, sum(points) AS points "
            "FROM rewards GROUP BY user_id) r USING (user_id) "
            "WHERE u.points_balance <> coalesce(r.points, 0)")).scalar_one()
        total_rows = conn.execute(text("SELECT count(*) FROM events")).scalar_one()

    expected_ids = ({f"act-{n}" for n in range(USERS)} | {f"pay-{n}" for n in range(PAYMENTS)}
                    | {f"ref-{n}" for n in range(PAYMENTS) if refunded(n)})
    assert total_rows == len(events) == TOTAL_EVENTS
    assert set(events) == expected_ids
    welcomed = 0
    for event_id, (pk, kind, response) in events.items():
        granted = rewards.get(pk, [])
        # The stored response lists exactly the event's reward rows.
        assert sorted(r["reward_id"] for r in response["rewards"]) == \
            sorted(r.reward_id for r in granted), event_id
        shape = sorted((r.campaign_id or "", r.points, r.amount_minor) for r in granted)
        if kind == "activation":
            assert shape in ([], [("stream-welcome", WELCOME_POINTS, None)]), event_id
            welcomed += len(shape)
            continue
        body = load_payment(int(event_id.split("-")[1]))
        sign = -1 if kind == "refund" else 1
        assert shape == [("", sign * base_points(body), None),
                         ("stream-discount", None, sign * DISCOUNT_MINOR)], event_id
        assert all((r.reverses_id is not None) == (kind == "refund") for r in granted)
    assert welcomed * WELCOME_POINTS == WELCOME_BUDGET  # spent to the last point, never over
    assert wrong_balances == 0
    # Results: every event's response at least once, as stored (replays included).
    answered: dict[str, set] = {}
    for _, fields in streams.redis.xrange(streams.results):
        if fields[b"status"] in (b"200", b"201"):
            answered.setdefault(fields[b"event_id"].decode(), set()).add(fields[b"body"].decode())
    assert set(answered) == expected_ids
    assert all(json.loads(bodies.pop()) == events[event_id][2] and not bodies
               for event_id, bodies in answered.items())


# -- redemptions and cancels --------------------------------------------------------------

EXCHANGE_CAMPAIGN = f"""
id: mall
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, voucher: {{amount: "15.00", valid_days: 10}}}}
"""


def spending_events(user_id: str) -> list[dict]:
    """Points earned, burnt with a reference, exchanged for a voucher, the exchange
    cancelled, and a burn of more than is left."""
    def event(event_id, kind, at, **fields):
        return {"event_id": event_id, "type": kind, "user_id": user_id,
                "occurred_at": f"2026-06-16T{at}:00+08:00", **fields}
    return [payment("pay-1", "300.00", user_id=user_id),
            event("burn-1", "redemption", "10:00", points=50, reference="order-7"),
            event("swap-1", "redemption", "11:00", campaign_id="mall"),
            event("undo-1", "cancel", "12:00", original_event_id="swap-1"),
            event("burn-2", "redemption", "13:00", points=1000)]


def test_redemptions_and_cancels_from_the_stream_are_recorded_as_over_http(app, streams,
                                                                           tmp_path):
    from wallet import new_wallet_client, without_ids
    install_campaigns(app, EXCHANGE_CAMPAIGN, tmp_path, name="exchange.yaml")
    ids = [streams.add(body) for body in spending_events("u_stream")]
    consumer = new_consumer(app, streams)

    assert consumer.step() == 5

    assert consumer.stats.outcomes == {"recorded": 4, "dead_lettered": 1}
    assert streams.pending() == []
    ledger = events_in_ledger(app)
    assert sorted(ledger) == ["burn-1", "pay-1", "swap-1", "undo-1"]
    swap, undo = ledger["swap-1"], ledger["undo-1"]
    code = swap["rewards"][1]["voucher"]["code"]
    assert {event_id: dict(body, rewards=without_ids(body["rewards"]))
            for event_id, body in ledger.items() if event_id != "pay-1"} == {
        "burn-1": {"event_id": "burn-1", "points_balance": 250, "reference": "order-7",
                   "rewards": [{"campaign_id": None, "kind": "points", "points": -50}]},
        "swap-1": {"event_id": "swap-1", "points_balance": 150, "rewards": [
            {"campaign_id": "mall", "kind": "points", "points": -100},
            {"campaign_id": "mall", "kind": "voucher",
             "voucher": {"amount": "15.00", "currency": "CNY",
                         "expires_at": "2026-06-26T03:00:00Z"}}]},
        "undo-1": {"event_id": "undo-1", "points_balance": 250, "rewards": [
            {"campaign_id": "mall", "kind": "points", "points": 100},
            {"campaign_id": "mall", "kind": "voucher",
             "voucher": {"amount": "-15.00", "currency": "CNY",
                         "expires_at": "2026-06-26T03:00:00Z"}}]}}
    assert [r["reverses"] for r in undo["rewards"]] == [r["reward_id"] for r in swap["rewards"]]
    assert undo["rewards"][1]["voucher"]["code"] == code
    message = "1000 points are needed and 250 are available"
    refused = error("insufficient_points", message, {"points": [message]})
    [(_, dead)] = streams.entries(streams.dead)
    assert (decoded(dead)["source_id"], json.loads(dead[b"error"])) == (ids[4].decode(), refused)
    results = [decoded(fields) for _, fields in streams.entries(streams.results)]
    assert [(r["event_id"], r["status"]) for r in results] == [
        ("pay-1", "201"), ("burn-1", "201"), ("swap-1", "201"), ("undo-1", "201"),
        ("burn-2", "422")]
    assert [json.loads(r["body"]) for r in results] == \
        [ledger[event_id] for event_id in ("pay-1", "burn-1", "swap-1", "undo-1")] + [refused]

    # The same events over HTTP (another user: the balances are each user's own).
    wallet = new_wallet_client(app)
    answers = [wallet.event(**body) for body in spending_events("u_http")]
    assert [a.status_code for a in answers] == [201, 201, 201, 201, 422]
    assert [dict(a.get_json(), rewards=without_ids(a.get_json()["rewards"]))
            for a in answers[:4]] == \
        [dict(ledger[e], rewards=without_ids(ledger[e]["rewards"]))
         for e in ("pay-1", "burn-1", "swap-1", "undo-1")]
    assert answers[4].get_json() == refused

    def history(user_id):
        points = wallet.get(f"/v1/users/{user_id}/points").get_json()
        vouchers = wallet.get(f"/v1/users/{user_id}/vouchers?status=all").get_json()
        return (points["points_balance"],
                [(e["event_id"], e["campaign_id"], e["points"], e.get("reason"))
                 for e in points["entries"]],
                [(v["status"], v["amount"], v["campaign_id"]) for v in vouchers["vouchers"]])
    assert history("u_stream") == history("u_http") == (
        250,
        [("undo-1", "mall", 100, "returned"), ("swap-1", "mall", -100, "spent"),
         ("burn-1", None, -50, "spent"), ("pay-1", None, 300, None)],
        [("voided", "15.00", "mall")])
