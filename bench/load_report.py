"""What a load run prints: the header (machine, services, scenarios, phases), a line per
phase as it ends, the table of every phase, the summary against the bare floor with the
targets' verdicts, and the outcome (the ledger against the 201s, errors, disturbed phases).

Apart from the run because these are the figures' presentation and the targets' reading:
the run hands over `Phase` results and counts, and gets back the exit status.
docs/performance.md and bench/README.md quote this output; keep it as it is.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from typing import Sequence

from bench.load_phases import Phase
from bench.load_prime import Primed
from bench.load_setup import HOT_MERCHANTS, Database
from bench.machine import cpu_model, print_load_average, python_note

# Targets, checked per worker count; the tail target is stated at
# LOAD_FRACTION of the peak, which is also --load's default.
LOAD_FRACTION = 0.8
TARGET_VS_BARE = 0.50
TARGET_TAIL = 4.0
TARGET_HOT = 0.70


def machine_note(db: Database, redis_version: str) -> str:
    return (f"{python_note()}, "
            f"PostgreSQL {db.server_version} (synchronous_commit {db.settings['synchronous_commit']}, "
            f"fsync {db.settings['fsync']}), Redis {redis_version}, {platform.system()} "
            f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs")


def print_header(args, db: Database, redis_version: str) -> None:
    """What is compared, on what, with which scenarios and phases."""
    print(f"Load benchmark: POST /v1/events on `promo-engine serve --workers N --no-scheduler` "
          f"vs the floor (bench/bare_app.py: parse JSON, one INSERT committed) on the same "
          f"gunicorn, both on PostgreSQL; REDIS_URL {args.redis_url}")
    print(machine_note(db, redis_version))
    print_load_average()
    parts = []
    if "spread" in args.scenario:
        parts.append(f"spread: {args.campaigns} campaigns, one per merchant, events spread over them")
    if "hot" in args.scenario:
        parts.append(f"hot: 1 campaign over {HOT_MERCHANTS} merchants, every event hits it")
    print(f"Scenarios: {'; '.join(parts)}. {args.users:,} users; every event a new payment "
          f"(base points + one 10% discount).")
    print(f"Phases of {args.seconds:g} s: unloaded = 1 connection, closed loop; peak = "
          f"{args.concurrency} connections, closed loop, over {min(args.generators, args.concurrency)} "
          f"generator processes; paced = open loop, {args.arrivals} arrivals at "
          f"{args.load:g} x the peak, {args.paced_connections} connections, latency from the "
          f"scheduled time. Workers: {', '.join(map(str, args.workers))}.")
    print()
    sys.stdout.flush()


def print_progress(result: Phase, run_began: float) -> None:
    """The line of a phase that just ended (its errors first, on stderr)."""
    n, kind, scenario, load = result.workers, result.kind, result.scenario, result.load
    if result.errors:
        print(f"  errors in {kind} {scenario} {load} (N={n}): "
              + ", ".join(f"{k} x{v}" for k, v in result.errors.most_common()),
              file=sys.stderr)
        for sample in result.samples:
            print(f"    e.g. {sample}", file=sys.stderr)
    print(f"  {time.monotonic() - run_began:5.1f}s N={n} {kind:<6} "
          f"{scenario if kind == 'events' else '':<6} {load:<9} "
          f"{result.rate:>8,.0f}/s  p50 {fmt(result.pct(50))} ms  p99 {fmt(result.pct(99))} ms"
          f"{'  errors ' + str(sum(result.errors.values())) if result.errors else ''}",
          flush=True)


def print_primed(primed: Primed, n: int, run_began: float) -> None:
    """What the events server answered before it was ready (start-up, not measured)."""
    before = (", ".join(f"{k} x{v}" for k, v in primed.errors.most_common())
              + (f", e.g. {primed.samples[0]}" if primed.samples else ""))
    print(f"  {time.monotonic() - run_began:5.1f}s N={n} events server: "
          + (f"answered {before} before it answered 201 for each campaign (start-up: "
             f"not measured)" if primed.errors else "201 for each campaign at once"),
          flush=True)


def fmt(value: float, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_phases(phases: Sequence[Phase]) -> None:
    print(f"{'N':>2} {'server':<6} {'scenario':<8} {'load':<15} {'conns':>5} {'requests':>8} "
          f"{'errors':>6} {'ok/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'srv ms/req':>10} {'pg ms/req':>9} {'gen ms/req':>10} {'CPU busy':>8} {'other':>5}")
    for p in phases:
        load = p.load if p.load != "paced" else f"paced {p.target_rate:,.0f}/s"
        print(f"{p.workers:>2} {p.kind:<6} {p.scenario if p.kind == 'events' else '-':<8} "
              f"{load:<15} {p.connections:>5} {p.requests:>8,} {sum(p.errors.values()):>6} "
              f"{p.rate:>8,.0f} {fmt(p.pct(50)):>7} {fmt(p.pct(90)):>7} {fmt(p.pct(99)):>7} "
              f"{fmt(p.pct(100)):>7} {fmt(p.cpu_ms('server')):>10} {fmt(p.cpu_ms('pg')):>9} "
              f"{fmt(p.cpu_ms('generator')):>10} {fmt(100 * p.cpu.get('busy', math.nan), '.0f'):>7}% "
              f"{fmt(100 * p.cpu.get('other', math.nan), '.0f'):>4}%")


def find(phases, workers, kind, load, scenario=None) -> Phase | None:
    for p in phases:
        if p.workers == workers and p.kind == kind and p.load == load and \
                (scenario is None or p.scenario == scenario):
            return p
    return None


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def verdict(value: float, limit: float, at_least: bool) -> str:
    if math.isnan(value):
        return "n/a"
    return "met" if (value >= limit if at_least else value <= limit) else "MISSED"


def summarize(phases: Sequence[Phase], workers: Sequence[int], scenarios: Sequence[str],
              load: float = LOAD_FRACTION) -> list[str]:
    """Prints the summary and the targets; returns the targets missed."""
    main_scenario = scenarios[0]
    print(f"{'N':>2} {'bare req/s':>10} {'events/s':>9} {'/ bare':>7} "
          + (f"{'hot ev/s':>9} {'hot/spread':>10} " if len(scenarios) > 1 else "")
          + f"{'ev p50 unl':>10} {'ev p99 unl':>10} {'ev p50@80%':>10} {'ev p99@80%':>10} "
          f"{'p99@80/p50unl':>13}   {'bare p50 unl':>12} {'bare p99@80%':>12} {'bare ratio':>10}")
    missed: list[str] = []
    rows = []
    for n in workers:
        bare_peak = find(phases, n, "bare", "peak")
        ev_peak = find(phases, n, "events", "peak", main_scenario)
        hot_peak = find(phases, n, "events", "peak", "hot") if len(scenarios) > 1 else None
        ev_unl = find(phases, n, "events", "unloaded", main_scenario)
        ev_paced = find(phases, n, "events", "paced", main_scenario)
        bare_unl = find(phases, n, "bare", "unloaded")
        bare_paced = find(phases, n, "bare", "paced")
        vs_bare = ratio(ev_peak.rate if ev_peak else None, bare_peak.rate if bare_peak else None)
        hot = ratio(hot_peak.rate if hot_peak else None,
                    find(phases, n, "events", "peak", "spread").rate
                    if hot_peak and find(phases, n, "events", "peak", "spread") else None)
        tail = ratio(ev_paced.pct(99) if ev_paced else None, ev_unl.pct(50) if ev_unl else None)
        bare_tail = ratio(bare_paced.pct(99) if bare_paced else None,
                          bare_unl.pct(50) if bare_unl else None)
        rows.append((n, bare_peak, ev_peak, hot_peak, vs_bare, hot, tail))
        print(f"{n:>2} {fmt(bare_peak.rate if bare_peak else math.nan, ',.0f'):>10} "
              f"{fmt(ev_peak.rate if ev_peak else math.nan, ',.0f'):>9} {fmt(vs_bare):>7} "
              + (f"{fmt(hot_peak.rate if hot_peak else math.nan, ',.0f'):>9} {fmt(hot):>10} "
                 if len(scenarios) > 1 else "")
              + f"{fmt(ev_unl.pct(50) if ev_unl else math.nan):>10} "
              f"{fmt(ev_unl.pct(99) if ev_unl else math.nan):>10} "
              f"{fmt(ev_paced.pct(50) if ev_paced else math.nan):>10} "
              f"{fmt(ev_paced.pct(99) if ev_paced else math.nan):>10} {fmt(tail, '.1f'):>12}x"
              f"   {fmt(bare_unl.pct(50) if bare_unl else math.nan):>12} "
              f"{fmt(bare_paced.pct(99) if bare_paced else math.nan):>12} {fmt(bare_tail, '.1f'):>9}x")
    first = rows[0]
    if len(rows) > 1:
        print("Throughput from 1 worker process to N (x the first row):")
        for n, bare_peak, ev_peak, hot_peak, *_ in rows:
            parts = [f"bare {fmt(ratio(bare_peak.rate if bare_peak else None, first[1].rate if first[1] else None))}x",
                     f"events ({main_scenario}) {fmt(ratio(ev_peak.rate if ev_peak else None, first[2].rate if first[2] else None))}x"]
            if hot_peak is not None and first[3] is not None:
                parts.append(f"hot {fmt(ratio(hot_peak.rate, first[3].rate))}x")
            print(f"  N={n}: " + ", ".join(parts))
    # CPU time per request hardly depends on what else runs on the machine; throughput does.
    print("CPU per request at peak, server processes + PostgreSQL (ms): the cost ratio says what "
          "events/s / bare req/s would be where these two are the bottleneck:")
    for n, bare_peak, ev_peak, hot_peak, *_ in rows:
        def cost(p: Phase | None) -> float:
            return p.cpu_ms("server") + p.cpu_ms("pg") if p is not None else math.nan
        parts = [f"bare {fmt(cost(bare_peak))}", f"events ({main_scenario}) {fmt(cost(ev_peak))}"]
        if hot_peak is not None:
            parts.append(f"hot {fmt(cost(hot_peak))}")
        print(f"  N={n}: " + ", ".join(parts) + f"; bare / events {fmt(ratio(cost(bare_peak), cost(ev_peak)))}")
    print()
    print("Targets:")
    for n, _, _, _, vs_bare, hot, tail in rows:
        checks = [(f"events/s >= {TARGET_VS_BARE:.2f} x bare req/s", vs_bare, TARGET_VS_BARE, True, ".2f"),
                  (f"p99 at {100 * load:.0f}% of peak <= {TARGET_TAIL:g} x unloaded p50", tail,
                   TARGET_TAIL, False, ".1f")]
        if len(scenarios) > 1:
            checks.append((f"hot campaign >= {TARGET_HOT:.2f} x spread", hot, TARGET_HOT, True, ".2f"))
        for label, value, limit, at_least, spec in checks:
            state = verdict(value, limit, at_least)
            if state == "MISSED":
                missed.append(f"N={n}: {label}")
            print(f"  N={n}  {label:<46} {fmt(value, spec):>6}  {state}")
    return missed


def print_results(args, phases: list[Phase], warmups: list[Phase], primes: list[Primed],
                  counts: dict, database: str, deleted: int, run_began: float) -> int:
    """Everything after the load: the tables, the targets, the ledger against the 201s
    received, notes and warnings, every error; the run's exit status."""
    scenarios = args.scenario
    print()
    print_phases(phases)
    print()
    print("Against the bare endpoint of the same run (peak = closed loop; unl = unloaded, "
          f"1 connection; @80% = paced at {100 * args.load:.0f}% of the peak; latencies in ms):")
    missed = summarize(phases, args.workers, scenarios, args.load)

    all_phases = phases + warmups
    committed = sum(p.ok for p in all_phases if p.kind == "events") + sum(p.ok for p in primes)
    bare_committed = sum(p.ok for p in all_phases if p.kind == "bare")
    hot_committed = sum(p.ok for p in all_phases if p.kind == "events" and p.scenario == "hot") \
        + sum(p.hot for p in primes)
    print()
    print(f"Ledger: {counts['events']:,} events stored, {committed:,} answered 201 (warm-ups "
          f"and the events sent until the server was ready included); {counts['rewards']:,} "
          f"rewards ({counts['campaign_rewards']:,} from campaigns). Bare: {counts['bare']:,} "
          f"rows, {bare_committed:,} answered 201.")
    print(f"campaign_usage rows: {counts['redemptions']:,} redemptions in all, "
          f"{counts['hot_redemptions']:,} for the hot campaign ({hot_committed:,} hot events); "
          f"where budgets are counted in Redis these rows are rebuilt by the scheduler's "
          f"reconciliation, which a --no-scheduler server does not run.")
    print(f"Database {database} {'kept' if args.keep_db else 'dropped'}; {deleted} Redis keys of "
          f"this run deleted.")
    late = sum(p.late_built for p in all_phases)
    if late:
        print(f"note: {late:,} requests were built during a phase (more than --max-rate "
              f"{args.max_rate}/s were pre-built); raise --max-rate for a leaner generator")
    slow = [p for p in phases if p.load == "paced" and p.lags and p.pct(99, p.lags) > 5]
    for p in slow:
        print(f"note: N={p.workers} {p.kind} paced: p99 of send - scheduled time is "
              f"{p.pct(99, p.lags):.1f} ms (all {p.connections} connections busy, or the "
              f"generator short of CPU); latencies include it")

    disturbed = [p for p in phases if p.cpu.get("other", 0) > 0.10]
    if disturbed:
        worst = max(disturbed, key=lambda p: p.cpu["other"])
        print(f"WARNING: other processes used more than 10% of the machine's CPU in "
              f"{len(disturbed)} of {len(phases)} phases (up to {100 * worst.cpu['other']:.0f}%, "
              f"N={worst.workers} {worst.kind} {worst.load}): those figures are disturbed; "
              f"run again on a quiet machine")
    failed = False
    sys.stdout.flush()
    for p in all_phases:
        if p.errors:
            failed = True
            print(f"ERRORS: N={p.workers} {p.kind} {p.scenario} {p.load}: "
                  + ", ".join(f"{k} x{v}" for k, v in p.errors.most_common()), file=sys.stderr)
            for sample in p.samples:
                print(f"  e.g. {sample}", file=sys.stderr)
    if counts["events"] != committed or counts["bare"] != bare_committed:
        failed = True
        print(f"LEDGER MISMATCH: {counts['events']} events stored for {committed} answered 201; "
              f"{counts['bare']} bare rows for {bare_committed}", file=sys.stderr)
    if not failed:
        print("Every response was checked: all succeeded (201, the event echoed, the campaign's "
              "reward granted), and the database holds exactly the events answered 201.")
    if missed:
        print(f"targets missed: {len(missed)} ({'; '.join(missed)})")
    else:
        print("targets: all met")
    print(f"(the run took {time.monotonic() - run_began:.0f} s)")
    return 1 if failed or (args.check and missed) else 0
