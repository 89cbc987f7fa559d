"""The concurrency tests of the rules core (test_concurrency.py), repeated as production runs
them: a real `promo-engine serve --workers 3` (gunicorn) on PostgreSQL, with Redis holding
the campaign counters (and, once more, without Redis: the database guard), and two "hosts"
of wallet clients, each a process of its own with many threads on their own connections,
each host with API credentials of its own wherever idempotency allows.

Exactly-once events, exact budgets and limits, and refunds that give budget back exactly
once, checked against the ledger tables, and Redis's counters against the ledger after
`promo-engine reconcile`.
"""
from __future__ import annotations

import json
import multiprocessing

import pytest

from concurrent_wallets import (campaign_totals, check_answers, reward_value, run_http_burst)
from conftest import TEST_REDIS_URL
from processes import (LedgerView, Processes, Server, check_redis_counters, deploy,
                       service_env)
from wallet import OPEN_RANGE, payment, refund

pytestmark = [pytest.mark.slow, pytest.mark.services]

HOSTS = 2
WORKERS = 3


class Deployment:
    """A database, on Redis under `prefix` if given; once `start`ed with campaigns, the
    server and one API client per host."""

    def __init__(self, database_url: str, prefix: str | None, tmp_path, processes: Processes):
        self.prefix = prefix
        self.tmp_path = tmp_path
        self.processes = processes
        self.env = service_env(database_url, redis_url=TEST_REDIS_URL if prefix else None,
                               redis_prefix=prefix)
        self.ledger = processes.add(LedgerView(database_url))
        self.clients: list[tuple[str, str]] = []
        self.server: Server | None = None

    def start(self, yaml_text: str) -> None:
        self.clients = deploy(self.env, self.tmp_path, yaml_text, clients=HOSTS)
        self.server = self.processes.add(Server(self.env, self.tmp_path, workers=WORKERS)).start()

    def fire(self, shares: list[list[dict]], *, one_client: bool = False) -> list[tuple]:
        """Host n sends shares[n], one thread per body, all hosts released together, with
        its own API client (with `one_client`, every host with the first one). Returns
        (key id, body, attempts) per body."""
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(len(shares))
        results = context.Queue()
        keys = [self.clients[0 if one_client else n] for n in range(len(shares))]
        hosts = [context.Process(target=run_http_burst,
                                 args=(self.server.base, key_id, secret, share, len(share),
                                       barrier, results))
                 for (key_id, secret), share in zip(keys, shares)]
        for host in hosts:
            host.start()
        try:
            collected = [results.get(timeout=120) for _ in hosts]
        finally:
            for host in hosts:
                host.join(timeout=30)
                if host.is_alive():
                    host.kill()
        assert [host.exitcode for host in hosts] == [0] * len(hosts)
        answers = [answer for host_answers in collected for answer in host_answers]
        # A 503 (say, a reservation outlived on an overloaded machine) is retried like a
        # connection error; any other 5xx is a bug.
        failed = [a for _, _, attempts in answers for a in attempts
                  if (a["status"] or 0) >= 500 and a["status"] != 503]
        assert not failed, f"5xx with every service up: {failed[:3]}"
        retried = sum(len(attempts) - 1 for _, _, attempts in answers)
        if retried:
            print(f"{retried} attempts retried (503 or connection error)")
        return answers

    def check(self, answers, campaign_ids) -> dict:
        """Every answer against the ledger, what the answers granted against the ledger's
        sums, and the counters (Redis's, reconciled; or the database guard's) against them."""
        self.server.assert_no_errors_logged()
        accepted = check_answers(self.ledger.events(), answers)
        sums = self.ledger.campaign_sums()
        totals = campaign_totals(accepted)
        for campaign_id in campaign_ids:
            assert sums.get(campaign_id, (0, 0))[0] == totals.get(campaign_id, 0), campaign_id
        expected = {c: sums.get(c, (0, 0)) for c in campaign_ids}
        if self.prefix is None:
            assert self.ledger.usage_rows() == expected  # the guard itself, exact
            return accepted
        from redis import Redis
        client = Redis.from_url(TEST_REDIS_URL)
        try:
            before = check_redis_counters(self.env, self.tmp_path, client, self.prefix,
                                          self.ledger, campaign_ids)
        finally:
            client.close()
        assert None not in before.values()  # every campaign here had rewards reserved
        return accepted


@pytest.fixture(params=["redis", "database"])
def deployment(request, postgres_url, tmp_path):
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else None
    with Processes() as processes:
        yield Deployment(postgres_url, prefix, tmp_path, processes)


def granted(answers, campaign_id: str) -> list[dict]:
    """The rewards of `campaign_id` in the answers (once per event, not per copy)."""
    seen, found = set(), []
    for key_id, body, attempts in answers:
        final = attempts[-1]
        if final["status"] in (200, 201) and (key_id, body["event_id"]) not in seen:
            seen.add((key_id, body["event_id"]))
            found += [r for r in json.loads(final["body"])["rewards"]
                      if r["campaign_id"] == campaign_id]
    return found


def halves(bodies: list) -> list[list]:
    return [bodies[n::HOSTS] for n in range(HOSTS)]


def test_fifty_copies_of_one_event_across_hosts_give_one_set_of_rewards(deployment):
    deployment.start(f"""
id: triple
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 3}}
""")
    # Idempotency is per API client: both hosts send as the same one.
    answers = deployment.fire(halves([payment("evt_same", "100.00")] * 50), one_client=True)
    finals = [attempts[-1] for _, _, attempts in answers]
    assert sorted(a["status"] for a in finals) == [200] * 49 + [201]
    assert len({a["body"] for a in finals}) == 1  # byte-identical
    assert all(a["replayed"] for a in finals if a["status"] == 200)
    body = json.loads(finals[0]["body"])
    assert body["points_balance"] == 300
    assert [r["campaign_id"] for r in body["rewards"]] == [None, "triple"]
    events = deployment.ledger.events()
    assert len(events) == 1
    assert len(next(iter(events.values()))["reward_ids"]) == 2
    deployment.check(answers, ["triple"])


def test_forty_payments_against_a_budget_for_ten_give_exactly_ten(deployment):
    deployment.start(f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "100.00"}}
params: {{amount_off: "10.00"}}
""")
    bodies = [payment(f"p{n}", "50.00", user_id=f"u{n}") for n in range(40)]
    answers = deployment.fire(halves(bodies))
    assert sorted(attempts[-1]["status"] for _, _, attempts in answers) == [201] * 40
    assert len(granted(answers, "tenner")) == 10
    deployment.check(answers, ["tenner"])
    assert deployment.ledger.campaign_sums()["tenner"] == (10000, 10)  # the budget, exactly


def test_per_user_limit_holds_for_one_user_paying_from_both_hosts(deployment):
    deployment.start(f"""
id: thrice
type: holiday_discount
{OPEN_RANGE}limits: {{per_user: 3, per_user_daily: 3}}
params: {{amount_off: "1.00"}}
""")
    bodies = [payment(f"p{n}", "10.00", user_id="same-user") for n in range(24)]
    answers = deployment.fire(halves(bodies))
    assert len(granted(answers, "thrice")) == 3
    balances = sorted(json.loads(attempts[-1]["body"])["points_balance"]
                      for _, _, attempts in answers)
    assert balances == list(range(10, 250, 10))  # each payment saw the one before it
    deployment.check(answers, ["thrice"])
    assert deployment.ledger.rows(
        "SELECT uses FROM user_campaign_usage WHERE campaign_id = 'thrice'") == [(3,)]


def test_max_redemptions_hold_across_hosts_and_workers(deployment):
    deployment.start(f"""
id: first-seven
type: holiday_discount
{OPEN_RANGE}limits: {{max_redemptions: 7}}
params: {{amount_off: "2.00"}}
""")
    bodies = [payment(f"p{n}", "10.00", user_id=f"u{n}") for n in range(32)]
    answers = deployment.fire(halves(bodies))
    assert len(granted(answers, "first-seven")) == 7
    deployment.check(answers, ["first-seven"])
    assert deployment.ledger.campaign_sums()["first-seven"] == (1400, 7)


REFUNDED = 3  # payments each host refunds in full, racing new payments


def test_refunds_racing_payments_give_the_budget_back_exactly_once(deployment):
    deployment.start(f"""
id: refundable
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "100.00"}}
limits: {{max_redemptions: 10}}
params: {{amount_off: "10.00"}}
""")
    # 1. Ten payments take the whole budget (five per host, each host's own client).
    first = [[payment(f"p-{h}-{n}", "50.00", user_id=f"r{h}{n}") for n in range(5)]
             for h in range(HOSTS)]
    answers = deployment.fire(first)
    assert len(granted(answers, "refundable")) == 10

    # 2. Each host refunds three of its payments in full, each refund sent twice (the same
    #    event) and once more under another event id (which must be refused), while ten
    #    new payments per host race for the budget those refunds give back.
    race = []
    for h in range(HOSTS):
        share = []
        for n in range(REFUNDED):
            share += [refund(f"rf-{h}-{n}", f"p-{h}-{n}", "50.00", user_id=f"r{h}{n}")] * 2
            share.append(refund(f"rf-{h}-{n}-again", f"p-{h}-{n}", "50.00", user_id=f"r{h}{n}"))
        share += [payment(f"q-{h}-{m}", "50.00", user_id=f"q{h}{m}") for m in range(10)]
        race.append(share)
    raced = deployment.fire(race)
    for h in range(HOSTS):  # one of the two refunds of a payment was applied, never both
        key_id = deployment.clients[h][0]
        for n in range(REFUNDED):
            outcomes = {body["event_id"]: attempts[-1]["status"] for k, body, attempts in raced
                        if k == key_id and body["event_id"].startswith(f"rf-{h}-{n}")}
            assert sorted(outcomes.values()) in ([201, 422], [200, 422]), outcomes
    reversals = granted(raced, "refundable")
    returned = [r for r in reversals if r.get("reverses")]
    assert sorted(r["amount"] for r in returned) == ["-10.00"] * (REFUNDED * HOSTS)
    in_race = len(reversals) - len(returned)
    assert in_race <= REFUNDED * HOSTS

    # 3. Then payments until the budget is full again: exactly what came back is granted.
    last = [[payment(f"z-{h}-{m}", "50.00", user_id=f"z{h}{m}") for m in range(5)]
            for h in range(HOSTS)]
    after = deployment.fire(last)
    assert in_race + len(granted(after, "refundable")) == REFUNDED * HOSTS
    deployment.check(answers + raced + after, ["refundable"])
    assert deployment.ledger.campaign_sums()["refundable"] == (10000, 10)
    assert sum(reward_value(r) for r in returned) == -1000 * REFUNDED * HOSTS
