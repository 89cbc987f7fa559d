"""Several webhook dispatchers on one PostgreSQL database (contract: "Webhooks": several
may run at once; at least once, nothing lost): each delivery row is sent once while they
all run, and a dispatcher killed mid-batch (SIGKILL, in a process of its own) loses nothing:
what it had claimed comes due again when its lease ends, and another sends it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select

from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import WebhookDelivery, utcnow
from promo_engine.webhooks.dispatcher import Dispatcher
from promo_engine.webhooks.endpoints import add_endpoint

from conftest import make_settings, reused_schema_url, running_app
from processes import wait_until
from webhook_receiver import Receiver

SECRET_KEY = "test-secret-key-0123456789"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A dispatcher process with a short lease, so that the test need not wait 30 s for it.
DISPATCHER = """
import sys, time
from sqlalchemy import create_engine
from promo_engine.webhooks.dispatcher import Dispatcher
Dispatcher(create_engine(sys.argv[1]), sys.argv[2], lease=3.0, timeout=1.0, batch_size=50,
           per_endpoint=4, poll_interval=0.05).start()
time.sleep(600)
"""


@pytest.fixture(params=["postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def app(database_url):
    with running_app(make_settings(database_url)) as app:
        yield app


def endpoints(app, receiver: Receiver, paths: list[str]) -> list[str]:
    ids = []
    for path in paths:
        with app.app_context():
            info, secret = add_endpoint(receiver.url(path))
        receiver.secrets[path] = secret
        ids.append(info.id)
    return ids


def announce(app, count: int) -> list[str]:
    now = utcnow()
    messages = [webhook_outbox.message(webhook_outbox.REWARD_GRANTED, {"n": n}, now)
                for n in range(count)]
    with app.app_context():
        run_in_transaction(db.session,
                           lambda: webhook_outbox.announce(db.session, messages, now))
    return [m.id for m in messages]


def settle(receiver: Receiver, quiet: float = 0.2) -> None:
    """Until the receiver has answered everything and got nothing new for `quiet` s."""
    seen = -1
    for _ in range(50):
        if len(receiver.requests) == seen and receiver.in_flight == 0:
            return
        seen = len(receiver.requests)
        time.sleep(quiet)
    raise AssertionError("the receiver kept getting requests")


def statuses(engine) -> Counter:
    with engine.connect() as connection:
        return Counter(dict(connection.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status))
            .all()))


def test_several_dispatchers_at_once_send_each_delivery_once(app, database_url, receiver):
    paths = ["/a", "/b", "/c"]
    endpoints(app, receiver, paths)
    for path in paths:
        receiver.delays[path] = 0.002
    ids = announce(app, 100)
    engines = [create_engine(database_url) for _ in range(3)]
    dispatchers = [Dispatcher(engine, SECRET_KEY, batch_size=20, per_endpoint=4,
                              poll_interval=0.02) for engine in engines]
    try:
        for dispatcher in dispatchers:
            dispatcher.start()
        wait_until(lambda: statuses(engines[0]) == {"delivered": 300}, 30,
                   "300 deliveries recorded")
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop(grace=0)
        for engine in engines:
            engine.dispose()
    assert receiver.rejected == []
    assert Counter((r.path, r.webhook_id) for r in receiver.requests) == {
        (path, message_id): 1 for path in paths for message_id in ids}
    delivered = [d.totals.delivered for d in dispatchers]
    assert sum(delivered) == 300
    assert sum(1 for n in delivered if n) >= 2, delivered  # they shared the work


def test_a_dispatcher_killed_mid_batch_loses_nothing(app, database_url, receiver):
    endpoints(app, receiver, ["/hooks"])
    receiver.delays["/hooks"] = 0.02
    ids = announce(app, 200)
    engine = create_engine(database_url)
    process = subprocess.Popen([sys.executable, "-c", DISPATCHER, database_url, SECRET_KEY],
                               cwd=ROOT, start_new_session=True)
    try:
        wait_until(lambda: len(receiver.accepted()) >= 40, 30, "40 deliveries")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        settle(receiver)  # the requests it had sent before it died are all in
        sent_before = receiver.accepted_ids()
        with engine.connect() as connection:
            leased = connection.execute(select(func.count()).where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at > utcnow())).scalar()
        assert leased > 0  # it died holding claimed rows
        assert statuses(engine)["delivered"] < 200

        survivor = Dispatcher(engine, SECRET_KEY, lease=3.0, timeout=1.0, poll_interval=0.05)
        survivor.start()
        try:
            wait_until(lambda: statuses(engine) == {"delivered": 200}, 30,
                       "every delivery recorded")
        finally:
            survivor.stop(grace=0)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        engine.dispose()
    accepted = receiver.accepted_ids()
    assert set(accepted) == set(ids)  # nothing lost
    # Sent twice only if sent by the dead one: it died before recording them.
    twice = {message_id for message_id, times in accepted.items() if times > 1}
    assert twice <= set(sent_before)
    assert max(accepted.values()) <= 2
    assert receiver.rejected == []
