"""A timed phase of the load: `Runner` forks the generator processes for it, starts them at
one instant, collects what they measured with the CPU used meanwhile, and gives a `Phase`:
its latencies, throughput (the ramp of a closed loop left out) and nearest-rank percentiles.

Apart from the run's orchestration (which phases, in what order, on which server) and from
the generator's own loop (`load_generator.py`, the child's side of the same pipe).
"""
from __future__ import annotations

import math
import multiprocessing
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from bench.load_cpu import CpuSnapshot, cpu_between
from bench.load_generator import SAMPLES, generator_main
from bench.load_requests import REQUEST_TIMEOUT, Plan
from bench.load_servers import HOST, Server


@dataclass
class Phase:
    workers: int
    kind: str  # "events" | "bare"
    scenario: str
    load: str  # "unloaded" | "peak" | "paced" | "warm-up"
    connections: int
    seconds: float
    target_rate: float = 0.0
    latencies: list[float] = field(default_factory=list)  # s, sorted
    finishes: list[float] = field(default_factory=list)  # s from the start
    lags: list[float] = field(default_factory=list)  # open loop: send - scheduled, s
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    late_built: int = 0
    generator_cpu: float = 0.0
    cpu: dict = field(default_factory=dict)  # server / pg / redis seconds, busy share
    wall: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def ramp(self) -> float:
        """Closed loop: completions in the first moments (connections filling) not counted."""
        return min(1.0, 0.1 * self.seconds) if self.load == "peak" else 0.0

    @property
    def rate(self) -> float:
        """Successful requests per second: for closed loops, completions inside
        [start + ramp, start + seconds]; for open loops, all of them over the schedule."""
        if self.load == "paced":
            span = max(self.finishes[-1] if self.finishes else 0.0, self.seconds)
            return self.ok / span if span > 0 else 0.0
        window = self.seconds - self.ramp
        inside = sum(1 for f in self.finishes if self.ramp <= f <= self.seconds)
        return inside / window if window > 0 else 0.0

    def pct(self, p: float, values: list[float] | None = None) -> float:
        """Nearest-rank percentile in milliseconds."""
        values = self.latencies if values is None else values
        if not values:
            return math.nan
        return 1000 * values[max(0, math.ceil(p / 100 * len(values)) - 1)]

    def cpu_ms(self, key: str) -> float:
        value = self.cpu.get(key)
        return 1000 * value / self.ok if value is not None and self.ok else math.nan

    def add(self, result: dict) -> None:
        """One generator process's results (its message) into the phase."""
        for key, target in (("lat", self.latencies), ("fin", self.finishes), ("lag", self.lags)):
            values = array("d")
            values.frombytes(result[key])
            target.extend(values)
        self.errors.update(result["errors"])
        self.samples.extend(result["samples"][: max(0, SAMPLES - len(self.samples))])
        self.late_built += result["late_built"]
        self.generator_cpu += result["cpu"]
        if result["hung"]:
            self.errors["client thread hung"] += result["hung"]


class Runner:
    """Runs the phases of one run: the API client, the run's tag (in every id) and database
    (for the CPU of its backends), and what the start-up priming has done so far."""

    def __init__(self, args, client: dict, tag: str, database: str):
        self.args, self.client, self.tag, self.database = args, client, tag, database
        self.primed: set[tuple[str, int]] = set()  # (scenario, campaign) answered 201
        self.phase_no = 0
        self.live: list = []  # generator processes of the running phase
        self.context = multiprocessing.get_context("fork")

    def plans(self, server: Server, kind: str, scenario: str, load: str, connections: int,
              seconds: float, rate: float) -> list[Plan]:
        """The connections spread over the generator processes, one plan each."""
        args = self.args
        procs = min(args.generators, connections)
        share = [connections // procs + (i < connections % procs) for i in range(procs)]
        plans = []
        for i in range(procs):
            prebuild = 0
            if load != "paced":
                prebuild = int(args.max_rate * seconds / connections * 1.1) + 16 \
                    if connections > 1 else int(min(args.max_rate, 2000) * seconds) + 16
            plans.append(Plan(
                kind=kind, scenario=scenario, mode="open" if load == "paced" else "closed",
                threads=share[i], seconds=seconds, host=HOST, port=server.port,
                key_id=self.client["key_id"], secret=self.client["secret"], tag=self.tag,
                id_prefix=f"{self.tag}-{self.phase_no}-{i}", seed=args.seed * 7919 + self.phase_no * 31 + i,
                users=args.users, spread=args.campaigns, prebuild=prebuild,
                rate=rate * share[i] / connections, arrivals=args.arrivals))
        return plans

    def run(self, server: Server, workers: int, kind: str, scenario: str, load: str, *,
            connections: int, seconds: float, rate: float = 0.0, profiler=None) -> Phase:
        self.phase_no += 1
        plans = self.plans(server, kind, scenario, load, connections, seconds, rate)
        pipes = []
        try:
            for plan in plans:
                parent_end, child_end = self.context.Pipe()
                process = self.context.Process(target=generator_main, args=(plan, child_end),
                                               daemon=True)
                process.start()
                child_end.close()
                self.live.append(process)
                pipes.append(parent_end)
            for pipe in pipes:
                if not pipe.poll(180):
                    raise SystemExit("a load generator did not get ready in 180 s")
                message = pipe.recv()
                if "fatal" in message:
                    raise SystemExit(f"load generator failed: {message['fatal']}")
            if profiler is not None:
                profiler.start(server, seconds)
            before = CpuSnapshot.take(server.pids(), self.database)
            start = time.monotonic() + 0.05
            for pipe in pipes:
                pipe.send({"start": start})
            results = []
            for pipe in pipes:
                if not pipe.poll(max(1.0, start + seconds + REQUEST_TIMEOUT + 60 - time.monotonic())):
                    raise SystemExit("a load generator hung")
                message = pipe.recv()
                if "fatal" in message:
                    raise SystemExit(f"load generator failed: {message['fatal']}")
                results.append(message)
            after = CpuSnapshot.take(server.pids(), self.database)
            wall = time.monotonic() - start
        except BaseException:
            self.stop_generators()
            if profiler is not None:
                profiler.kill()
            raise
        finally:
            for process in self.live:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)
            self.live.clear()
            for pipe in pipes:
                pipe.close()
        phase = Phase(workers, kind, scenario, load, connections, seconds, target_rate=rate,
                      wall=wall)
        for result in results:
            phase.add(result)
        phase.latencies.sort()
        phase.finishes.sort()
        phase.lags.sort()
        phase.cpu = cpu_between(before, after, phase.generator_cpu)
        return phase

    def stop_generators(self) -> None:
        for process in self.live:
            if process.is_alive():
                process.kill()
        for process in self.live:
            process.join(timeout=5)
        self.live.clear()
