"""What workers tell Redis after commit goes out for several threads in one pipeline
(coordination/confirmations.py): every thread's commands sent exactly once, none returning
before its own were sent, a lone thread sending alone, errors reaching every thread of the
pipeline that met them. Real Redis throughout."""
from __future__ import annotations

import threading
import time

import pytest
import redis

from promo_engine.coordination.confirmations import GroupSender

pytestmark = pytest.mark.services


def test_a_lone_thread_sends_at_once(redis_client, redis_prefix):
    sender = GroupSender(redis_client)
    key = f"{redis_prefix}:n"
    sender.send(lambda pipe: pipe.incrby(key, 5), lambda: None)
    assert int(redis_client.get(key)) == 5  # sent before send() returned
    assert sender.batches == 1


def test_threads_waiting_for_a_round_trip_share_the_next_pipeline(redis_client, redis_prefix):
    sender = GroupSender(redis_client)
    key, seen = f"{redis_prefix}:n", f"{redis_prefix}:seen"
    first_in_flight = threading.Event()
    release_first = threading.Event()

    def slow_first(pipe):
        pipe.incrby(key, 1)
        first_in_flight.set()
        assert release_first.wait(10)  # the other threads queue meanwhile

    returned = []

    def worker(n: int) -> None:
        sender.send(lambda pipe: (pipe.incrby(key, 1), pipe.sadd(seen, n)), lambda: None)
        # What this thread queued reached Redis before send() returned.
        returned.append(redis_client.sismember(seen, n))

    first = threading.Thread(target=sender.send, args=(slow_first, lambda: None))
    first.start()
    assert first_in_flight.wait(10)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(sender._queue) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sender._queue) == 20  # all waiting for the first round trip
    release_first.set()
    for thread in [first, *threads]:
        thread.join(10)
    assert int(redis_client.get(key)) == 21  # every command exactly once
    assert redis_client.scard(seen) == 20 and returned == [1] * 20
    assert sender.batches == 2  # the first thread's pipeline, then one for the other 20


def test_every_thread_of_a_failed_pipeline_gets_the_error(redis_prefix):
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    sender = GroupSender(unreachable)
    with pytest.raises(redis.ConnectionError):
        sender.send(lambda pipe: pipe.incr(f"{redis_prefix}:n"), lambda: None)
    assert not sender._sending and sender._queue == []  # the next one can send


def test_after_noscript_each_thread_sends_again_without_a_pipeline(redis_client, redis_prefix):
    """Redis lost its scripts between the load and the pipeline (a restart): every
    thread's retry runs, once."""
    sender = GroupSender(redis_client)
    script = redis_client.register_script("return redis.call('INCR', KEYS[1])")
    key = f"{redis_prefix}:n"
    redis_client.script_flush()
    retried = []
    sender.send(lambda pipe: pipe.evalsha(script.sha, 1, key),
                lambda: retried.append(script(keys=[key])))
    assert retried == [1] and int(redis_client.get(key)) == 1
