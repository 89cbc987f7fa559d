#!/usr/bin/env python
"""Past one machine: what one Redis key of a hot campaign's budget can take, measured on
this machine, and a simulation of many workers calibrated from it (docs/scaling.md).

Measured (real Redis, client processes, see `bench/scale_measure.py`): budget reservations
(a reservation and its confirmation per event) on one campaign,

* one round trip per script, as the workers do: today's scripts (`Reservations`) with 1
  and 2 client processes, and the same over 4 sub-budgets (`bench/scale_budget.py`);
* pipelined, to push a Redis server to its limit: today's scripts with 1 and 2 clients,
  4 sub-budgets on the same server, and 4 sub-budgets over two servers (a second
  redis-server started by the benchmark, as a second shard).

Every figure is printed as a ratio against the first row of its table, measured in the
same run. Redis's CPU per event (from `INFO cpu`) is what bounds one shard.

Simulated (`bench/scale_sim.py`, seeded): worker processes, PostgreSQL with per-user row
locks and Redis shards, costs from docs/performance.md and Redis's CPU per event measured
above: events/s at 1, 2, 4, 8 and 16 workers with the hot campaign on one key and on 4
sub-budgets, as ratios to 1 worker; then 64-512 workers, where one key stops the growth.

    .venv/bin/python bench/scale.py               # 3 s phases, full simulation: about 1 min
    .venv/bin/python bench/scale.py --quick       # smoke mode: about 15 s
    .venv/bin/python bench/scale.py --sim-only    # the simulation alone, default costs

Redis: `--redis-url` (default $PROMO_BENCH_REDIS_URL or redis://127.0.0.1:6379/7), keys
under a prefix of its own, deleted at the end. Exit status 0 when every phase ran.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import scale_sim as sim
from machine import cpu_model, print_load_average, python_note
from processes import free_port
from scale_measure import ExtraRedis, Measured, Phase, cpus, run_phase

REDIS_URL = os.environ.get("PROMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
SUB_BUDGETS = 4
DEPTH = 32  # events per pipeline in the pipelined phases


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default=REDIS_URL)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each measured phase")
    p.add_argument("--sim-seconds", type=float, default=0.6, help="simulated time per point")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--quick", action="store_true", help="0.5 s phases, short simulation")
    p.add_argument("--sim-only", action="store_true", help="skip the measured phases")
    p.add_argument("--no-second-server", action="store_true",
                   help="skip the phase that starts a second redis-server")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.sim_seconds = 0.5, 0.15
    return args


def measured_tables(args) -> list[Measured]:
    url = args.redis_url
    one = (url,)
    plain = [Phase("today's scripts, one key", "today", 1, one),
             Phase("today's scripts, one key", "today", 2, one),
             Phase(f"{SUB_BUDGETS} sub-budgets, one server", "split", 1, one, SUB_BUDGETS),
             Phase(f"{SUB_BUDGETS} sub-budgets, one server", "split", 2, one, SUB_BUDGETS)]
    piped = [Phase("today's scripts, one key", "today_pipelined", 1, one, 1, DEPTH),
             Phase("today's scripts, one key", "today_pipelined", 2, one, 1, DEPTH),
             Phase(f"{SUB_BUDGETS} sub-budgets, one server", "split_pipelined", 2, one,
                   SUB_BUDGETS, DEPTH)]
    results = []
    print("\nOne round trip per script, as a worker reserves and confirms "
          "(events = reservation + confirmation):")
    results += _table([run_phase(p, args.seconds, args.seed) for p in plain])
    extra = None
    if not args.no_second_server:
        try:
            extra = ExtraRedis(free_port("127.0.0.1"))
        except (OSError, RuntimeError) as exc:
            print(f"(no second redis-server: {exc})")
    try:
        if extra is not None:
            piped.append(Phase(f"{SUB_BUDGETS} sub-budgets, two servers", "split_pipelined", 2,
                               (url, extra.url), SUB_BUDGETS, DEPTH))
        print(f"\nPipelined, {DEPTH} events per round trip, to push a Redis server to its limit:")
        results += _table([run_phase(p, args.seconds, args.seed) for p in piped])
    finally:
        if extra is not None:
            extra.stop()
    return results


def _table(rows: list[Measured]) -> list[Measured]:
    base = rows[0].per_s
    print(f"{'what':<38}{'clients':>8}{'events/s':>11}{'/ row 1':>9}"
          f"{'Redis us/ev':>13}{'client us/ev':>14}{'Redis cores':>13}")
    for m in rows:
        print(f"{m.phase.name:<38}{m.phase.clients:>8}{m.per_s:>11,.0f}{m.per_s / base:>9.2f}"
              f"{m.server_us:>13.1f}{m.client_us:>14.1f}{m.server_cpu / m.seconds:>13.2f}")
    return rows


def calibrated_costs(results: list[Measured]) -> tuple[sim.Costs, str]:
    """Default costs, with Redis's server time per event measured in this run, and a line
    saying which. The pipelined figure of today's scripts (1 client): a shard near its limit
    serves many ready connections per turn of its event loop, which amortises the loop's
    cost as a pipeline does, though each command still pays its own read and write, so this
    is the optimistic end; one command per wake-up (the unpipelined phases, Redis mostly
    idle) is the pessimistic one, printed beside it. Split between the reservation and the
    confirmation as their script sizes are, 4:3."""
    costs = sim.Costs()
    piped = [m for m in results if m.phase.kind == "today_pipelined" and m.phase.clients == 1]
    plain = [m for m in results if m.phase.kind == "today" and m.phase.clients == 2]
    if not (piped and piped[0].events):
        return costs, "default costs (nothing measured)"
    per_event = piped[0].server_us * 1e-6
    costs = replace(costs, redis_reserve=per_event * 4 / 7, redis_confirm=per_event * 3 / 7)
    note = (f"Redis per event measured above, pipelined: {piped[0].server_us:.1f} us "
            f"(one key: at most {1 / per_event:,.0f} events/s)")
    if plain and plain[0].events:
        note += (f"; one command per wake-up it was {plain[0].server_us:.1f} us (at most "
                 f"{1e6 / plain[0].server_us:,.0f} events/s): the same curves, the knee "
                 f"{plain[0].server_us / piped[0].server_us:.1f}x sooner")
    return costs, note


def simulation(args, costs: sim.Costs, note: str) -> None:
    print(f"\nSimulation (bench/scale_sim.py, seed {args.seed}, {args.sim_seconds:g} s simulated "
          f"per point): worker CPU {costs.worker_cpu * 1e3:.2f} ms/event, PostgreSQL "
          f"{(costs.pg_read + costs.pg_write) * 1e3:.2f} ms/event + {costs.wal_flush * 1e3:.2f} ms "
          f"flush, Redis {costs.redis_reserve * 1e6:.1f} + {costs.redis_confirm * 1e6:.1f} us "
          f"per event on the budget key (one key: at most {sim.key_ceiling(costs):,.0f} events/s)")
    print(note)
    print("\nThis machine's set-up, to check the model: workers, PostgreSQL and Redis on the same "
          "2 cores (bench/load.py measured events/s 1.00 / 1.66 / 1.15 at 1 / 2 / 4 workers in "
          "its latest full run, docs/performance.md; a different run, with its load generator "
          "on the same cores):")
    here = sim.this_machine(costs, seconds=args.sim_seconds, seed=args.seed)
    print(f"{'workers':>8}{'events/s':>10}{'/ 1 worker':>12}{'worker busy':>13}{'PG cores':>10}")
    for r in here:
        print(f"{r.setup.workers:>8}{r.events_per_s:>10,.0f}"
              f"{r.events_per_s / here[0].events_per_s:>12.2f}{r.worker_busy:>13.2f}"
              f"{r.pg_busy * 2:>10.2f}")

    print("\nOne PostgreSQL (16 cores), a core per worker, 8 threads each; every event granted "
          "the same hot campaign:")
    rows = sim.one_host_sweep(costs, seconds=args.sim_seconds, seed=args.seed,
                              sub_budgets=SUB_BUDGETS)
    base = rows[0][0].events_per_s
    print(f"{'workers':>8}{'one key ev/s':>14}{'/ 1 worker':>12}"
          f"{f'{SUB_BUDGETS} subs ev/s':>14}{'/ 1 worker':>12}"
          f"{'worker busy':>13}{'PG busy':>9}{'key busy':>10}")
    for one, split in rows:
        print(f"{one.setup.workers:>8}{one.events_per_s:>14,.0f}{one.events_per_s / base:>12.2f}"
              f"{split.events_per_s:>14,.0f}{split.events_per_s / base:>12.2f}"
              f"{one.worker_busy:>13.2f}{one.pg_busy:>9.2f}{one.hot_shard_busy:>10.2f}")
    ratios = " / ".join(f"{one.events_per_s / base:.2f}" for one, _ in rows)
    print(f"simulated throughput at 1/2/4/8/16 workers, one key, as ratios to 1 worker: {ratios}")

    workers = (32, 128) if args.quick else (64, 128, 256, 512)
    subs = (1, 4, 8)
    print("\nPast one key: PostgreSQL as Citus (a core for every two workers), replay keys "
          "over 8 shards, the hot budget on 1, 4 or 8 sub-budgets (one shard each):")
    print(f"{'workers':>8}" + "".join(f"{f'{k} key(s) ev/s':>16}{'/ 1 worker':>11}{'busiest':>9}"
                                      for k in subs))
    for row in sim.past_one_key_sweep(costs, workers, seconds=args.sim_seconds, seed=args.seed,
                                      sub_budgets=subs):
        print(f"{row[0].setup.workers:>8}" + "".join(
            f"{r.events_per_s:>16,.0f}{r.events_per_s / base:>11.1f}{r.hot_shard_busy:>9.2f}"
            for r in row))


def main(argv=None) -> int:
    args = parse_args(argv)
    print("Past one machine: budget reservations on real Redis, then a simulation of many "
          "workers calibrated from them")
    print(f"{python_note()}, Linux, {cpu_model()}, {cpus()} CPUs")
    print_load_average()
    results = [] if args.sim_only else measured_tables(args)
    costs, note = calibrated_costs(results)
    simulation(args, costs, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
