"""The evaluation benchmark's timing harness: plain loops, best of rounds, interleaved.

Each evaluator is timed with `time.perf_counter` around a plain loop over all events; the
best of `repeat` rounds is kept, every loop of a table runs once per round in alternating
order (so a slow spell on the machine hits all alike), and the garbage collector is
collected before and disabled during each loop. `run_sizes` and `run_scaling` build each
table's sizes (data from evaluate_data.py), cross-check them, and time them.
"""
from __future__ import annotations

import gc
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Sequence

from bench.evaluate_crosscheck import Totals, compile_engine, cross_check
from bench.evaluate_data import (MERCHANTS, SCALING_CANDIDATES, make_campaigns, make_events,
                                 make_merchants, make_scaling_campaigns)
from bench.evaluate_floor import Floor
from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import RulesEngine
from promo_engine.core.event import Event


def engine_loop(engine: RulesEngine, events: Sequence[Event], user: UserState) -> float:
    evaluate = engine.evaluate
    start = time.perf_counter()
    for event in events:
        evaluate(event, user)
    return time.perf_counter() - start


def floor_loop(floor: Floor, events: Sequence[Event], user: UserState) -> float:
    evaluate = floor.evaluate
    start = time.perf_counter()
    for event in events:
        evaluate(event)
    return time.perf_counter() - start


def best_of(loops: dict, repeat: int, keep_gc: bool) -> dict:
    """Best time of each loop over `repeat` rounds. Every round runs every loop once, in
    alternating order, so a slow spell on the machine hits all of them alike."""
    best = {name: math.inf for name in loops}
    names = list(loops)
    for round_ in range(repeat):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            gc.collect()
            if not keep_gc:
                gc.disable()
            try:
                best[name] = min(best[name], loops[name]())
            finally:
                gc.enable()
    return best


@dataclass
class Setup:
    """One size, ready to time: both evaluators, the events, and what they were checked to give."""
    campaigns: int
    merchants: int
    engine: RulesEngine
    floor: Floor
    events: Sequence[Event]
    user: UserState
    totals: Totals
    candidates: float  # per event, as indexed by the engine


def prepare(campaigns: Sequence[Campaign], events: Sequence[Event], merchants: int) -> Setup:
    engine = compile_engine(campaigns)
    floor = Floor(campaigns)
    user = UserState(user_id="u_bench")
    totals, _ = cross_check(engine, floor, events, user)
    candidates = sum(len(engine.candidates(e)) for e in events) / len(events)
    return Setup(len(campaigns), merchants, engine, floor, events, user, totals, candidates)


@dataclass
class SizeResult:
    campaigns: int
    merchants: int
    candidates: float  # per event, as indexed by the engine
    grants: float  # campaign rewards per event
    engine_eps: float
    floor_eps: float
    totals: Totals

    @property
    def ratio(self) -> float:
        return self.engine_eps / self.floor_eps


def measure(setups: Sequence[Setup], repeat: int, keep_gc: bool) -> list[SizeResult]:
    """Times engine and floor at every size, all interleaved round by round."""
    loops = {}
    for i, s in enumerate(setups):
        loops[i, "engine"] = lambda s=s: engine_loop(s.engine, s.events, s.user)
        loops[i, "floor"] = lambda s=s: floor_loop(s.floor, s.events, s.user)
    best = best_of(loops, repeat, keep_gc)
    return [SizeResult(s.campaigns, s.merchants, s.candidates, s.totals.grants / len(s.events),
                       len(s.events) / best[i, "engine"], len(s.events) / best[i, "floor"],
                       s.totals)
            for i, s in enumerate(setups)]


def run_sizes(sizes: Sequence[int], n_events: int, repeat: int, keep_gc: bool = False,
              seed: int = 2027, merchants: int = MERCHANTS) -> list[SizeResult]:
    setups = []
    for size in sizes:
        rng = random.Random(seed)
        shops = make_merchants(merchants, rng)
        campaigns = make_campaigns(size, shops, rng)
        events = make_events(n_events, shops, random.Random(seed + 1))
        setups.append(prepare(campaigns, events, merchants))
    return measure(setups, repeat, keep_gc)


def run_scaling(sizes: Sequence[int], n_events: int, repeat: int, keep_gc: bool = False,
                seed: int = 2027, spread: bool = True) -> list[SizeResult]:
    """spread: events over every merchant that has campaigns (2 at 10 campaigns, 2,499 at
    10,000); otherwise over the same 2 merchants at every size, the other campaigns being
    on merchants without events: the cost of the total alone, without the cache misses of
    visiting more distinct campaigns."""
    setups = []
    for size in sizes:
        campaigns, shops = make_scaling_campaigns(size)
        if not spread:
            shops = shops[:2]
        events = make_events(n_events, shops, random.Random(seed + 1))
        setup = prepare(campaigns, events, len(shops))
        if setup.candidates != SCALING_CANDIDATES:
            raise AssertionError(f"{setup.candidates} candidates per event, "
                                 f"not {SCALING_CANDIDATES}")
        setups.append(setup)
    return measure(setups, repeat, keep_gc)


def pin_to_one_cpu() -> None:
    """One core, as the target says; also keeps the scheduler from moving us mid-run."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        except OSError:
            pass
