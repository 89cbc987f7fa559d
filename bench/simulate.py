#!/usr/bin/env python
"""The back-test at scale: `promo-engine campaigns simulate` on a million events, against the
floor of reading the same file, each in a process of its own.

The target: 1,000,000 events in at most 60 s and at most 1 GiB, with the example campaigns
(campaigns/) and a bank-wide one.

1. The events: `--events FILE`, or a demo-data history (`promo-engine demo-data`'s generator)
   of `--users` 65,000 over `--days` 80, about 1,000,000 events (activations, payments at
   2,500 merchants, 3% refunds), written to a temporary file.
2. The campaigns: `--campaigns` (campaigns/), and a bank-wide one written beside the events:
   double points on every payment of the history, three times a day per user, with a points
   budget that runs out.
3. The floor, in a child process: every line read and parsed with `json.loads`, nothing
   else: what any reader of the file costs, measured on the same file in the same run.
4. The simulation, in a child process: the command exactly as an operator runs it, with
   `--json`. Its result is printed, and the events it counted must be the file's lines.

For each: wall seconds, events/s, CPU seconds and the peak resident memory of the process
(`os.wait4`'s rusage of that child alone). `simulate / floor` is how many file-readings the
back-test costs.

    .venv/bin/python bench/simulate.py                       # about 1,000,000 events
    .venv/bin/python bench/simulate.py --users 500 --days 10 # the smoke test's size
    .venv/bin/python bench/simulate.py --events history.jsonl

`--check` makes a missed target (60 s, 1 GiB) exit 1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS, TARGET_BYTES = 60.0, 1024 ** 3

BANK_WIDE = """\
id: bench-bank-wide
name: Double points everywhere
type: points_multiplier
starts_at: {start}T00:00:00
ends_at: {end}T00:00:00
priority: 10
budget: {{points: 30000000}}
limits: {{per_user_daily: 3}}
params: {{multiplier: 2}}
"""

FLOOR = """
import json, sys
lines = 0
with open(sys.argv[1], "rb") as events:
    for line in events:
        json.loads(line)
        lines += 1
print(lines)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", help="an events file (default: demo data, generated)")
    parser.add_argument("--users", type=int, default=65_000)
    parser.add_argument("--days", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--campaigns", nargs="+", default=[str(ROOT / "campaigns")])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a target (60 s, 1 GiB) is missed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as work:
        work = Path(work)
        events, first_day, last_day = _events_file(args, work)
        folder = work / "bank-wide"
        folder.mkdir()
        (folder / "bank-wide.yaml").write_text(BANK_WIDE.format(
            start=first_day.isoformat(), end=(last_day + timedelta(days=1)).isoformat()))
        size = os.path.getsize(events)
        print(f"events file: {events if args.events else 'demo data'}, "
              f"{size / 1024 ** 2:,.1f} MiB; campaigns: {' '.join(args.campaigns)} and a "
              "bank-wide one", flush=True)

        floor = _child([sys.executable, "-c", FLOOR, str(events)])
        lines = int(floor.output)
        simulate = _child([sys.executable, "-m", "promo_engine.cli", "campaigns", "simulate",
                           *args.campaigns, str(folder), "--events", str(events), "--json"])
        result = json.loads(simulate.output)
    _report(lines, floor, simulate, result)
    if result["events"] + result["skipped"] != lines:
        print(f"FAILED: the simulation counted {result['events'] + result['skipped']} lines "
              f"of {lines}")
        return 1
    if args.check and (simulate.seconds > TARGET_SECONDS or simulate.peak > TARGET_BYTES):
        print("FAILED: a target was missed")
        return 1
    return 0


def _events_file(args, work: Path) -> tuple[Path, date, date]:
    """The file, and the first and last day of its events (for the bank-wide campaign)."""
    if args.events:
        first = last = None
        with open(args.events, "rb") as lines:
            for raw in lines:
                if raw.strip():
                    day = date.fromisoformat(json.loads(raw)["occurred_at"][:10])
                    first = first or day
                    last = day
        return Path(args.events), first - timedelta(days=1), last
    sys.path.insert(0, str(ROOT))
    from promo_engine.backtest.demo_data import DemoOptions, write_demo_data
    options = DemoOptions(users=args.users, days=args.days, seed=args.seed)
    path = work / "events.jsonl"
    started = time.perf_counter()
    with open(path, "wb") as out:
        summary = write_demo_data(options, out)
    print(f"generated {summary.events:,} events of {summary.users:,} users in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return path, options.start, options.start + timedelta(days=args.days)


class _Run:
    def __init__(self, output: str, seconds: float, cpu: float, peak: int):
        self.output, self.seconds, self.cpu, self.peak = output, seconds, cpu, peak


def _child(command: list[str]) -> _Run:
    """Run `command`, timed; its own rusage (os.wait4), not that of earlier children."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=ROOT, env=environ)
    output = process.stdout.read()
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    process.stderr.close()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... failed ({process.returncode}):\n"
                 f"{errors.decode(errors='replace')}")
    # ru_maxrss is in KiB on Linux
    return _Run(output.decode(), seconds, usage.ru_utime + usage.ru_stime,
                usage.ru_maxrss * 1024)


def _report(lines: int, floor: _Run, simulate: _Run, result: dict) -> None:
    print()
    print(f"{'':<26}{'seconds':>9}{'events/s':>12}{'CPU s':>9}{'peak RSS':>12}")
    for name, run in (("floor (read + json.loads)", floor), ("campaigns simulate", simulate)):
        print(f"{name:<26}{run.seconds:>9.1f}{lines / run.seconds:>12,.0f}{run.cpu:>9.1f}"
              f"{run.peak / 1024 ** 2:>9,.0f} MiB")
    print(f"\nsimulate / floor: {simulate.seconds / floor.seconds:.1f}x wall, "
          f"{simulate.cpu / floor.cpu:.1f}x CPU; targets: {TARGET_SECONDS:.0f} s "
          f"({'met' if simulate.seconds <= TARGET_SECONDS else 'MISSED'}), 1 GiB "
          f"({'met' if simulate.peak <= TARGET_BYTES else 'MISSED'})")
    print(f"\n{result['events']:,} events, {result['skipped']} skipped, "
          f"{result['base_points']:,} base points")
    for campaign in result["campaigns"]:
        print(f"  {campaign['campaign_id']:<26}{campaign['rewards']:>9,} rewards "
              f"{campaign['users']:>7,} users {campaign['cost']:>12} cost "
              f"{campaign['points']:>12,} points  ran out: "
              f"{campaign['budget_exhausted_at'] or '-'}")


if __name__ == "__main__":
    sys.exit(main())
