"""What the dispatch part of `bench/webhooks.py` prints: the outbox second by second, the
rates over the load, the lag at its start, middle and end with the verdict, the drain, and
the CPU each process spent per 1,000 deliveries.

Apart from the run because these are the figures' reading: the run hands over its samples
and counts, and gets back the verdicts (which `--check` turns into the exit status).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from bench.webhooks_dispatch import DispatchResult, Sample

LAG_LIMIT = 5.0  # s: the lag at the end of the load that still counts as flat
SLOPE_LIMIT = 0.1  # s of lag per s over the last third: more is a dispatcher falling behind


@dataclass(frozen=True)
class Verdict:
    events_rate: float
    written_rate: float
    delivered_rate: float
    lags: tuple[float, float, float]  # start, middle, end of the load
    slope: float  # s per s over the last third
    flat: bool

    @property
    def ratio(self) -> float:
        return self.delivered_rate / self.written_rate if self.written_rate else 0.0


def _nearest(samples: list[Sample], t: float) -> Sample:
    return min(samples, key=lambda s: abs(s.t - t))


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, lag)."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


def verdict(result: DispatchResult) -> Verdict:
    """Rates between the end of the ramp (connections filling, the backlog settling: the
    first second, or 10% of a longer load) and the end of the load: the backlog at both
    ends is of a steady state, so a dispatcher that keeps up delivers as many as were
    written in between, and one that falls behind fewer."""
    samples, seconds = result.samples, result.seconds
    last = _nearest(samples, seconds)
    first = _nearest(samples, max(1.0, 0.1 * seconds)) if seconds >= 2 else samples[0]
    span = last.t - first.t or 1.0
    load = [s for s in samples if s.t <= last.t]
    third = [(s.t, s.lag) for s in load if s.t >= last.t - seconds / 3]
    lags = (_nearest(load, min(1.0, seconds)).lag, _nearest(load, seconds / 2).lag, last.lag)
    slope = _slope(third)
    return Verdict((last.events - first.events) / span, (last.written - first.written) / span,
                   (last.delivered - first.delivered) / span, lags, slope,
                   lags[2] <= LAG_LIMIT and slope <= SLOPE_LIMIT)


def print_dispatch_report(result: DispatchResult) -> Verdict:
    phase = result.phase
    print(f"Part 2, one dispatcher against the HTTP path's peak: `promo-engine serve --workers "
          f"1 --no-scheduler`, {result.concurrency} connections closed loop over "
          f"{result.generators} generator processes for {result.seconds:g} s; one endpoint "
          f"(a local HTTP/1.1 keep-alive receiver answering 204, a sample of signatures "
          f"verified with standardwebhooks); one `promo-engine webhooks run`. "
          f"{result.campaigns} campaigns, {result.users:,} users.")
    print("The outbox each second (rates over the second before; lag = age of the oldest due "
          "pending delivery):")
    print(f"  {'t s':>6} {'events/s':>9} {'written/s':>10} {'delivered/s':>12} "
          f"{'backlog':>8} {'lag s':>6}")
    previous = None
    for s in result.samples:
        if previous is not None:
            dt = (s.t - previous.t) or 1.0
            rates = [(s.events - previous.events) / dt, (s.written - previous.written) / dt,
                     (s.delivered - previous.delivered) / dt]
            after = "  drain" if s.t > result.load_end + 0.05 else ""
            print(f"  {s.t:6.1f} {rates[0]:9,.0f} {rates[1]:10,.0f} {rates[2]:12,.0f} "
                  f"{s.pending:8,} {s.lag:6.2f}{after}")
        else:
            print(f"  {s.t:6.1f} {'':9} {'':10} {'':12} {s.pending:8,} {s.lag:6.2f}  start")
        previous = s
    v = verdict(result)
    print(f"Over the load after its ramp: {v.events_rate:,.0f} events/s committed (the generators: "
          f"{phase.rate:,.0f}/s after the ramp, p50 {phase.pct(50):.1f} ms, p99 "
          f"{phase.pct(99):.1f} ms), {v.written_rate:,.0f} deliveries written/s, "
          f"{v.delivered_rate:,.0f} delivered/s.")
    print(f"Lag at the start / middle / end of the load: {v.lags[0]:.2f} / {v.lags[1]:.2f} / "
          f"{v.lags[2]:.2f} s; over its last third {v.slope:+.3f} s per s.")
    print(f"dispatcher deliveries/s / deliveries written per s: {v.ratio:.2f} (>= 1.0 keeps "
          f"up)")
    print(f"verdict: {'lag flat' if v.flat else 'lag NOT flat'} (end <= {LAG_LIMIT:g} s and "
          f"growing no more than {SLOPE_LIMIT:g} s per s over the last third)")
    end = _nearest(result.samples, result.seconds)
    if result.drained_at is not None:
        drain = max(0.0, result.drained_at - result.load_end)
        backlog = end.pending
        print(f"Drain: {backlog:,} deliveries pending when the load stopped, none "
              f"{drain:.2f} s after its end"
              # Shorter drains are mostly the dispatcher's poll interval (0.5 s).
              + (f" ({backlog / drain:,.0f} deliveries/s with the server idle)."
                 if drain >= 2 and backlog else "."))
    else:
        print(f"Drain: NOT drained within {result.drain_timeout:g} s of the load's end.")
    delivered = result.samples[-1].delivered - result.samples[0].delivered
    events = result.samples[-1].events - result.samples[0].events
    print(f"CPU from the load's start until drained (s; per 1,000 deliveries: "
          f"{delivered:,} delivered for {events:,} events):")
    for name, seconds in result.cpu.items():
        per = f"{1000 * seconds / delivered:7.3f}" if delivered else "    n/a"
        print(f"  {name:30} {seconds:7.2f} s  {per}")
    print(f"  the machine: {100 * result.busy:.0f}% busy of {_cpus()} CPUs; processes outside "
          f"the benchmark {100 * result.other:.0f}%")
    r = result.receiver
    print(f"Receiver: {r.get('requests', 0):,} requests, {r.get('distinct', 0):,} distinct "
          f"webhook ids, {r.get('verified', 0):,} signatures verified, "
          f"{r.get('refused', 0)} refused. Dispatcher exit status {result.dispatcher_exit}.")
    check = result.outbox
    if check is not None and not check.problems:
        print(f"Outbox: {check.events:,} events with rewards, {check.rewards:,} rewards, "
              f"{check.deliveries:,} deliveries, one per reward, statuses "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(check.statuses.items()))
              + "".join(f"; also {n:,} {kind}" for kind, n in sorted(check.other_types.items()))
              + ".")
    print(f"Ledger: {result.stored:,} events stored, {result.answered:,} answered 201.")
    return v


def _cpus() -> int:
    return os.cpu_count() or 1
