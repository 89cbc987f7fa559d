"""The leader lease against a real Redis: tokens, compare-and-set renewal and release,
expiry and takeover, the keeper thread, and fencing of a leader that lost its lease
without noticing. Each test has keys of its own."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

from promo_engine.coordination.leader import LeaseKeeper, RedisLease

from conftest import TEST_REDIS_URL

pytestmark = pytest.mark.services

UTC = timezone.utc
REDIS_URL = TEST_REDIS_URL


@pytest.fixture
def key(redis_client):
    name = f"promo-test-{uuid.uuid4().hex}:scheduler:leader"
    yield name
    redis_client.delete(name, f"{name}:token")


def lease(redis_client, key, owner, ttl_ms=5000) -> RedisLease:
    return RedisLease(redis_client, key, ttl_ms, owner)


def wait_for(predicate, timeout: float) -> float | None:
    """Seconds until predicate() held, or None if it did not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


# --- the lease ----------------------------------------------------------------------------

def test_acquire_gives_a_token_and_holds_the_key(redis_client, key):
    a = lease(redis_client, key, "a")
    assert a.acquire() == 1
    assert a.holder() == "1:a"
    assert a.valid()
    assert 4000 < redis_client.pttl(key) <= 5000


def test_nobody_else_takes_a_held_lease(redis_client, key):
    a, b = lease(redis_client, key, "a"), lease(redis_client, key, "b")
    assert a.acquire() == 1
    assert b.acquire() is None
    assert (b.token, b.valid(), a.holder()) == (None, False, "1:a")


def test_every_acquisition_draws_a_higher_token(redis_client, key):
    a, b = lease(redis_client, key, "a"), lease(redis_client, key, "b")
    assert a.acquire() == 1
    assert a.release() is True
    assert b.acquire() == 2
    assert b.release() is True
    assert a.acquire() == 3


def test_tokens_carry_on_above_the_floor_when_the_counter_was_lost(redis_client, key):
    a = lease(redis_client, key, "a")
    assert a.acquire(floor=41) == 42  # the database's fence says 41 has acted
    assert redis_client.get(f"{key}:token") == b"42"


def test_renew_extends_only_ones_own_lease(redis_client, key):
    a = lease(redis_client, key, "a", ttl_ms=1000)
    assert a.acquire() == 1
    time.sleep(0.3)
    assert a.renew() is True
    assert redis_client.pttl(key) > 900
    impostor = lease(redis_client, key, "b")
    impostor.token = 1  # the same token with another owner is not the same lease
    assert impostor.renew() is False


def test_a_lease_taken_over_cannot_be_renewed_or_released(redis_client, key):
    a, b = lease(redis_client, key, "a", ttl_ms=200), lease(redis_client, key, "b")
    assert a.acquire() == 1
    time.sleep(0.3)  # expired
    assert b.acquire() == 2
    assert a.renew() is False
    assert a.valid() is False
    assert a.release() is False
    assert b.holder() == "2:b"


def test_release_deletes_only_ones_own_lease(redis_client, key):
    a, b = lease(redis_client, key, "a"), lease(redis_client, key, "b")
    assert a.acquire() == 1
    assert b.release() is False
    assert a.holder() == "1:a"
    assert a.release() is True
    assert redis_client.exists(key) == 0


def test_a_lease_is_not_valid_locally_after_its_time_to_live(redis_client, key):
    a = lease(redis_client, key, "a", ttl_ms=150)
    assert a.acquire() == 1
    assert a.valid() is True
    time.sleep(0.2)
    assert a.valid() is False


def test_a_lease_shorter_than_100_ms_is_refused(redis_client, key):
    with pytest.raises(ValueError):
        lease(redis_client, key, "a", ttl_ms=50)


# --- the keeper ---------------------------------------------------------------------------

class Events:
    def __init__(self):
        self.log: list[tuple[str, int | None]] = []
        self.lock = threading.Lock()

    def elected(self, token):
        with self.lock:
            self.log.append(("elected", token))

    def deposed(self):
        with self.lock:
            self.log.append(("deposed", None))


def keeper(redis_client, key, owner, ttl_ms=1000, floor=lambda: 0):
    events = Events()
    k = LeaseKeeper(lease(redis_client, key, owner, ttl_ms), on_elected=events.elected,
                    on_deposed=events.deposed, floor=floor)
    return k, events


def test_one_keeper_leads_and_keeps_its_lease_by_renewing(redis_client, key):
    (a, a_events), (b, b_events) = keeper(redis_client, key, "a"), keeper(redis_client, key, "b")
    a.start()
    try:
        assert wait_for(lambda: a_events.log, 2) is not None
        b.start()
        time.sleep(2.5)  # two and a half lease times: only renewals keep it
        assert a_events.log == [("elected", 1)]
        assert b_events.log == []
        assert (a.leading, b.leading) == (True, False)
    finally:
        a.stop()
        b.stop()
    assert a_events.log == [("elected", 1), ("deposed", None)]


def test_a_stopped_leader_releases_and_another_takes_over_at_once(redis_client, key):
    (a, a_events), (b, b_events) = keeper(redis_client, key, "a"), keeper(redis_client, key, "b")
    a.start()
    try:
        assert wait_for(lambda: a_events.log, 2) is not None
        b.start()
        a.stop()
        took = wait_for(lambda: b_events.log, 2)
        assert took is not None and took < 0.5  # one retry interval (0.1 s), not a lease time
        assert b_events.log == [("elected", 2)]
    finally:
        a.stop()
        b.stop()


def test_a_keeper_that_loses_its_lease_is_deposed_within_a_renewal(redis_client, key):
    a, events = keeper(redis_client, key, "a", ttl_ms=1200)
    a.start()
    try:
        assert wait_for(lambda: events.log, 2) is not None
        redis_client.set(key, "99:someone-else", px=5000)  # e.g. a failover lost ours
        deposed = wait_for(lambda: ("deposed", None) in events.log, 2)
        assert deposed is not None and deposed < 0.4 + 0.2  # ttl/3, and some slack
        assert redis_client.get(key) == b"99:someone-else"  # not released: not ours
    finally:
        a.stop()


def test_a_keeper_stops_acting_at_once_when_redis_does_not_answer(redis_client, key):
    import redis
    a, events = keeper(redis_client, key, "a", ttl_ms=1200)
    a.start()
    try:
        assert wait_for(lambda: events.log, 2) is not None

        def unreachable(*args, **kwargs):
            raise redis.ConnectionError("connection refused")
        a.lease._renew = unreachable
        a.lease._release = unreachable
        deposed = wait_for(lambda: ("deposed", None) in events.log, 2)
        assert deposed is not None and deposed < 0.6
        assert a.leading is False
    finally:
        a.stop()


def test_a_keeper_does_not_compete_while_the_floor_cannot_be_read(redis_client, key):
    def floor():
        raise RuntimeError("database down")
    a, events = keeper(redis_client, key, "a", floor=floor)
    a.start()
    try:
        time.sleep(0.4)
        assert events.log == []
        assert redis_client.exists(key) == 0
    finally:
        a.stop()


# --- fencing with the scheduler -----------------------------------------------------------

def test_a_leader_whose_lease_was_lost_cannot_act_once_its_successor_has(
        app, redis_client, key, tmp_path):
    from promo_engine.campaigns.scheduler import CampaignScheduler
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit

    from wallet import install_campaigns
    install_campaigns(app, "id: fenced\ntype: holiday_discount\nstarts_at: 2027-03-01T00:00:00\n"
                           "ends_at: 2027-05-01T00:00:00\nparams: {percent: 10}\n", tmp_path)
    clock = lambda: datetime(2027, 3, 1, tzinfo=UTC)  # noqa: E731
    old = CampaignScheduler(app, lease=lease(redis_client, key, "old", 60_000), clock=clock)
    new = CampaignScheduler(app, lease=lease(redis_client, key, "new", 60_000), clock=clock)
    assert old.lease.acquire(floor=old.fence()) == 1
    old.on_elected(1)
    redis_client.delete(key)  # lost in a failover; the old leader has not noticed yet
    assert new.lease.acquire(floor=new.fence()) == 2
    new.on_elected(2)
    assert new.act(["other-campaign"]) == []  # an act of the new leader: the fence is 2

    assert old.lease.valid() is True  # it still believes it leads
    assert old.act(["fenced"]) == []
    assert old.leading is False
    with app.app_context():
        assert db.session.query(CampaignAudit).filter_by(campaign_id="fenced",
                                                         actor="scheduler").count() == 0
    assert [t.to_status for t in new.act(["fenced"])] == ["open"]
