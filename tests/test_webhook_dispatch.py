"""Sending webhooks (contract: "Webhooks"): each delivery row is POSTed, signed, to a real
receiver that verifies it with the `standardwebhooks` library; retried with growing delays
after any answer but 2xx, the first within 10 s; failed once the retry window has passed;
never sent to a removed endpoint; a slow or dead receiver does not hold up the others.

The deliveries are written with `webhook_outbox.announce`, as the ledger's write paths do;
a clock the tests move stands in for the hours that retries take.
"""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import WebhookDelivery, utcnow
from promo_engine.ledger.responses import iso
from promo_engine.metrics import metrics
from promo_engine.webhooks.deliveries import (Attempted, NotAttempted, claim, record,
                                              retry)
from promo_engine.webhooks.dispatcher import Dispatcher, RoundCounts
from promo_engine.webhooks.endpoints import add_endpoint, remove_endpoint
from promo_engine.webhooks.retry_schedule import RetrySchedule

from conftest import make_settings, reused_schema_url, running_app
from processes import free_port, wait_until
from webhook_receiver import Clock, Receiver

SECRET_KEY = "test-secret-key-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def app(database_url):
    with running_app(make_settings(database_url)) as app:
        yield app


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def dispatchers(app, clock):
    """Makes dispatchers on the app's database (the test's clock unless given another), and
    stops them afterwards."""
    made = []

    def make(**options) -> Dispatcher:
        options.setdefault("clock", clock)
        with app.app_context():
            dispatcher = Dispatcher(db.engine, SECRET_KEY, metrics=metrics(app), **options)
        made.append(dispatcher)
        return dispatcher
    yield make
    for dispatcher in made:
        dispatcher.stop(grace=0)


def endpoint(app, receiver: Receiver, path: str, events=None):
    with app.app_context():
        info, secret = add_endpoint(receiver.url(path), events)
    receiver.secrets[path] = secret
    return info


def announce(app, count: int, now, message_type=webhook_outbox.REWARD_GRANTED):
    messages = [webhook_outbox.message(message_type, {"user_id": f"u_{n}", "n": n}, now)
                for n in range(count)]
    with app.app_context():
        run_in_transaction(db.session,
                           lambda: webhook_outbox.announce(db.session, messages, now))
    return messages


def rows(app, endpoint_id: str | None = None) -> list[WebhookDelivery]:
    with app.app_context():
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def sample(app, name: str, **labels) -> float:
    return metrics(app).registry.get_sample_value(name, labels) or 0.0


def test_each_delivery_is_posted_signed_byte_for_byte_and_recorded(app, receiver, clock,
                                                                   dispatchers):
    hook = endpoint(app, receiver, "/hooks")
    messages = announce(app, 3, clock.now)
    clock.advance(0.25)

    counts = dispatchers().run_once()

    assert counts == RoundCounts(claimed=3, delivered=3)
    assert receiver.rejected == []
    assert sorted((r.webhook_id, r.body) for r in receiver.accepted("/hooks")) == sorted(
        (m.id, m.payload.encode("utf-8")) for m in messages)
    assert [json.loads(m.payload) for m in messages][0] == {
        "id": messages[0].id, "type": "reward.granted",
        "timestamp": iso(clock.now - timedelta(seconds=0.25)),
        "data": {"user_id": "u_0", "n": 0}}
    assert [(r.endpoint_id, r.status, r.attempts, r.last_status, r.last_error, r.delivered_at,
             r.last_attempt_at) for r in rows(app)] == [
        (hook.id, "delivered", 1, 200, None, clock.now, clock.now)] * 3
    assert sample(app, "promo_webhook_deliveries_total", type="reward.granted",
                  outcome="delivered") == 3
    assert sample(app, "promo_webhook_oldest_pending_seconds") == 0


def test_an_answer_other_than_2xx_is_retried_first_within_10_s_then_delivered(
        app, receiver, clock, dispatchers):
    endpoint(app, receiver, "/hooks")
    receiver.answers["/hooks"] = [500]
    [message] = announce(app, 1, clock.now)
    dispatcher = dispatchers()
    first = clock.now

    assert dispatcher.run_once() == RoundCounts(claimed=1, retrying=1)
    [row] = rows(app)
    assert (row.status, row.attempts, row.last_status, row.last_error, row.last_attempt_at,
            row.next_attempt_at) == ("pending", 1, 500, "HTTP 500: no", first,
                                     first + timedelta(seconds=5))
    clock.advance(4.9)
    assert dispatcher.run_once() == RoundCounts()
    clock.advance(0.1)
    assert dispatcher.run_once() == RoundCounts(claimed=1, delivered=1)
    assert [(r.webhook_id, r.status) for r in receiver.requests] == [
        (message.id, 500), (message.id, 200)]
    assert [(r.status, r.attempts, r.last_status, r.last_error) for r in rows(app)] == [
        ("delivered", 2, 200, None)]
    assert sample(app, "promo_webhook_deliveries_total", type="reward.granted",
                  outcome="retrying") == 1


def test_retries_grow_and_after_the_window_the_delivery_is_failed_until_retried(
        app, receiver, clock, dispatchers):
    endpoint(app, receiver, "/hooks")
    receiver.answers["/hooks"] = [503] * 10
    [message] = announce(app, 1, clock.now)
    created = clock.now
    dispatcher = dispatchers(schedule=RetrySchedule(window=timedelta(hours=1)))
    waits = []
    while dispatcher.run_once().retrying:
        [row] = rows(app)
        waits.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at
    [row] = rows(app)
    # 5 s, 30 s, 2 min, 10 min, 30 min, 1 h: the 7th attempt, past the hour, fails.
    assert waits == [5, 30, 120, 600, 1800, 3600]
    assert (row.status, row.attempts, row.last_status, row.last_attempt_at) == (
        "failed", 7, 503, created + timedelta(seconds=6155))
    assert sample(app, "promo_webhook_failures_total", type="reward.granted") == 1
    assert sample(app, "promo_webhook_deliveries_total", type="reward.granted",
                  outcome="failed") == 1
    assert dispatcher.run_once() == RoundCounts()

    with app.app_context():
        assert retry(db.engine, row.id, clock.now) == "pending"
    assert dispatcher.run_once() == RoundCounts(claimed=1, retrying=0, failed=1)  # one more 503
    receiver.answers["/hooks"] = []
    with app.app_context():
        assert retry(db.engine, row.id, clock.now) == "pending"
    assert dispatcher.run_once() == RoundCounts(claimed=1, delivered=1)
    assert [(r.status, r.attempts) for r in rows(app)] == [("delivered", 9)]
    assert receiver.accepted_ids() == {message.id: 1}
    with app.app_context():
        assert retry(db.engine, row.id, clock.now) == "delivered"
        assert retry(db.engine, 10**9, clock.now) == "missing"


def test_a_receiver_that_is_down_gets_everything_once_it_is_back(app, clock, dispatchers):
    receiver = Receiver(port=free_port())  # not started: connections are refused
    hook = endpoint(app, receiver, "/hooks")
    messages = announce(app, 40, clock.now)
    dispatcher = dispatchers(per_endpoint=4)
    t0 = clock.now
    refused = "cannot connect: [Errno 111] Connection refused"
    not_sent = f"not sent after an earlier delivery to this endpoint failed: {refused}"

    first = dispatcher.run_once()
    # A send per lane slot finds the receiver down; the rest go back unsent, due at the
    # endpoint's next retry, 5 s later, as the failed ones are.
    assert (first.claimed, first.retrying + first.put_back, first.delivered) == (40, 40, 0)
    assert 1 <= first.retrying <= 4
    assert {(r.attempts, r.last_error, r.next_attempt_at) for r in rows(app)} == {
        (1, refused, t0 + timedelta(seconds=5)), (0, not_sent, t0 + timedelta(seconds=5))}
    # Until then, what comes due for it goes back unsent too.
    messages += announce(app, 5, clock.advance(1))
    assert dispatcher.run_once() == RoundCounts(claimed=5, put_back=5)
    clock.advance(4)
    second = dispatcher.run_once()
    assert (second.claimed, second.retrying + second.put_back) == (45, 45)
    # Failing again, the endpoint is next tried 30 s later (a row's own next attempt may
    # be sooner; it goes back unsent then).
    assert sum(r.attempts for r in rows(app)) == first.retrying + second.retrying <= 8
    assert {r.next_attempt_at for r in rows(app) if r.attempts < 2} <= {
        t0 + timedelta(seconds=10), t0 + timedelta(seconds=35)}
    assert {r.next_attempt_at for r in rows(app) if r.attempts == 2} <= {
        t0 + timedelta(seconds=35)}

    receiver.start()
    try:
        for _ in range(20):
            pending = [r.next_attempt_at for r in rows(app) if r.status == "pending"]
            if not pending:
                break
            clock.now = max(clock.now, min(pending))
            dispatcher.run_once()
        assert clock.now == t0 + timedelta(seconds=35)
        assert receiver.rejected == []
        assert receiver.accepted_ids("/hooks") == {m.id: 1 for m in messages}
        assert {(r.endpoint_id, r.status) for r in rows(app)} == {(hook.id, "delivered")}
    finally:
        receiver.stop()


def test_the_dispatcher_thread_delivers_within_seconds_and_after_an_outage(app, dispatchers):
    receiver = Receiver(port=free_port())
    endpoint(app, receiver, "/hooks")
    dispatcher = dispatchers(clock=None, schedule=RetrySchedule(delays=(0.2, 0.4)),
                             poll_interval=0.1)
    dispatcher.start()
    down = announce(app, 10, utcnow())
    wait_until(lambda: any(r.attempts for r in rows(app)), 5, "a failed attempt")
    receiver.start()
    try:
        up = announce(app, 10, utcnow())
        wait_until(lambda: len(receiver.accepted()) >= 20, 5, "20 deliveries")
        wait_until(lambda: all(r.status == "delivered" for r in rows(app)), 5,
                   "every row recorded delivered")
        assert receiver.accepted_ids() == {m.id: 1 for m in down + up}
        assert receiver.rejected == []
    finally:
        receiver.stop()


def test_a_slow_receiver_does_not_hold_up_another_endpoint(app, receiver, dispatchers):
    slow, fast = endpoint(app, receiver, "/slow"), endpoint(app, receiver, "/fast")
    receiver.holds["/slow"] = hold = threading.Event()
    dispatcher = dispatchers(clock=None, timeout=3, lease=10, per_endpoint=4,
                             poll_interval=0.05)
    dispatcher.start()
    try:
        announce(app, 20, utcnow())  # 20 for each endpoint
        # Every request to /slow is still waiting for its answer meanwhile.
        wait_until(lambda: len(receiver.accepted("/fast")) == 20, 2.5, "/fast's 20")
        assert not any(r.attempts for r in rows(app, slow.id))
        wait_until(lambda: all(r.status == "delivered" for r in rows(app, fast.id)), 3,
                   "/fast's rows recorded")
        wait_until(lambda: any(r.attempts for r in rows(app, slow.id)), 5, "/slow timed out")
    finally:
        hold.set()
    dispatcher.stop()
    slow_rows = rows(app, slow.id)
    attempted = [r for r in slow_rows if r.attempts]
    assert 1 <= len(attempted) <= 4  # one per lane slot, the rest handed back unsent
    assert {(r.status, r.attempts, r.last_status, r.last_error) for r in attempted} == {
        ("pending", 1, None, "no answer within 3 s")}
    assert {(r.status, r.attempts) for r in slow_rows if not r.attempts} == {("pending", 0)}


def test_a_removed_endpoint_gets_nothing(app, receiver, clock, dispatchers):
    kept, removed = endpoint(app, receiver, "/kept"), endpoint(app, receiver, "/removed")
    announce(app, 2, clock.now)
    # A process that has not yet reread the endpoints writes one more for the removed one.
    stale = webhook_outbox.directory.endpoints(_engine(app))
    with app.app_context():
        assert remove_endpoint(removed.id) == 2
        assert remove_endpoint(removed.id) is None
        late = webhook_outbox.message(webhook_outbox.CAMPAIGN_OPENED, {}, clock.now)
        db.session.execute(WebhookDelivery.__table__.insert(), webhook_outbox.delivery_rows(
            [e for e in stale if e.id == removed.id], [late], clock.now))
        db.session.commit()

    assert dispatchers().run_once() == RoundCounts(claimed=3, delivered=2, dropped=1)
    assert [r.path for r in receiver.accepted()] == ["/kept", "/kept"]
    assert sorted((r.endpoint_id == kept.id, r.status, r.last_error, r.attempts)
                  for r in rows(app)) == [
        (False, "failed", "endpoint removed", 0), (False, "failed", "endpoint removed", 0),
        (False, "failed", "endpoint removed", 0), (True, "delivered", None, 1),
        (True, "delivered", None, 1)]
    assert sample(app, "promo_webhook_failures_total", type="reward.granted") == 0
    with app.app_context():
        assert retry(db.engine, rows(app, removed.id)[0].id, clock.now) == "removed"


def test_the_lag_gauge_is_the_wait_of_the_delivery_due_longest(app, receiver, clock,
                                                               dispatchers):
    endpoint(app, receiver, "/hooks")
    announce(app, 2, clock.now)
    dispatcher = dispatchers()
    clock.advance(7.5)
    assert dispatcher.lag_seconds() == 7.5
    assert sample(app, "promo_webhook_oldest_pending_seconds") == 7.5
    dispatcher.run_once()
    assert sample(app, "promo_webhook_oldest_pending_seconds") == 0


def _engine(app):
    with app.app_context():
        return db.engine


def test_a_dispatcher_with_another_secret_key_cannot_sign_and_says_so(app, receiver, clock,
                                                                     dispatchers, caplog):
    hook = endpoint(app, receiver, "/hooks")
    announce(app, 2, clock.now)
    with app.app_context():
        dispatcher = Dispatcher(db.engine, "another-secret-key-0123456789", clock=clock)
    try:
        counts = dispatcher.run_once()
    finally:
        dispatcher.stop(grace=0)
    assert (counts.claimed, counts.retrying + counts.put_back) == (2, 2)
    assert receiver.requests == []
    assert {r.last_error for r in rows(app) if r.attempts} == {
        "cannot decrypt the endpoint's secret: is SECRET_KEY the one it was added with?"}
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][0] == (
        f"cannot decrypt the secret of webhook endpoint {hook.id}: is SECRET_KEY the one it "
        "was added with?")
    for logged in caplog.records:  # never the secret, nor the URL
        assert receiver.secrets["/hooks"] not in logged.getMessage()
        assert str(receiver.port) not in logged.getMessage()


def test_an_outcome_is_recorded_only_while_its_lease_holds(app, receiver, clock):
    """A dispatcher that stalled past its lease: the row is someone else's by then, and
    what the stalled one learnt is not written over theirs."""
    endpoint(app, receiver, "/hooks")
    announce(app, 1, clock.now)
    engine = _engine(app)
    [stalled] = claim(engine, clock.now, clock.now + timedelta(seconds=30), 10)
    assert claim(engine, clock.now, clock.now + timedelta(seconds=30), 10) == []
    clock.advance(30)
    [taken] = claim(engine, clock.now, clock.now + timedelta(seconds=30), 10)
    record(engine, [Attempted(taken, "delivered", clock.now, clock.now, 204, None)], [])
    record(engine, [Attempted(stalled, "pending", clock.now, clock.now, 500, "HTTP 500")],
           [NotAttempted(stalled, "failed", clock.now, "late")])
    assert [(r.status, r.attempts, r.last_status, r.last_error, r.delivered_at)
            for r in rows(app)] == [("delivered", 1, 204, None, clock.now)]
