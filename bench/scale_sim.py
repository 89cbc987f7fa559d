"""A discrete-event simulation (pure Python, seeded) of promo-engine past one machine:
API worker processes, PostgreSQL with per-user row locks, and Redis shards that serialise
every script on their keys. It answers one question the 2-core machine cannot: does
throughput keep growing with workers, and where does one hot campaign's budget key stop it?

What is modelled, per event, in the order `record_event_body` does it (figures from
docs/performance.md, "Where an event's time goes", py-spy of a worker at N=1 peak, 3.77 ms
of worker CPU per event; PostgreSQL 0.8-1.0 ms of CPU per event):

1. worker CPU: HTTP, Flask, signature, body (1.29 ms);
2. Redis replay lookup (a GET on a shard chosen by the event id; 0.17 ms of worker CPU);
3. PostgreSQL round trip 1: the user's row locked (`FOR UPDATE`-like: held until COMMIT)
   and its counters read, 0.5 ms of PostgreSQL CPU; 0.72 ms of worker CPU around it;
4. evaluation and the reservation: one script on the campaign's budget key (its shard
   runs one script at a time), 0.33 ms of worker CPU;
5. round trip 2: the event written and committed (0.4 ms of PostgreSQL CPU, then the WAL
   flush, a wait not CPU), the user's lock released; 0.53 ms of worker CPU;
6. the confirmation: a second script on the same budget key; 0.56 ms of worker CPU
   (confirmation and the rest: rows and the answer).

These are the costs measured before the replay lookup moved into PostgreSQL's read and
confirmations were grouped (docs/performance.md, "Fewer and cheaper round trips"); the
conclusions below do not hang on a tenth of a millisecond either way.

Each worker is one process, so one core: its 8 threads overlap the waits but take turns on
the CPU (the GIL). PostgreSQL is `pg_cores` cores; Redis is a set of shards, each one core
that runs one command at a time. Every event is granted the same hot campaign (the worst
case: a bank-wide campaign), whose budget is one key, or N sub-budgets on N shards
(bench/scale_budget.py): an event lands on a random one. Budgets never run dry here, so no
quota moves; users are drawn uniformly from a million.

Not modelled: the network's bandwidth, PostgreSQL's lock manager and WAL bandwidth, the
load balancer, GC pauses; the figures are a model's, to be read as ratios.
"""
from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, replace

MS = 1e-3
US = 1e-6


@dataclass(frozen=True)
class Costs:
    """Seconds of each step (see the module's docstring for where they come from)."""
    cpu_front: float = 1.29 * MS       # gunicorn, Flask, signature, body
    cpu_replay: float = 0.17 * MS      # the replay lookup's client side
    cpu_read: float = 0.72 * MS        # round trip 1's client side (psycopg pipeline)
    cpu_reserve: float = 0.33 * MS     # evaluation + the reservation's client side
    cpu_write: float = 0.53 * MS       # round trip 2's client side, checkout and return
    cpu_after: float = 0.73 * MS       # confirmation's client side, rows, the answer
    pg_read: float = 0.5 * MS          # PostgreSQL CPU, round trip 1
    pg_write: float = 0.4 * MS         # PostgreSQL CPU, round trip 2 (without the flush)
    wal_flush: float = 0.3 * MS        # the COMMIT's WAL flush: a wait, the lock still held
    rtt: float = 0.1 * MS              # one network round trip
    redis_get: float = 3 * US          # Redis server time of the replay GET
    redis_reserve: float = 12 * US     # ... of the reservation script
    redis_confirm: float = 9 * US      # ... of the confirmation script

    @property
    def worker_cpu(self) -> float:
        return (self.cpu_front + self.cpu_replay + self.cpu_read + self.cpu_reserve
                + self.cpu_write + self.cpu_after)


@dataclass(frozen=True)
class Setup:
    workers: int
    threads: int = 8
    pg_cores: int = 16
    budget_shards: int = 1      # 1: the campaign's budget is one key; N: N sub-budgets
    other_shards: int = 1       # shards for the replay keys (spread by event id)
    users: int = 1_000_000
    # None: every worker, PostgreSQL and Redis shard has cores of its own. A number: they
    # all share that many cores, as on the 2-core machine bench/load.py runs on (a worker
    # still runs one thread at a time, a Redis shard one command at a time).
    shared_cores: int | None = None


class _Server:
    """`units` identical servers in front of one FIFO queue."""
    __slots__ = ("busy_time", "free", "queue", "sim")

    def __init__(self, sim: _Sim, units: int):
        self.sim, self.free, self.queue, self.busy_time = sim, units, deque(), 0.0

    def use(self, proc, duration: float) -> None:
        if self.free:
            self.free -= 1
            self._start(proc, duration)
        else:
            self.queue.append((proc, duration))

    def _start(self, proc, duration: float) -> None:
        self.busy_time += duration
        self.sim.at(self.sim.now + duration, self._finish, proc)

    def _finish(self, proc) -> None:
        self.sim.step(proc)
        if self.queue:
            self._start(*self.queue.popleft())
        else:
            self.free += 1


class _Shared:
    """A worker, PostgreSQL or a Redis shard on cores shared with the others."""
    __slots__ = ("busy_time", "cores", "lock")

    def __init__(self, cores: _Server, lock):
        self.cores, self.lock, self.busy_time = cores, lock, 0.0


class _Sim:
    def __init__(self):
        self.now = 0.0
        self._heap: list = []
        self._seq = 0
        self.locks: dict[int, deque] = {}

    def at(self, when: float, fn, *args) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))

    def run(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            self.now, _, fn, args = heapq.heappop(heap)
            fn(*args)

    def step(self, proc) -> None:
        """Run `proc` to its next wait."""
        while True:
            try:
                what, a, b = next(proc)
            except StopIteration:
                return
            if what == "use":
                a.use(proc, b)
                return
            if what == "delay":
                self.at(self.now + a, self.step, proc)
                return
            if what == "lock":
                waiting = self.locks.get(a)
                if waiting is None:
                    self.locks[a] = deque()
                    continue  # free: go on at once
                waiting.append(proc)
                return
            if what == "unlock":
                waiting = self.locks[a]
                if waiting:
                    self.at(self.now, self.step, waiting.popleft())  # the lock passes on
                else:
                    del self.locks[a]
                continue


@dataclass(frozen=True)
class Result:
    setup: Setup
    events_per_s: float
    worker_busy: float      # mean share of a worker's core in use
    pg_busy: float          # share of PostgreSQL's cores in use
    hot_shard_busy: float   # share of the busiest budget shard in use


def simulate(setup: Setup, costs: Costs = Costs(), *, seconds: float = 0.5,
             warmup: float = 0.1, seed: int = 1) -> Result:
    """Events committed per second in a closed loop (every thread always has an event)."""
    rng = random.Random(seed)
    sim = _Sim()
    if setup.shared_cores is None:
        workers = [_Server(sim, 1) for _ in range(setup.workers)]
        pg = _Server(sim, setup.pg_cores)
        budget = [_Server(sim, 1) for _ in range(setup.budget_shards)]
        others = [_Server(sim, 1) for _ in range(setup.other_shards)]
    else:
        cores = _Server(sim, setup.shared_cores)
        workers = [_Shared(cores, ("gil", w)) for w in range(setup.workers)]
        pg = _Shared(cores, None)
        budget = [_Shared(cores, ("redis", k)) for k in range(setup.budget_shards)]
        others = [_Shared(cores, ("redis", setup.budget_shards + k))
                  for k in range(setup.other_shards)]
    done = [0]
    c, half = costs, costs.rtt / 2

    def event_loop(cpu):
        while True:
            user = rng.randrange(setup.users)
            yield "use", cpu, c.cpu_front
            yield "delay", half, None
            yield "use", others[rng.randrange(len(others))], c.redis_get
            yield "delay", half, None
            yield "use", cpu, c.cpu_replay
            yield "delay", half, None
            yield "lock", user, None
            yield "use", pg, c.pg_read
            yield "delay", half, None
            yield "use", cpu, c.cpu_read
            shard = budget[rng.randrange(len(budget))]
            yield "delay", half, None
            yield "use", shard, c.redis_reserve
            yield "delay", half, None
            yield "use", cpu, c.cpu_reserve
            yield "delay", half, None
            yield "use", pg, c.pg_write
            yield "delay", c.wal_flush, None
            yield "unlock", user, None
            yield "delay", half, None
            yield "use", cpu, c.cpu_write
            yield "delay", half, None
            yield "use", shard, c.redis_confirm
            yield "delay", half, None
            yield "use", cpu, c.cpu_after
            done[0] += 1

    def process(cpu):
        # Shared cores: a step on a worker or a Redis shard first takes that process's
        # own lock (the GIL, Redis's one thread), then a core.
        for what, a, b in event_loop(cpu):
            if what == "use" and isinstance(a, _Shared):
                if a.lock is not None:
                    yield "lock", a.lock, None
                a.busy_time += b
                yield "use", a.cores, b
                if a.lock is not None:
                    yield "unlock", a.lock, None
            else:
                yield what, a, b

    for cpu in workers:
        for _ in range(setup.threads):
            sim.at(rng.random() * c.worker_cpu, sim.step, process(cpu))
    sim.run(warmup)
    start_done = done[0]
    busy0 = ([w.busy_time for w in workers], pg.busy_time, [b.busy_time for b in budget])
    sim.run(warmup + seconds)
    # busy_time counts service when it starts: close enough over thousands of events.
    worker_busy = sum(w.busy_time - b for w, b in zip(workers, busy0[0])) / (len(workers) * seconds)
    pg_busy = (pg.busy_time - busy0[1]) / ((setup.shared_cores or setup.pg_cores) * seconds)
    hot = max(s.busy_time - b for s, b in zip(budget, busy0[2])) / seconds
    return Result(setup, (done[0] - start_done) / seconds, min(worker_busy, 1.0),
                  min(pg_busy, 1.0), min(hot, 1.0))


def this_machine(costs: Costs, workers=(1, 2, 4), *, seconds: float, seed: int) -> list[Result]:
    """bench/load.py's set-up: workers, PostgreSQL and Redis on the same 2 cores (its load
    generator, which takes CPU too, is not modelled)."""
    return [simulate(Setup(workers=n, shared_cores=2), costs, seconds=seconds, seed=seed)
            for n in workers]


def one_host_sweep(costs: Costs, workers=(1, 2, 4, 8, 16), *, seconds: float, seed: int,
                   sub_budgets: int = 4) -> list[tuple[Result, Result]]:
    """(one key, N sub-budgets) at each worker count; PostgreSQL 16 cores, one Redis shard
    for everything else. The answer the brief asks for: does throughput grow with workers."""
    rows = []
    for n in workers:
        base = Setup(workers=n, pg_cores=16)
        rows.append((simulate(base, costs, seconds=seconds, seed=seed),
                     simulate(replace(base, budget_shards=sub_budgets), costs,
                              seconds=seconds, seed=seed)))
    return rows


def past_one_key_sweep(costs: Costs, workers=(64, 128, 256, 512), *, seconds: float,
                       seed: int, sub_budgets=(1, 4, 8)) -> list[list[Result]]:
    """Far past one host: PostgreSQL as a Citus cluster with a core for every two workers
    (the per-user work is single-shard, so it adds up), replay keys over 8 shards, and the
    hot campaign's budget on 1, 4 or 8 sub-budgets: where one key stops the growth."""
    rows = []
    for n in workers:
        base = Setup(workers=n, pg_cores=max(16, n // 2), other_shards=8)
        rows.append([simulate(replace(base, budget_shards=k), costs, seconds=seconds, seed=seed)
                     for k in sub_budgets])
    return rows


def key_ceiling(costs: Costs) -> float:
    """Events/s one budget key can take: one reservation and one confirmation each."""
    return 1.0 / (costs.redis_reserve + costs.redis_confirm)
