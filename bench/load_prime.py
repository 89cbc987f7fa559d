"""The events server's start-up, waited out rather than measured: events one at a time
until every campaign has answered 201 once.

A server builds each campaign's Redis counter from the ledger on first use (503 to the
events that need it meanwhile), and one whose Redis lost its data answers 503 (with
Retry-After) for a settle period first. Apart from the timed phases because none of this
is load: any 503 once the timed phases begin is an error, so it must all be over by then.
"""
from __future__ import annotations

import http.client
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from bench.load_requests import (EVENTS_PATH, REQUEST_TIMEOUT, Plan, RequestMaker,
                                 check_response, error_kind)
from bench.load_servers import HOST, Server

if TYPE_CHECKING:
    from bench.load_phases import Runner

PRIME_TIMEOUT = 90.0  # s: Redis counters are built (or settle, after a data loss) before use


@dataclass
class Primed:
    """What priming one server (one worker count) took: the events answered 201 (counted
    in the ledger check), the answers before them, and how long it waited."""
    began: float | None = None
    ready: set = field(default_factory=set)
    waited: float = 0.0
    ok: int = 0
    hot: int = 0
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)


def prime(server: Server, runner: "Runner", scenarios: Sequence[str], workers: int,
          result: Primed, *, wait: bool) -> None:
    """Events one at a time, not timed: with `wait`, one for every campaign not primed yet
    in this run (and one per scenario at least), each sent again until it is answered 201,
    following Retry-After; without, one per scenario, whatever the answer.

    A server builds a campaign's Redis counter from the ledger when an event first needs it
    (503 to the events that need one meanwhile), after a settle period if its Redis lost
    its data. That is start-up, waited out here rather than measured. Any answer
    other than 201 or 503 is an error."""
    args = runner.args
    if result.began is None:
        result.began = time.monotonic()
    targets = []
    for scenario in scenarios:
        campaigns = range(args.campaigns) if scenario == "spread" else range(1)
        todo = [i for i in campaigns if (scenario, i) not in runner.primed]
        if not wait:
            todo = todo[:1] or [0]
        elif scenario not in result.ready and not todo:
            todo = [0]
        targets += [(scenario, i) for i in todo]
    makers = {}
    conn = http.client.HTTPConnection(*server.base, timeout=REQUEST_TIMEOUT)
    try:
        for scenario, index in targets:
            if scenario not in makers:
                runner.phase_no += 1
                makers[scenario] = RequestMaker(Plan(
                    kind="events", scenario=scenario, mode="closed", threads=1, seconds=0.0,
                    host=HOST, port=server.port, key_id=runner.client["key_id"],
                    secret=runner.client["secret"], tag=runner.tag,
                    id_prefix=f"{runner.tag}-{runner.phase_no}-p", seed=args.seed + runner.phase_no,
                    users=args.users, spread=args.campaigns, prebuild=0), 0)
            while True:
                body, headers, event_id, campaign = makers[scenario].make(index)
                retry_after = None
                try:
                    conn.request("POST", EVENTS_PATH, body, headers)
                    response = conn.getresponse()
                    raw, status = response.read(), response.status
                    retry_after = response.getheader("Retry-After")
                    problem = check_response(status, raw, event_id, campaign)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    status, problem = 0, f"{type(exc).__name__}: {exc}"
                if problem is None:
                    result.ok += 1
                    result.hot += scenario == "hot"
                    result.ready.add(scenario)
                    runner.primed.add((scenario, index))
                    break
                result.errors[error_kind(problem)] += 1
                if len(result.samples) < 1:
                    result.samples.append(problem)
                if status == 503 and not wait:
                    break
                if status != 503 or time.monotonic() - result.began > PRIME_TIMEOUT:
                    raise SystemExit(f"N={workers}: the events server did not accept events: "
                                     f"{problem}\n{server.log_tail()}")
                try:
                    pause = float(retry_after) if retry_after else 0.5
                except ValueError:
                    pause = 0.5
                time.sleep(min(max(pause, 0.05), 0.5))
    finally:
        conn.close()
    result.waited = time.monotonic() - result.began
