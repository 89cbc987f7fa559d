"""The measured half of `bench/scale.py`: client processes driving budget reservations
against real Redis servers for a fixed time, and what each side spent doing it.

One "event" here is what a recorded event asks of Redis for its budget: a reservation and,
after the (absent) commit, its confirmation. Three ways to drive them:

* `today`: `promo_engine.coordination.reservations.Reservations`, the code the workers run
  (the RESERVE and CONFIRM scripts, every key under the one `{prefix}` tag), one round trip
  each, one campaign: the hot key;
* `split`: `bench/scale_budget.py`'s sub-budget scripts, one round trip each, the request
  landing on a random one of N sub-budgets;
* `*_pipelined`: the same scripts sent `depth` events at a time, so that the clients, which
  cost more CPU per script than Redis does, can push a Redis server to its limit.

Clients are separate processes (spawned), started together at an agreed instant; each
counts the events it finished in the timed window and its own CPU time. The Redis servers'
CPU comes from `INFO cpu` before and after.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import redis

from promo_engine.coordination import reservation_scripts as scripts
from promo_engine.coordination.reservations import Request, Reservations

try:
    from bench.scale_budget import SUB_CONFIRM, SUB_RESERVE, SplitBudget
except ImportError:  # run as `python bench/scale.py`: bench/ is on the path
    from scale_budget import SUB_CONFIRM, SUB_RESERVE, SplitBudget

CAMPAIGN = "hot"
HUGE = 10 ** 15  # a budget that never runs dry during a run
PROGRAM_ID = "bench-scale"


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str              # today | split | today_pipelined | split_pipelined
    clients: int
    urls: tuple[str, ...]  # one per shard; sub-budget k lives on urls[k % len(urls)]
    sub_budgets: int = 1
    depth: int = 1


@dataclass(frozen=True)
class Measured:
    phase: Phase
    events: int
    seconds: float
    client_cpu: float      # seconds, all clients
    server_cpu: float      # seconds, all Redis servers of the phase

    @property
    def per_s(self) -> float:
        return self.events / self.seconds

    @property
    def server_us(self) -> float:
        return 1e6 * self.server_cpu / max(self.events, 1)

    @property
    def client_us(self) -> float:
        return 1e6 * self.client_cpu / max(self.events, 1)


def prepare(phase: Phase, prefix: str) -> None:
    """The phase's keys, fresh: today's prefix settled (as a running program's is) and its
    campaign counter built; or the sub-budgets dealt out."""
    clients = [redis.Redis.from_url(u) for u in phase.urls]
    try:
        if phase.kind.startswith("today"):
            c = clients[0]
            c.delete(*(f"{prefix}:{k}" for k in ("inflight", "reservations", "confirmed",
                                                    "owner", f"usage:{CAMPAIGN}")))
            c.set(f"{prefix}:epoch", 0)
            c.hset(f"{prefix}:usage:{CAMPAIGN}", mapping={"s": 0, "r": 0})
        else:
            SplitBudget(clients, CAMPAIGN, phase.sub_budgets, prefix=prefix).create(HUGE)
    finally:
        for c in clients:
            c.close()


def cleanup(urls, prefix: str) -> None:
    for url in urls:
        c = redis.Redis.from_url(url)
        keys = list(c.scan_iter(match=f"*{prefix.strip('{}')}*", count=1000))
        if keys:
            c.delete(*keys)
        c.close()


def server_cpu(urls) -> float:
    total = 0.0
    for url in urls:
        c = redis.Redis.from_url(url)
        info = c.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        c.close()
    return total


def _client(phase: Phase, prefix: str, start_at: float, seconds: float, seed: int, out) -> None:
    clients = [redis.Redis.from_url(u) for u in phase.urls]
    rng = random.Random(seed)
    one = _driver(phase, prefix, clients, rng)
    while time.time() < start_at:
        time.sleep(0.001)
    late = time.time() - start_at  # started after the others: its window was shorter
    cpu0 = time.process_time()
    end, done = start_at + seconds, 0
    while time.time() < end:
        done += one()
    out.put((done, time.process_time() - cpu0, late))


def _driver(phase: Phase, prefix: str, clients, rng):
    """A function doing one round of the phase's work; the events it finished."""
    if phase.kind == "today":
        res = Reservations(clients[0], prefix=prefix, ttl_ms=5000, grace_ms=5000,
                           program_id=lambda: PROGRAM_ID)
        request = [Request(CAMPAIGN, 1, 1, HUGE, None)]

        def one() -> int:
            outcome = res.reserve(request)
            res.confirm(outcome.reservation)
            return 1
        return one
    if phase.kind == "split":
        budget = SplitBudget(clients, CAMPAIGN, phase.sub_budgets, prefix=prefix, rng=rng)

        def one() -> int:
            home, rid = budget.reserve(1)
            budget.confirm(home, rid)
            return 1
        return one
    if phase.kind == "today_pipelined":
        return _today_pipelined(phase, prefix, clients[0])
    return _split_pipelined(phase, prefix, clients, rng)


def _today_pipelined(phase: Phase, prefix: str, client):
    """Today's RESERVE and CONFIRM with the keys and arguments `Reservations` passes, sent
    `depth` events at a time (the scripts by digest, as the workers' confirmations are)."""
    reserve = client.register_script(scripts.RESERVE)
    confirm = client.register_script(scripts.CONFIRM)
    reserve(keys=[f"{prefix}:epoch", f"{prefix}:inflight", f"{prefix}:reservations",
                  f"{prefix}:owner", f"{prefix}:usage:{CAMPAIGN}"],
            args=["r:warm", 0, 10000, "[]", PROGRAM_ID, 0, 0, HUGE, -1])
    confirm(keys=[f"{prefix}:inflight", f"{prefix}:reservations", f"{prefix}:confirmed",
                  f"{prefix}:usage:{CAMPAIGN}"], args=["r:warm", 0, 120000, 0, 0])
    r_keys = [f"{prefix}:epoch", f"{prefix}:inflight", f"{prefix}:reservations",
              f"{prefix}:owner", f"{prefix}:usage:{CAMPAIGN}"]
    c_keys = [f"{prefix}:inflight", f"{prefix}:reservations", f"{prefix}:confirmed",
              f"{prefix}:usage:{CAMPAIGN}"]
    payload = f'[["{CAMPAIGN}",1,1]]'
    tag = uuid.uuid4().hex[:8]
    counter = [0]

    def one() -> int:
        ids = []
        pipe = client.pipeline(transaction=False)
        deadline = time.time_ns() // 1_000_000 + 5000
        for _ in range(phase.depth):
            counter[0] += 1
            rid = f"r:{tag}{counter[0]}"
            ids.append(rid)
            pipe.evalsha(reserve.sha, len(r_keys), *r_keys, rid, deadline, 10000, payload,
                         PROGRAM_ID, 1, 1, HUGE, -1)
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        for rid in ids:
            pipe.evalsha(confirm.sha, len(c_keys), *c_keys, rid, 0, 120000, 1, 1)
        pipe.execute()
        return phase.depth
    return one


def _split_pipelined(phase: Phase, prefix: str, clients, rng):
    """The sub-budget scripts, `depth` events at a time per server, each event on a random
    sub-budget (its server's pipeline). Budgets never run dry here, so no quota moves."""
    budget = SplitBudget(clients, CAMPAIGN, phase.sub_budgets, prefix=prefix, rng=rng)
    shas = [(clients[k % len(clients)].register_script(SUB_RESERVE).sha,
             clients[k % len(clients)].register_script(SUB_CONFIRM).sha)
            for k in range(phase.sub_budgets)]
    for k in range(phase.sub_budgets):  # load the scripts on every server
        budget.confirm(k, "r:none")
        budget._run("reserve", k, [budget.keys[k].budget, budget.keys[k].inflight,
                                   budget.keys[k].payloads], ["r:warm", 0, 0])
    tag = uuid.uuid4().hex[:8]
    counter = [0]

    def one() -> int:
        homes = [rng.randrange(phase.sub_budgets) for _ in range(phase.depth)]
        ids = []
        pipes = [c.pipeline(transaction=False) for c in clients]
        deadline = time.time_ns() // 1_000_000 + 5000
        for k in homes:
            counter[0] += 1
            rid = f"r:{tag}{counter[0]}"
            ids.append(rid)
            keys = budget.keys[k]
            pipes[k % len(clients)].evalsha(shas[k][0], 3, keys.budget, keys.inflight,
                                            keys.payloads, rid, deadline, 1)
        for p in pipes:
            p.execute()
        pipes = [c.pipeline(transaction=False) for c in clients]
        for k, rid in zip(homes, ids):
            keys = budget.keys[k]
            pipes[k % len(clients)].evalsha(shas[k][1], 2, keys.inflight, keys.payloads, rid)
        for p in pipes:
            p.execute()
        return phase.depth
    return one


def run_phase(phase: Phase, seconds: float, seed: int) -> Measured:
    # Today's keys all share the prefix's hash tag, as PROMO_REDIS_PREFIX's braces make
    # them; the sub-budgets' prefix has none, so each one's `{camp:...}` tag is its slot.
    prefix = "bench-scale-" + uuid.uuid4().hex[:8]
    if phase.kind.startswith("today"):
        prefix = "{" + prefix + "}"
    prepare(phase, prefix)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.5  # time for the spawned interpreters to start
    procs = [ctx.Process(target=_client, args=(phase, prefix, start_at, seconds, seed + i, out))
             for i in range(phase.clients)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = server_cpu(phase.urls)
    time.sleep(seconds)
    cpu1 = server_cpu(phase.urls)
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    cleanup(phase.urls, prefix)
    late = max(r[2] for r in results)
    if late > 0.05 * seconds:
        print(f"  (a client started {late:.2f} s late in '{phase.name}': its figure is low)")
    return Measured(phase, sum(r[0] for r in results), seconds,
                    sum(r[1] for r in results), cpu1 - cpu0)


class ExtraRedis:
    """A redis-server of the benchmark's own on a free port (no persistence), stopped by its
    process id at the end: the second shard of the two-shard phase."""

    def __init__(self, port: int):
        self.dir = tempfile.mkdtemp(prefix="bench-scale-redis-")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        client.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
