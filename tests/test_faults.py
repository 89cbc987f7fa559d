"""Faults injected while a real server (`promo-engine serve --workers 3`, gunicorn) is under
load from two wallet "hosts" that keep sending payments and retry an event, with the same
body, on 503 and on connection errors until it is answered, as a real wallet does:

a. Redis stopped (SHUTDOWN NOSAVE) and started again empty;
b. PostgreSQL restarted;
c. a worker killed with SIGKILL while requests are in flight.

Afterwards every answer is checked against the ledger (concurrent_wallets.check_answers):
every event answered in the end, the same body for every 2xx of one event, one ledger set
per event holding exactly the rewards its answer listed, nothing half-written; budgets and
limits never exceeded and equal to what the answers granted; Redis's counters never below
the ledger, and equal to it after `promo-engine reconcile`.

Each test runs its own private redis-server or PostgreSQL cluster where it stops one, and
otherwise its own database and Redis key prefix on the shared ones.
"""
from __future__ import annotations

import multiprocessing
import shutil
import time

import pytest

from concurrent_wallets import (ANSWERED, ANSWERED_CAMPAIGN, ANSWERED_PLAIN, PLAIN_MERCHANT,
                                PROGRESS_SLOTS, UNAVAILABLE, campaign_totals,
                                check_answers, run_http_stream)
from conftest import TEST_REDIS_URL, service_missing
from processes import (LedgerView, PrivatePostgres, PrivateRedis, Processes, Server,
                       check_redis_counters, deploy, service_env, wait_until)
from wallet import OPEN_RANGE

pytestmark = [pytest.mark.slow, pytest.mark.services]

HOSTS = 2
THREADS = 8  # per host
IN_FLIGHT = HOSTS * THREADS  # at most this many requests at any moment
WORKERS = 3
# The per-client rate limit stays on (it counts in Redis too), far above this load.
RATE_LIMIT = "100000/second"
TTL_MS, GRACE_MS = 1000, 1000  # short, so the settle period after a Redis restart is too
SETTLE = (TTL_MS + GRACE_MS) / 1000

CAMPAIGNS = f"""
id: early
type: holiday_discount
merchants: [m_early]
{OPEN_RANGE}budget: {{amount: "20.00"}}
params: {{amount_off: "1.00"}}
---
id: late
type: holiday_discount
merchants: [m_late]
{OPEN_RANGE}budget: {{amount: "100.00"}}
params: {{amount_off: "1.00"}}
---
id: limited
type: points_multiplier
merchants: [m_limited]
{OPEN_RANGE}limits: {{max_redemptions: 60}}
params: {{multiplier: 2}}
"""
CAMPAIGN_IDS = ("early", "late", "limited")
BUDGETS = {"early": 2000, "late": 10000}  # minor units
MAX_REDEMPTIONS = {"limited": 60}


class Load:
    """HOSTS stream hosts (concurrent_wallets.run_http_stream), each with its own API
    client, until `finish`."""

    def __init__(self, base: str, clients):
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.progress = context.Array("q", PROGRESS_SLOTS)
        self.results = context.Queue()
        self.hosts = [context.Process(target=run_http_stream,
                                      args=(base, key_id, secret, f"h{n}", THREADS, self.stop,
                                            self.progress, self.results))
                      for n, (key_id, secret) in enumerate(clients)]
        for host in self.hosts:
            host.start()

    def wait_for(self, index: int, more: int, timeout: float, what: str) -> None:
        """Until the count at `index` has grown by `more`."""
        target = self.progress[index] + more
        wait_until(lambda: self.progress[index] >= target, timeout, what, 0.05)

    def finish(self, timeout: float = 90) -> list[tuple]:
        """Stops sending new events; every host finishes (answers) the ones it has."""
        self.stop.set()
        answers = []
        for _ in self.hosts:
            answers += self.results.get(timeout=timeout)
        for host in self.hosts:
            host.join(timeout=10)
        return answers

    def close(self) -> None:
        self.stop.set()
        for host in self.hosts:
            if host.is_alive():
                host.kill()
            host.join(timeout=10)


def campaign_event(body: dict) -> bool:
    return body["merchant_id"] != PLAIN_MERCHANT


def attempts_in(answers, started_after: float, ended_before: float):
    """(body, attempt) for every attempt made wholly inside the window."""
    return [(body, a) for _, body, attempts in answers for a in attempts
            if a["started"] > started_after and a["ended"] < ended_before]


def check_ledger(answers, ledger: LedgerView) -> dict:
    """The invariants every fault must keep, against the ledger."""
    accepted = check_answers(ledger.events(), answers)
    sums = ledger.campaign_sums()
    totals = campaign_totals(accepted)
    for campaign_id in CAMPAIGN_IDS:
        assert sums.get(campaign_id, (0, 0))[0] == totals.get(campaign_id, 0), campaign_id
    for campaign_id, budget in BUDGETS.items():
        assert sums.get(campaign_id, (0, 0))[0] <= budget, (campaign_id, sums)
    for campaign_id, most in MAX_REDEMPTIONS.items():
        assert sums.get(campaign_id, (0, 0))[1] <= most, (campaign_id, sums)
    assert all(a["retry_after"] and a["retry_after"].isdigit() and int(a["retry_after"]) >= 1
               for _, _, attempts in answers for a in attempts if a["status"] == 503)
    return accepted


def counters_match_ledger(env, tmp_path, redis_url, prefix, ledger) -> None:
    """With Redis (a `prefix`): once every reservation's deadline and grace have passed,
    reconciliation brings its counters back to the ledger (a killed or cut-off
    transaction's reservation may hold a counter above it until then, never below).
    Without: the database's usage rows are the guard itself, exact whatever happened."""
    sums = ledger.campaign_sums()
    expected = {c: sums.get(c, (0, 0)) for c in CAMPAIGN_IDS}
    if prefix is None:
        assert ledger.usage_rows() == expected
        return
    import redis
    time.sleep(SETTLE + 0.2)
    client = redis.Redis.from_url(redis_url)
    try:
        before = check_redis_counters(env, tmp_path, client, prefix, ledger, CAMPAIGN_IDS)
    finally:
        client.close()
    print(f"Redis counters before reconciliation {before}, ledger {expected}")


def warm_up(load: Load, ledger: LedgerView) -> None:
    """Load running, and the small budget spent (so a fault that loses counters would show
    as overspending it)."""
    load.wait_for(ANSWERED, 30, 30, "30 events answered before the fault")
    wait_until(lambda: ledger.campaign_sums().get("early", (0, 0))[0] == BUDGETS["early"], 30,
               "the early budget spent", 0.2)


def stats(answers) -> str:
    every = [a for _, _, attempts in answers for a in attempts]
    statuses: dict = {}
    for a in every:
        statuses[a["status"]] = statuses.get(a["status"], 0) + 1
    return f"{len(answers)} events, {len(every)} attempts: {statuses}"


@pytest.fixture
def processes():
    with Processes() as stack:
        yield stack


@pytest.fixture(params=["redis", "database"])
def counters(request):
    """Where campaign counters are kept: Redis (the key prefix of this test's own in the
    shared Redis) or the database (None: no REDIS_URL)."""
    return request.getfixturevalue("redis_prefix") if request.param == "redis" else None


def fault_env(database_url: str, prefix: str | None, redis_url: str = TEST_REDIS_URL) -> dict:
    if prefix is None:
        return service_env(database_url, PROMO_API_RATE_LIMIT=RATE_LIMIT)
    return service_env(database_url, redis_url=redis_url, redis_prefix=prefix,
                       PROMO_RESERVATION_TTL_MS=TTL_MS, PROMO_RESERVATION_GRACE_MS=GRACE_MS,
                       PROMO_API_RATE_LIMIT=RATE_LIMIT)


def test_redis_stopped_and_restarted_empty_mid_load(processes, postgres_url, tmp_path):
    if shutil.which("redis-server") is None:
        service_missing("redis-server", "not on PATH")
    redis = processes.add(PrivateRedis()).start()
    prefix = "{t-faults}"  # a Redis of this test's own
    env = fault_env(postgres_url, prefix, redis.url)
    clients = deploy(env, tmp_path, CAMPAIGNS, clients=HOSTS)
    ledger = processes.add(LedgerView(postgres_url))
    server = processes.add(Server(env, tmp_path, workers=WORKERS)).start()
    load = processes.add(Load(server.base, clients))
    warm_up(load, ledger)

    redis.shutdown_nosave()
    down = time.time()
    # more than could have been in flight when it stopped, so some were sent after
    load.wait_for(UNAVAILABLE, IN_FLIGHT + 4, 20, "503s while Redis is down")
    load.wait_for(ANSWERED_PLAIN, IN_FLIGHT + 4, 20,
                  "base-points events answered while Redis is down")
    up = time.time()
    redis.start()  # empty: no persistence
    load.wait_for(ANSWERED_CAMPAIGN, 20, 30, "campaign events answered after the restart")
    # with luck (the machine's speed) the late budget runs out on the rebuilt counters
    wait_until(lambda: ledger.campaign_sums().get("late", (0, 0))[0] == BUDGETS["late"]
               or time.time() > up + 8, 15, "the late budget spent, or 8 s")
    answers = load.finish()
    print(stats(answers), server.log_text().count("could not"), "Redis warnings in the log")

    outage = attempts_in(answers, down, up)
    assert any(a["status"] == 503 for body, a in outage if campaign_event(body))
    # base points need no reservation: they are still granted
    assert any(a["status"] == 201 for body, a in outage if not campaign_event(body))
    # nothing that needs a reservation is accepted until the settle period after the restart
    early = attempts_in(answers, down, up + SETTLE)
    assert not [a for body, a in early if a["status"] == 201 and campaign_event(body)]
    assert any(a["status"] == 503 for _, a in attempts_in(answers, up, float("inf")))
    assert any(a["status"] == 201 for body, a in attempts_in(answers, up + SETTLE, float("inf"))
               if campaign_event(body))

    check_ledger(answers, ledger)
    assert ledger.campaign_sums()["early"][0] == BUDGETS["early"]
    # A 503 wrote nothing (the database was up): each event's one answer in the end is a 201.
    assert {attempts[-1]["status"] for _, _, attempts in answers} == {201}
    server.assert_no_errors_logged()
    counters_match_ledger(env, tmp_path, redis.url, prefix, ledger)


def test_postgres_restarted_mid_load(processes, tmp_path, counters):
    if PrivatePostgres.missing():
        service_missing("A private PostgreSQL cluster", PrivatePostgres.missing())
    postgres = processes.add(PrivatePostgres()).init()
    env = fault_env(postgres.url, counters)
    clients = deploy(env, tmp_path, CAMPAIGNS, clients=HOSTS)
    ledger = processes.add(LedgerView(postgres.url))
    server = processes.add(Server(env, tmp_path, workers=WORKERS)).start()
    load = processes.add(Load(server.base, clients))
    warm_up(load, ledger)

    postgres.stop("fast")
    down = time.time()
    load.wait_for(UNAVAILABLE, IN_FLIGHT + 4, 20, "503s while PostgreSQL is down")
    time.sleep(max(0.0, down + 1.5 - time.time()))
    up = time.time()
    postgres.start()
    load.wait_for(ANSWERED, 40, 30, "events answered after PostgreSQL is back")
    load.wait_for(ANSWERED_CAMPAIGN, 10, 30, "campaign events answered after PostgreSQL is back")
    answers = load.finish()
    print(stats(answers))

    outage = attempts_in(answers, down, up)
    assert any(a["status"] == 503 for _, a in outage)
    assert not [a for _, a in outage if a["status"] == 201]  # nothing new without the ledger
    assert any(a["status"] == 201 for _, a in attempts_in(answers, up, float("inf")))

    check_ledger(answers, ledger)  # includes: no event row without its response and rewards
    counters_match_ledger(env, tmp_path, TEST_REDIS_URL, counters, ledger)
    server.assert_no_errors_logged()


def test_worker_killed_mid_request(processes, postgres_url, tmp_path, counters):
    env = fault_env(postgres_url, counters)
    clients = deploy(env, tmp_path, CAMPAIGNS, clients=HOSTS)
    ledger = processes.add(LedgerView(postgres_url))
    server = processes.add(Server(env, tmp_path, workers=WORKERS)).start()
    load = processes.add(Load(server.base, clients))
    warm_up(load, ledger)

    killed = []
    for _ in range(2):
        load.wait_for(ANSWERED, 20, 30, "events answered before the kill")
        workers = server.worker_pids()
        victim = workers[len(killed) % len(workers)]
        server.kill_worker(victim)
        killed.append(victim)
        wait_until(lambda: len(server.worker_pids()) == WORKERS
                   and not set(killed) & set(server.worker_pids()), 30,
                   "gunicorn to replace the killed worker", 0.1)
    load.wait_for(ANSWERED_CAMPAIGN, 20, 30, "campaign events answered after the kills")
    answers = load.finish()
    print(stats(answers))

    # the requests in flight on the killed workers failed at the client, and were retried
    cut = [(body, attempts) for _, body, attempts in answers
           if any(a["status"] is None for a in attempts)]
    assert cut, "no request failed at the client: nothing was in flight on the killed workers"
    retried = {attempts[-1]["status"] for _, attempts in cut}
    print(f"{len(cut)} events cut off and retried; their final answers: {retried}")
    assert retried <= {200, 201}

    check_ledger(answers, ledger)
    counters_match_ledger(env, tmp_path, TEST_REDIS_URL, counters, ledger)
    assert server.log_text().count("Booting worker") == WORKERS + len(killed)
    server.assert_no_errors_logged()
