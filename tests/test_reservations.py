"""The Redis counters' scripts, against a real Redis: all-or-nothing reservations, release,
confirmation, refunds, the settle period after a data loss, and reconciliation that can
only ever leave a counter at or above the ledger plus what is in flight."""
from __future__ import annotations

import threading
import time

import pytest

from promo_engine.coordination.reservations import ForeignPrefix, NotReady, Request, Reservations

pytestmark = pytest.mark.services

PROGRAM = lambda: "program-a"  # noqa: E731 - the program database's id, as the service reads it


@pytest.fixture
def reservations(redis_client, redis_prefix):
    return Reservations(redis_client, prefix=redis_prefix, ttl_ms=5000, grace_ms=1000,
                        program_id=PROGRAM)


def built(reservations, **counters):
    """Counters as reconciliation builds them: {campaign: (spent, redemptions)}."""
    assert reservations.rebuild(reservations.clock_ms(), counters) == len(counters)


def request(campaign_id, cost, budget=None, max_redemptions=None, redemptions=1):
    return Request(campaign_id, cost, redemptions, budget, max_redemptions)


def test_reserves_every_reward_of_the_event_in_one_go(reservations):
    built(reservations, a=(0, 0), b=(800, 3))
    outcome = reservations.reserve([request("a", 100, budget=1000), request("b", 200, budget=1000)])
    assert outcome.reservation is not None and outcome.full == frozenset()
    assert reservations.counters(["a", "b"]) == {"a": (100, 1), "b": (1000, 4)}


def test_a_campaign_without_room_fails_the_whole_reservation(reservations):
    built(reservations, a=(0, 0), b=(900, 3))
    outcome = reservations.reserve([request("a", 100, budget=1000), request("b", 200, budget=1000)])
    assert outcome.reservation is None
    assert outcome.full == frozenset({"b"})
    assert reservations.counters(["a", "b"]) == {"a": (0, 0), "b": (900, 3)}  # nothing taken
    fits = reservations.reserve([request("a", 100, budget=1000), request("b", 100, budget=1000)])
    assert fits.reservation is not None
    assert reservations.counters(["a", "b"]) == {"a": (100, 1), "b": (1000, 4)}


def test_max_redemptions(reservations):
    built(reservations, a=(0, 6))
    assert reservations.reserve([request("a", 1, max_redemptions=7)]).reservation is not None
    assert reservations.reserve([request("a", 1, max_redemptions=7)]).full == {"a"}
    assert reservations.counters(["a"]) == {"a": (1, 7)}


def test_counters_not_built_are_reported_and_nothing_is_taken(reservations):
    built(reservations, a=(5, 1))
    outcome = reservations.reserve([request("a", 1), request("new", 1)])
    assert outcome.missing == frozenset({"new"}) and outcome.reservation is None
    assert reservations.counters(["a", "new"]) == {"a": (5, 1), "new": None}


def test_reservations_made_ahead_go_in_order_each_all_or_nothing(reservations):
    built(reservations, a=(0, 0), b=(0, 0))
    made = reservations.reserve_ahead([
        [request("a", 400, budget=1000)],
        [request("a", 400, budget=1000), request("b", 100, budget=1000)],
        [request("a", 400, budget=1000)],  # no room left in a: nothing of it taken
        [request("b", 100, budget=1000), request("new", 1)],  # new has no counters yet
        [request("a", 200, budget=1000)]])
    assert [reservation is not None for reservation in made] == [True, True, False, False, True]
    assert reservations.counters(["a", "b", "new"]) == {"a": (1000, 3), "b": (100, 1),
                                                        "new": None}
    assert [reservation.after for reservation in made if reservation is not None] == [
        ((400, 1),), ((800, 2), (100, 1)), ((1000, 3),)]
    reservations.release(made[1])  # each is a reservation as `reserve` makes them
    reservations.confirm(made[0])
    assert reservations.counters(["a", "b"]) == {"a": (600, 2), "b": (0, 0)}
    assert reservations.reserve_ahead([]) == []


def test_reservations_made_ahead_after_redis_lost_its_scripts_take_nothing(reservations,
                                                                           redis_client):
    built(reservations, a=(0, 0))
    redis_client.script_flush()

    assert reservations.reserve_ahead([[request("a", 100)], [request("a", 200)]]) == [None, None]

    assert reservations.counters(["a"]) == {"a": (0, 0)}
    # The event then reserves in its turn, which loads the script again.
    assert reservations.reserve([request("a", 100)]).reservation is not None
    assert reservations.counters(["a"]) == {"a": (100, 1)}


def test_release_gives_back_once(reservations):
    built(reservations, a=(0, 0))
    held = reservations.reserve([request("a", 300, budget=1000)]).reservation
    reservations.release(held)
    assert reservations.counters(["a"]) == {"a": (0, 0)}
    held.done = False  # even a second release by mistake gives nothing back twice
    reservations.release(held)
    assert reservations.counters(["a"]) == {"a": (0, 0)}


def test_a_confirmed_reservation_can_no_longer_be_released(reservations):
    built(reservations, a=(0, 0))
    held = reservations.reserve([request("a", 300)]).reservation
    reservations.confirm(held)
    held.done = False
    reservations.release(held)
    assert reservations.counters(["a"]) == {"a": (300, 1)}


def test_a_refund_gives_back_only_when_confirmed(reservations):
    built(reservations, a=(500, 2))
    intent = reservations.intend_refund([request("a", -200, redemptions=-1)])
    assert reservations.counters(["a"]) == {"a": (500, 2)}
    reservations.confirm(intent)
    assert reservations.counters(["a"]) == {"a": (300, 1)}
    intent.done = False
    reservations.confirm(intent)  # a repeated confirmation does not give back twice
    assert reservations.counters(["a"]) == {"a": (300, 1)}


def test_a_refund_that_did_not_commit_gives_nothing_back(reservations):
    built(reservations, a=(500, 2))
    reservations.release(reservations.intend_refund([request("a", -200)]))
    assert reservations.counters(["a"]) == {"a": (500, 2)}


def test_amounts_beyond_32_bits_stay_exact(reservations):
    big = 100_000_000_000  # 1,000,000,000.00 in minor units
    built(reservations, a=(big, 0))
    held = reservations.reserve([request("a", big + 7, budget=3 * big)]).reservation
    assert reservations.counters(["a"]) == {"a": (2 * big + 7, 1)}
    reservations.release(held)
    assert reservations.counters(["a"]) == {"a": (big, 0)}
    built(reservations, a=(3 * big + 1, 5))
    assert reservations.counters(["a"]) == {"a": (3 * big + 1, 5)}


# -- reconciliation -------------------------------------------------------------------------

def test_reconciliation_keeps_what_is_in_flight(reservations):
    built(reservations, a=(0, 0))
    in_flight = reservations.reserve([request("a", 300)]).reservation
    assert in_flight is not None
    # The ledger has 1000 committed (say a crash lost a confirmation): counter = ledger + 300.
    built(reservations, a=(1000, 4))
    assert reservations.counters(["a"]) == {"a": (1300, 5)}


def test_reconciliation_counts_confirmations_after_its_clock_reading(reservations):
    built(reservations, a=(0, 0))
    t0 = reservations.clock_ms()
    time.sleep(0.002)
    late = reservations.reserve([request("a", 300)]).reservation
    reservations.confirm(late)  # committed after the ledger was read: not in the sums
    assert reservations.rebuild(t0, {"a": (1000, 4)}) == 1
    assert reservations.counters(["a"]) == {"a": (1300, 5)}
    # Read after that confirmation, the ledger has it, and it is not counted again. (One
    # confirmed in the very millisecond of the clock reading would be: upwards, safely.)
    time.sleep(0.002)
    built(reservations, a=(1300, 5))
    assert reservations.counters(["a"]) == {"a": (1300, 5)}


def test_reconciliation_drops_reservations_past_deadline_and_grace(redis_client, redis_prefix):
    short = Reservations(redis_client, prefix=redis_prefix, ttl_ms=100, grace_ms=100,
                         program_id=PROGRAM)
    built(short, a=(0, 0))
    abandoned = short.reserve([request("a", 300)]).reservation  # its worker was killed
    assert abandoned is not None
    built(short, a=(0, 0))
    assert short.counters(["a"]) == {"a": (300, 1)}  # still within deadline + grace
    time.sleep(0.25)
    built(short, a=(0, 0))
    assert short.counters(["a"]) == {"a": (0, 0)}


def test_reconciliation_discards_unconfirmed_refunds(reservations):
    built(reservations, a=(500, 2))
    intent = reservations.intend_refund([request("a", -200, redemptions=-1)])
    built(reservations, a=(300, 1))  # the ledger already has the refund
    reservations.confirm(intent)  # so its confirmation must not give back again
    assert reservations.counters(["a"]) == {"a": (300, 1)}


def test_reconciliation_refuses_a_stale_ledger_reading(redis_client, redis_prefix):
    quick = Reservations(redis_client, prefix=redis_prefix, ttl_ms=5000, grace_ms=1000,
                         program_id=PROGRAM, keep_confirmed_ms=50)
    built(quick, a=(0, 0))
    t0 = quick.clock_ms()
    time.sleep(0.1)  # confirmations since t0 may have been pruned by now
    assert quick.rebuild(t0, {"a": (999, 9)}) == -1
    assert quick.counters(["a"]) == {"a": (0, 0)}


def test_only_missing_leaves_built_counters_alone(reservations):
    built(reservations, a=(7, 1))
    assert reservations.rebuild(reservations.clock_ms(), {"a": (0, 0), "b": (3, 1)},
                                only_missing=True) == 1
    assert reservations.counters(["a", "b"]) == {"a": (7, 1), "b": (3, 1)}


# -- a Redis that lost its data -----------------------------------------------------------

def test_after_a_data_loss_nothing_is_reserved_until_settled(redis_client, redis_prefix):
    redis_client.delete(f"{redis_prefix}:epoch")  # as after a restart without persistence
    settling = Reservations(redis_client, prefix=redis_prefix, ttl_ms=150, grace_ms=150,
                            program_id=PROGRAM)
    with pytest.raises(NotReady) as first:
        settling.reserve([request("a", 1)])
    assert first.value.retry_after_ms == 300
    with pytest.raises(NotReady) as second:
        settling.reserve([request("a", 1)])
    assert 0 < second.value.retry_after_ms <= 300
    with pytest.raises(NotReady):
        settling.rebuild(settling.clock_ms(), {"a": (0, 0)})
    time.sleep(0.35)
    assert settling.reserve([request("a", 1)]).missing == {"a"}
    built(settling, a=(40, 2))
    assert settling.reserve([request("a", 1)]).reservation is not None
    assert settling.counters(["a"]) == {"a": (41, 3)}


def test_many_threads_never_take_one_over_the_budget(reservations):
    built(reservations, a=(0, 0), b=(0, 0))
    granted = []

    def worker():
        for _ in range(25):
            outcome = reservations.reserve([request("a", 7, budget=700),
                                            request("b", 1, max_redemptions=1000)])
            if outcome.reservation is not None:
                granted.append(outcome.reservation)
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 100  # 700 / 7, out of 400 attempts
    assert reservations.counters(["a", "b"]) == {"a": (700, 100), "b": (100, 100)}


def test_one_worker_at_a_time_builds_missing_counters(reservations, redis_client, redis_prefix):
    first = reservations.try_build()
    assert first is not None
    assert reservations.try_build() is None  # the others answer 503 meanwhile
    assert 0 < redis_client.pttl(f"{redis_prefix}:building") <= 30_000
    reservations.built("not-the-token")  # a late worker whose lock expired frees nothing
    assert reservations.try_build() is None
    reservations.built(first)
    assert reservations.try_build() is not None


# -- one prefix, one program ----------------------------------------------------------------

def test_a_prefix_belongs_to_the_first_program_that_reserves(reservations, redis_client,
                                                             redis_prefix):
    built(reservations, a=(0, 0))
    assert redis_client.get(f"{redis_prefix}:owner") == b"program-a"
    other = Reservations(redis_client, prefix=redis_prefix, ttl_ms=5000, grace_ms=1000,
                         program_id=lambda: "program-b")
    with pytest.raises(ForeignPrefix) as refused:
        other.reserve([request("a", 100)])
    assert refused.value.retry_after_ms == 60_000
    assert str(refused.value) == (
        f"the Redis prefix {redis_prefix} holds the counters of another program database "
        "(program id program-a; this database's is program-b): give each database a "
        "PROMO_REDIS_PREFIX of its own")
    # Nor may it rebuild the counters from its own ledger, below what program a spent.
    with pytest.raises(ForeignPrefix):
        other.rebuild(other.clock_ms(), {"a": (0, 0)})
    assert reservations.reserve([request("a", 100)]).reservation is not None
    assert reservations.counters(["a"]) == {"a": (100, 1)}


def test_after_a_data_loss_the_prefix_is_claimed_again(reservations, redis_client, redis_prefix):
    built(reservations, a=(0, 0))
    redis_client.delete(f"{redis_prefix}:owner", f"{redis_prefix}:usage:a")
    other = Reservations(redis_client, prefix=redis_prefix, ttl_ms=5000, grace_ms=1000,
                         program_id=lambda: "program-b")
    assert other.reserve([request("a", 1)]).missing == {"a"}  # claimed, counter not built
    assert redis_client.get(f"{redis_prefix}:owner") == b"program-b"
    with pytest.raises(ForeignPrefix):
        reservations.reserve([request("a", 1)])


def test_the_program_id_is_read_once(redis_client, redis_prefix):
    reads = []

    def program_id():
        reads.append(1)
        return "program-a"

    once = Reservations(redis_client, prefix=redis_prefix, ttl_ms=5000, grace_ms=1000,
                        program_id=program_id)
    built(once, a=(0, 0))
    for _ in range(3):
        assert once.reserve([request("a", 1)]).reservation is not None
    assert len(reads) == 1
