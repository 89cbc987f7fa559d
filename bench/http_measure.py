"""The HTTP benchmark's measurement: one phase of requests from C client threads, and
what it gives (successes, errors, latencies, rewards, CPU of server and client).

A phase starts every thread's connection, releases them together, and runs until the
deadline or each thread's share of a fixed count; latency is per request on the client,
from sending to having read the whole response. The server worker's CPU time (from /proc)
and this process's over the phase show whether the worker was busy or waiting.
"""
from __future__ import annotations

import http.client
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from bench.http_requests import REQUEST_TIMEOUT, Driver
from bench.processes import cpu_seconds

MAX_REQUESTS_PER_THREAD = 1_000_000  # a bound on every loop, whatever the duration


@dataclass
class PhaseResult:
    endpoint: str
    concurrency: int
    seconds: float  # wall time, from the start signal to the last thread's last response
    latencies: list[float]  # of the successful requests, seconds
    ok: int
    errors: Counter = field(default_factory=Counter)  # "status 500" / "ConnectionResetError"
    samples: list[str] = field(default_factory=list)  # the first few bad answers
    rewards: Counter = field(default_factory=Counter)  # campaign id (or "base") -> grants
    server_cpu: float | None = None  # seconds of the worker's CPU over the phase
    client_cpu: float | None = None

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Successful (for events: committed) requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_phase(endpoint: str, concurrency: int, make_driver: Callable[[int], Driver], *,
              seconds: float | None, requests: int | None,
              worker_pid: int | None) -> PhaseResult:
    """`concurrency` threads, each on its own connection, until the deadline or the count."""
    drivers = [make_driver(i) for i in range(concurrency)]
    if requests is not None:
        quotas = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    else:
        quotas = [MAX_REQUESTS_PER_THREAD] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    per_thread: list[tuple[list[float], int, Counter, list[str], float]] = [None] * concurrency
    clock = time.perf_counter
    deadline_box: list[float] = []

    def work(index: int) -> None:
        driver, quota = drivers[index], quotas[index]
        latencies, errors, samples, ok = [], Counter(), [], 0
        try:
            driver.connect()
        except OSError as exc:
            errors[f"connect: {type(exc).__name__}"] += 1
        start_gate.wait()
        deadline = deadline_box[0]
        try:
            for _ in range(quota):
                if clock() >= deadline:
                    break
                began = clock()
                try:
                    problem = driver.call()
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    driver.close()  # http.client reconnects on the next request
                elapsed = clock() - began
                if problem is None:
                    ok += 1
                    latencies.append(elapsed)
                else:
                    errors[problem.split(":", 1)[0]] += 1
                    if len(samples) < 3:
                        samples.append(problem)
        finally:
            finished = clock()
            driver.close()
            per_thread[index] = (latencies, ok, errors, samples, finished)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = cpu_seconds(worker_pid), time.process_time()
    started = clock()
    deadline_box.append(started + seconds if seconds is not None else math.inf)
    start_gate.wait()
    bound = (seconds if seconds is not None else 600.0) + REQUEST_TIMEOUT + 30
    for thread in threads:
        thread.join(timeout=max(0.0, started + bound - clock()))
    if any(thread.is_alive() for thread in threads):
        raise SystemExit(f"{endpoint} at concurrency {concurrency}: client threads hung")
    server_after, client_after = cpu_seconds(worker_pid), time.process_time()
    result = PhaseResult(endpoint, concurrency, max(t[4] for t in per_thread) - started, [], 0)
    for latencies, ok, errors, samples, _ in per_thread:
        result.latencies.extend(latencies)
        result.ok += ok
        result.errors.update(errors)
        result.samples.extend(samples[: max(0, 3 - len(result.samples))])
    for driver in drivers:
        result.rewards.update(driver.rewards)
    if cpu_before[0] is not None and server_after is not None:
        result.server_cpu = server_after - cpu_before[0]
    result.client_cpu = client_after - cpu_before[1]
    return result
