#!/usr/bin/env python
"""Rule evaluation benchmark: the RulesEngine against a hand-written floor, in one process.

Pure evaluation of payment events (no database, no Flask): campaigns are built directly as
`Campaign` objects, compiled once by `RulesEngine.compile`, and every event goes through
`RulesEngine.evaluate`. The same events go through `Floor`, a plain evaluator of the same
rules written by hand with no framework (campaigns in a dict by merchant, Decimal money):
what a careful programmer would write for exactly these three kinds of campaign. Its
events/s is the floor the engine is measured against.

Before anything is timed, every event's rewards from the engine and from the floor are
compared, and the totals (discount amounts, points) must be identical: the run aborts
otherwise, so the two are known to do the same work.

Two measurements:

* sizes (default 10, 1,000 and 10,000 open campaigns over 1,000 merchants, 3 bank-wide,
  events spread evenly over the merchants): events/s of engine and floor, and the ratio
  engine/floor. Target: at least 0.60 at every size.
* constant candidates: every event has exactly 5 candidate campaigns (4 of its merchant's
  and 1 bank-wide, the same mix of rules everywhere) while the total grows from 10 to
  10,000. Printed twice: over the same 2 merchants at every size (only the total changes;
  target: engine time per event at 10,000 at most 1.2x that at 10), and with the events over
  every merchant that has campaigns (at 10,000 each event visits campaigns that are out of
  the CPU caches, which slows the floor too; target: the engine's growth at most 1.1x the
  floor's).

Timing: time.perf_counter around a plain loop over all events, best of --repeat rounds,
engine and floor of every size of a table interleaved in each round; the garbage collector
is collected before and disabled during each timed loop (--gc keeps it on). The process is
pinned to one CPU when the OS allows it.

    .venv/bin/python bench/evaluate.py             # the figures in docs/performance.md
    .venv/bin/python bench/evaluate.py --quick     # a few seconds, rough figures
    .venv/bin/python bench/evaluate.py --profile 10000   # cProfile of the engine at one size

This file is the command line; the benchmark's parts live beside it: evaluate_data.py (the
merchants, campaigns and events), evaluate_floor.py (`Floor`), evaluate_crosscheck.py (the
engine as compiled here and the check that both give the same rewards), evaluate_timing.py
(the timed loops and rounds) and evaluate_report.py (the tables and their targets).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/evaluate.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.evaluate_crosscheck import Mismatch, compile_engine  # noqa: E402
from bench.evaluate_data import (MERCHANTS, SCALING_CANDIDATES, make_campaigns,  # noqa: E402
                                 make_events, make_merchants)
from bench.evaluate_report import machine_note, print_scaling, print_sizes  # noqa: E402
from bench.evaluate_timing import engine_loop, pin_to_one_cpu, run_scaling, run_sizes  # noqa: E402
from bench.machine import print_load_average  # noqa: E402
from promo_engine.core.campaign_type import UserState  # noqa: E402

SIZES = (10, 1000, 10000)
SCALING_SIZES = (10, 10000)


def profile(size: int, n_events: int, seed: int) -> None:
    import cProfile
    import pstats
    rng = random.Random(seed)
    shops = make_merchants(MERCHANTS, rng)
    engine = compile_engine(make_campaigns(size, shops, rng))
    events = make_events(n_events, shops, random.Random(seed + 1))
    user = UserState(user_id="u_bench")
    profiler = cProfile.Profile()
    profiler.runcall(engine_loop, engine, events, user)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per size (20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds, best kept (7)")
    parser.add_argument("--quick", action="store_true", help="2,000 events, 3 rounds")
    parser.add_argument("--sizes", type=parse_sizes, default=SIZES,
                        help="campaign counts, comma-separated (10,1000,10000)")
    parser.add_argument("--scaling-sizes", type=parse_sizes, default=SCALING_SIZES,
                        help="campaign counts for the constant-candidates run (10,10000)")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector on")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", type=int, metavar="CAMPAIGNS",
                        help="cProfile the engine at this size instead of benchmarking")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 2000, 3
    if not args.no_pin:
        pin_to_one_cpu()
    if args.profile:
        profile(args.profile, args.events, args.seed)
        return 0

    print(f"Rule evaluation, engine vs hand-written floor: {args.events:,} payment events per "
          f"size, best of {args.repeat}, gc {'on' if args.gc else 'off'} while timed")
    print(machine_note())
    print_load_average()
    print()
    try:
        print(f"Events spread over {MERCHANTS:,} merchants, 3 campaigns bank-wide:")
        sizes_ok = print_sizes(run_sizes(args.sizes, args.events, args.repeat, args.gc, args.seed))
        print()
        print(f"Constant candidates: {SCALING_CANDIDATES} per event (4 of the merchant's "
              "+ 1 bank-wide), events over every merchant with campaigns:")
        spread_ok = print_scaling(run_scaling(args.scaling_sizes, args.events, args.repeat,
                                              args.gc, args.seed), "spread", against_floor=True)
        print()
        print(f"Constant candidates: {SCALING_CANDIDATES} per event, events over the same 2 "
              "merchants at every size:")
        same_ok = print_scaling(run_scaling(args.scaling_sizes, args.events, args.repeat,
                                            args.gc, args.seed, spread=False), "same merchants",
                                against_floor=False)
    except Mismatch as exc:
        print(f"\nABORTED: engine and floor disagree: {exc}", file=sys.stderr)
        return 2
    print()
    print("Engine and floor gave identical rewards (per event and in total) at every size.")
    return 0 if (sizes_ok and spread_ok and same_ok) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
