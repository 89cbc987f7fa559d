"""One load-generator process: its threads on persistent HTTP/1.1 connections, driving one
phase in a closed loop (a request, its response, the next) or an open loop (requests sent
at their scheduled arrival times, Poisson or evenly spaced), and what it measured.

Apart from the run because it is the body of a forked process with its own protocol over
a pipe (ready, start, results): everything it needs comes in its `Plan`, everything it
found goes back as one message, so the parent's side (`load_phases.Runner`) only forks,
starts and collects.
"""
from __future__ import annotations

import http.client
import itertools
import random
import signal
import threading
import time
from array import array
from collections import Counter

from bench.load_requests import REQUEST_TIMEOUT, Plan, RequestMaker, check_response, error_kind

# `promo-engine serve` keeps idle connections 5 s (gunicorn keepalive): a connection idle
# longer than this is replaced before its next request rather than risk the server's close.
IDLE_RECONNECT = 4.0
SAMPLES = 3  # bad answers kept, per thread and per phase, to show in the report


def generator_main(plan: Plan, pipe) -> None:
    """One load-generator process: build, connect, report ready, run, report results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; it sees Ctrl-C
    try:
        _generate(plan, pipe)
    except BaseException as exc:  # noqa: BLE001 - anything goes back to the parent
        try:
            pipe.send({"fatal": f"{type(exc).__name__}: {exc}"})
        except OSError:
            pass


def arrival_schedule(rate: float, seconds: float, arrivals: str, seed: int) -> list[float]:
    """Open loop: the arrival times (seconds from the start) of rate x seconds requests,
    evenly spaced ("uniform") or a Poisson process ("poisson")."""
    rng = random.Random(seed)
    n = max(1, int(round(rate * seconds)))
    if arrivals == "uniform":
        return [i / rate for i in range(n)]
    schedule, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        schedule.append(t)
    return schedule


def _generate(plan: Plan, pipe) -> None:
    clock, sleep = time.monotonic, time.sleep
    makers = [RequestMaker(plan, i) for i in range(plan.threads)]
    # Requests are built and signed before the start, so that building them does not take
    # the generator's CPU during the phase (their timestamps stay valid long enough).
    if plan.mode == "closed":
        queues = [[m.make() for _ in range(plan.prebuild)] for m in makers]
        schedule = None
    else:
        schedule = arrival_schedule(plan.rate, plan.seconds, plan.arrivals, plan.seed)
        shared = [makers[i % plan.threads].make() for i in range(len(schedule))]
        queues = None
    conns = [http.client.HTTPConnection(plan.host, plan.port, timeout=REQUEST_TIMEOUT)
             for _ in range(plan.threads)]
    connect_errors = Counter()
    for conn in conns:
        try:
            conn.connect()
        except OSError as exc:
            connect_errors[f"connect: {type(exc).__name__}"] += 1
    pipe.send({"ready": True})
    message = pipe.recv()
    if "start" not in message:
        return
    start = message["start"]
    deadline = start + plan.seconds
    counter = itertools.count()
    per_thread: list = [None] * plan.threads

    last_used = [clock()] * plan.threads

    def call(index: int, request) -> tuple[str | None, float]:
        conn = conns[index]
        body, headers, event_id, campaign = request
        if clock() - last_used[index] > IDLE_RECONNECT:
            conn.close()  # the server may be closing it (keep-alive): a new one instead
        try:
            conn.request("POST", makers[0].path, body, headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # http.client reconnects on the next request
            return f"{type(exc).__name__}: {exc}", clock()
        last_used[index] = done = clock()
        return check_response(status, raw, event_id, campaign), done

    def closed(index: int) -> None:
        queue, maker = queues[index], makers[index]
        lat, fin, errors, samples, late = array("d"), array("d"), Counter(), [], 0
        delay = start - clock()
        if delay > 0:
            sleep(delay)
        i = 0
        while True:
            began = clock()
            if began >= deadline:
                break
            if i < len(queue):
                request = queue[i]
                queue[i] = None  # let it go
            else:
                request = maker.make()
                late += 1
            i += 1
            problem, done = call(index, request)
            if problem is None:
                lat.append(done - began)
                fin.append(done - start)
            else:
                errors[error_kind(problem)] += 1
                if len(samples) < SAMPLES:
                    samples.append(problem)
        per_thread[index] = (lat, fin, array("d"), errors, samples, late)

    # Latency of an open-loop request counts from its scheduled time, not from its send:
    # a request held back by a busy server (or by every connection being busy) counts its
    # wait. `lag` keeps send - scheduled apart, to show how much of it was the generator's.
    def open_loop(index: int) -> None:
        lat, fin, lag, errors, samples = array("d"), array("d"), array("d"), Counter(), []
        while True:
            i = next(counter)
            if i >= len(shared):
                break
            due = start + schedule[i]
            delay = due - clock()
            if delay > 0:
                sleep(delay)
            sent = clock()
            request = shared[i]
            shared[i] = None
            problem, done = call(index, request)
            if problem is None:
                lat.append(done - due)
                fin.append(done - start)
                lag.append(sent - due)
            else:
                errors[error_kind(problem)] += 1
                if len(samples) < SAMPLES:
                    samples.append(problem)
        per_thread[index] = (lat, fin, lag, errors, samples, 0)

    target = closed if plan.mode == "closed" else open_loop
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(plan.threads)]
    cpu_before = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + REQUEST_TIMEOUT + 30 - clock()))
    cpu = time.process_time() - cpu_before
    for conn in conns:
        conn.close()
    pipe.send(_results(per_thread, connect_errors, cpu, sum(t.is_alive() for t in threads)))


def _results(per_thread: list, connect_errors: Counter, cpu: float, hung: int) -> dict:
    """The threads' figures as one message for the parent (the arrays as bytes: cheap to
    pickle, whatever their length)."""
    result = {"lat": array("d"), "fin": array("d"), "lag": array("d"), "errors": connect_errors,
              "samples": [], "late_built": 0, "cpu": cpu, "hung": hung}
    for part in per_thread:
        if part is None:
            continue
        lat, fin, lag, errors, samples, late = part
        result["lat"].extend(lat)
        result["fin"].extend(fin)
        result["lag"].extend(lag)
        result["errors"].update(errors)
        result["samples"].extend(samples[: max(0, SAMPLES - len(result["samples"]))])
        result["late_built"] += late
    for key in ("lat", "fin", "lag"):
        result[key] = result[key].tobytes()
    return result
