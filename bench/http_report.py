"""The HTTP benchmark's report: the tables, the ratios to the baseline endpoints, and the
ledger check that decides the exit status.

The ledger is counted straight from the SQLite file after the server has stopped: it must
hold exactly one event per 201 received, and any request that was not answered as expected
fails the run.
"""
from __future__ import annotations

import math
import os
import platform
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from bench.http_measure import PhaseResult
from bench.http_requests import ENDPOINTS, EVENTS, HEALTHZ, QUOTE
from bench.machine import cpu_model, python_note


def ledger_counts(db_path: Path) -> dict:
    """Straight from the SQLite file, after the server has stopped."""
    conn = sqlite3.connect(db_path)
    try:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        rewards = conn.execute("SELECT count(*) FROM rewards").fetchone()[0]
        usage = dict(conn.execute("SELECT campaign_id, redemptions FROM campaign_usage"))
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        conn.close()
    return {"events": events, "rewards": rewards, "redemptions": usage, "users": users}


def machine_note() -> str:
    return (f"{python_note()}, SQLite {sqlite3.sqlite_version}, {platform.system()} "
            f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs")


def percent(cpu: float | None, seconds: float) -> str:
    return f"{100 * cpu / seconds:.0f}%" if cpu is not None and seconds > 0 else "-"


def print_table(results: Sequence[PhaseResult]) -> None:
    print(f"{'conc':>4}  {'endpoint':<16} {'requests':>8} {'errors':>6} {'ok/s':>8} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv CPU':>7} {'cli CPU':>7}")
    for r in results:
        print(f"{r.concurrency:>4}  {r.endpoint:<16} {r.requests:>8,} {sum(r.errors.values()):>6} "
              f"{r.rate:>8,.0f} {r.percentile(50):>7.2f} {r.percentile(95):>7.2f} "
              f"{r.percentile(99):>7.2f} {r.percentile(100):>7.2f} "
              f"{percent(r.server_cpu, r.seconds):>7} {percent(r.client_cpu, r.seconds):>7}")


def print_ratios(results: Sequence[PhaseResult]) -> None:
    by = {(r.concurrency, r.endpoint): r for r in results}
    print(f"{'conc':>4}  {'events/s':>8} {'/ healthz':>9} {'/ quote':>7}  "
          f"{'events p50':>10} {'/ healthz':>9} {'/ quote':>7}  "
          f"{'srv CPU ms/event':>16} {'/ quote':>7}")
    for conc in sorted({r.concurrency for r in results}):
        ev, hz, qt = by.get((conc, EVENTS)), by.get((conc, HEALTHZ)), by.get((conc, QUOTE))
        if ev is None or hz is None or qt is None:
            continue

        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "-"

        def cpu_ms(r: PhaseResult) -> float:
            return 1000 * r.server_cpu / r.ok if r.server_cpu is not None and r.ok else math.nan

        print(f"{conc:>4}  {ev.rate:>8,.0f} {ratio(ev.rate, hz.rate):>9} {ratio(ev.rate, qt.rate):>7}  "
              f"{ev.percentile(50):>10.2f} {ratio(ev.percentile(50), hz.percentile(50)):>9} "
              f"{ratio(ev.percentile(50), qt.percentile(50)):>7}  "
              f"{cpu_ms(ev):>16.2f} {ratio(cpu_ms(ev), cpu_ms(qt)):>7}")


def print_unloaded(results: Sequence[PhaseResult]) -> None:
    one = {r.endpoint: r for r in results if r.concurrency == 1}
    if all(e in one for e in ENDPOINTS):
        print("Unloaded (concurrency 1) p50 / p99 ms: " + ", ".join(
            f"{e.split()[1]} {one[e].percentile(50):.2f} / {one[e].percentile(99):.2f}"
            for e in ENDPOINTS))


def print_results(results: Sequence[PhaseResult]) -> None:
    """Every phase, then events against the same run's baseline endpoints."""
    print()
    print_table(results)
    print()
    print("Committed events/s and median latency as ratios of the same run's baseline "
          "(srv CPU: worker CPU time per request):")
    print_ratios(results)
    print_unloaded(results)


def check_ledger(results: list[PhaseResult], warmup: PhaseResult | None,
                 db_path: Path) -> int:
    """Prints the ledger against the 201s received and every error; the exit status: 1 when
    any request failed or the ledger does not hold exactly the events answered 201."""
    committed = sum(r.ok for r in results if r.endpoint == EVENTS) + (warmup.ok if warmup else 0)
    ledger = ledger_counts(db_path)
    rewards = Counter()
    for r in results + ([warmup] if warmup else []):
        rewards.update(r.rewards)
    print()
    print(f"Ledger: {ledger['events']:,} events in the database, {committed:,} answered 201 "
          f"(warm-up {warmup.ok if warmup else 0:,} included); {ledger['users']:,} users, "
          f"{ledger['rewards']:,} rewards.")
    per_event = ", ".join(f"{name} {count / committed:.2f}"
                          for name, count in sorted(rewards.items())) if committed else "-"
    print(f"Rewards per committed event: {per_event}")
    print("Campaign redemptions (guarded UPDATEs that succeeded): " + ", ".join(
        f"{k} {v:,}" for k, v in sorted(ledger["redemptions"].items())))

    sys.stdout.flush()
    failed = False
    for r in results + ([warmup] if warmup else []):
        if r.errors:
            failed = True
            print(f"ERRORS: {r.endpoint} at concurrency {r.concurrency}: "
                  + ", ".join(f"{k} x{v}" for k, v in r.errors.most_common()), file=sys.stderr)
            for sample in r.samples:
                print(f"  e.g. {sample}", file=sys.stderr)
    if ledger["events"] != committed:
        failed = True
        print(f"LEDGER MISMATCH: {ledger['events']} events stored, {committed} answered 201",
              file=sys.stderr)
    if not failed:
        print("Every response was checked: all succeeded, and the ledger holds exactly the "
              "events answered 201.")
    return 1 if failed else 0
