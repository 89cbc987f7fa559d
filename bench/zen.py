#!/usr/bin/env python
"""Rule evaluation against GoRules ZEN: the RulesEngine and ZEN on one rule shape, in one run.

ZEN (PyPI `zen-engine`, a Rust rules engine with Python bindings; a benchmark-only
dependency: `pip install -e '.[bench]'`) is what teams use for pricing and promotion rules.
The shape both express exactly: percent discounts with a minimum amount and a cap, each
campaign at one merchant, and the first one that applies by priority wins (our campaigns
all `exclusive`, with distinct priorities, so "first hit" is our rule too).

* promo-engine: `holiday_discount` campaigns (percent, `max_discount`, `conditions.min_amount`),
  compiled once by `RulesEngine.compile`; `RulesEngine.evaluate(event, user)` per event.
* ZEN: one decision per merchant, a decision table with hit policy "first": input
  `amount` (`>= min` or any), outputs the campaign id and
  `min([round(amount * rate, 2), cap])`, rules in our priority order. Its fastest call:
  `ZenEngine` with a static loader, `engine.evaluate(merchant, context)`; the decisions are
  warmed (loaded and cached by ZEN) before timing, and each event's context is a JSON
  string (bytes, its quickest form) built beforehand, as our events are built beforehand. An event at a merchant
  without campaigns asks ZEN nothing (a dict lookup), as ours finds no candidates.

Before timing, every event's outcome from both (the winning campaign and the discount as a
Decimal, in cents) must be the same; the run aborts otherwise. Campaigns are spread over
min(campaigns, 1,000) merchants so that every event has at least one campaign to check: 1
per merchant at 10 and 1,000 campaigns, about 10 at 10,000.

Timing as bench/evaluate.py: a plain loop over all events, best of --repeat rounds, both
engines of every size interleaved in each round, gc collected before and off during each
loop, pinned to one CPU.

    .venv/bin/python bench/zen.py            # the figures in docs/performance.md
    .venv/bin/python bench/zen.py --quick    # a few seconds, rough figures
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and `import zen` would find
# this file instead of ZEN's package: the benchmark's modules are imported as `bench.*`.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:  # runnable as `python bench/zen.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.evaluate_data import Merchant, campaign, make_events, money  # noqa: E402
from bench.evaluate_report import machine_note  # noqa: E402
from bench.evaluate_timing import best_of, pin_to_one_cpu  # noqa: E402
from bench.machine import print_load_average  # noqa: E402
from promo_engine.core.campaign import Campaign, Conditions  # noqa: E402
from promo_engine.core.campaign_type import UserState  # noqa: E402
from promo_engine.core.engine import RulesEngine  # noqa: E402
from promo_engine.core.registry import build_registry, get_plugin_manager  # noqa: E402

SIZES = (10, 1000, 10000)
MAX_MERCHANTS = 1000
TARGET = 1.0  # promo-engine events/s at least ZEN's at every size
CENT = Decimal("0.01")


class Mismatch(AssertionError):
    pass


def make_campaigns(total: int, rng: random.Random) -> tuple[list[Campaign], list[Merchant]]:
    """`total` exclusive percent discounts over min(total, 1,000) merchants (each has at
    least one), with distinct priorities; half with a minimum amount, 60% with a cap."""
    merchants = [Merchant(f"m_{i:05d}", "5812", "Asia/Shanghai")
                 for i in range(min(total, MAX_MERCHANTS))]
    priorities = list(range(total))
    rng.shuffle(priorities)
    campaigns = []
    for i in range(total):
        merchant = merchants[i] if i < len(merchants) else rng.choice(merchants)
        params = {"percent": Decimal(rng.choice(("5", "8", "10", "12.5", "15", "20", "30")))}
        if rng.random() < 0.6:
            params["max_discount"] = money(rng.choice(("10", "20", "30", "50")))
        minimum = money(rng.choice(("20", "50", "100", "200"))) if rng.random() < 0.5 else None
        campaigns.append(campaign(
            f"z-{i:05d}", params, merchants=[merchant.id],
            conditions=Conditions(min_amount=minimum), priority=priorities[i], exclusive=True))
    return campaigns, merchants


def zen_decision(campaigns: Sequence[Campaign]) -> dict:
    """One merchant's campaigns as a ZEN decision: a first-hit table in priority order."""
    rules = []
    for c in sorted(campaigns, key=lambda c: (-c.priority, c.id)):
        rate = c.params["percent"] / 100
        discount = f"round(amount * {rate}, 2)"
        if "max_discount" in c.params:
            discount = f"min([{discount}, {c.params['max_discount']}])"
        minimum = c.conditions.min_amount
        rules.append({"_id": c.id, "amount": "" if minimum is None else f">= {minimum}",
                      "campaign": json.dumps(c.id), "discount": discount})
    table = {"hitPolicy": "first",
             "inputs": [{"id": "amount", "name": "amount", "field": "amount"}],
             "outputs": [{"id": "campaign", "name": "campaign", "field": "campaign"},
                         {"id": "discount", "name": "discount", "field": "discount"}],
             "rules": rules}
    at = {"x": 0, "y": 0}
    return {"nodes": [{"id": "in", "type": "inputNode", "name": "in", "position": at},
                      {"id": "table", "type": "decisionTableNode", "name": "table",
                       "position": at, "content": table},
                      {"id": "out", "type": "outputNode", "name": "out", "position": at}],
            "edges": [{"id": "e1", "sourceId": "in", "targetId": "table", "type": "edge"},
                      {"id": "e2", "sourceId": "table", "targetId": "out", "type": "edge"}]}


def zen_engine(campaigns: Sequence[Campaign]):
    import zen  # the benchmark-only dependency: `pip install -e '.[bench]'`
    by_merchant: dict[str, list[Campaign]] = {}
    for c in campaigns:
        for merchant in c.merchants:
            by_merchant.setdefault(merchant, []).append(c)
    content = {m: zen_decision(cs) for m, cs in by_merchant.items()}
    return zen.ZenEngine({"loader": {"type": "static", "content": content}}), set(content)


def our_engine(campaigns: Sequence[Campaign]) -> RulesEngine:
    registry = build_registry(get_plugin_manager(load_entry_points=False))

    def fail(campaign, exc):  # a benchmark campaign that does not compile is a bug here
        raise exc

    # No base points: the outcome is the discount alone, as ZEN's.
    return RulesEngine.compile(campaigns, registry, currency="CNY", points_per_unit=Decimal(0),
                               on_error=fail)


@dataclass
class Size:
    campaigns: int
    merchants: int
    engine: RulesEngine
    zen: object
    zen_keys: set
    events: list
    contexts: list  # (merchant, JSON context) per event, for ZEN
    user: UserState
    hits: int  # events that got a discount (same from both)
    candidates: float  # campaigns per event at its merchant


def ours_outcome(engine: RulesEngine, event, user):
    grants = engine.evaluate(event, user).grants
    if not grants:
        return None
    if len(grants) != 1:
        raise Mismatch(f"event {event.event_id}: {len(grants)} grants, first hit gives one")
    return grants[0].reward.campaign_id, grants[0].reward.amount


def zen_outcome(zen, keys, merchant: str, context: str):
    if merchant not in keys:
        return None
    result = zen.evaluate(merchant, context)["result"]
    if not result:
        return None
    # ZEN gives numbers as floats; their shortest repr is the decimal it computed.
    value = Decimal(repr(result["discount"])).quantize(CENT, ROUND_HALF_UP)
    return (result["campaign"], value) if value else None


def prepare(total: int, n_events: int, seed: int) -> Size:
    rng = random.Random(seed)
    campaigns, merchants = make_campaigns(total, rng)
    events = make_events(n_events, merchants, random.Random(seed + 1))
    engine = our_engine(campaigns)
    zen, keys = zen_engine(campaigns)
    contexts = [(e.merchant_id, f'{{"amount": {e.amount}}}'.encode()) for e in events]
    user = UserState(user_id="u_bench")
    hits = 0
    for event, (merchant, context) in zip(events, contexts):
        mine, theirs = ours_outcome(engine, event, user), zen_outcome(zen, keys, merchant, context)
        if mine != theirs:
            raise Mismatch(f"{total} campaigns, event {event.event_id} ({event.amount} at "
                           f"{merchant}): promo-engine {mine} != ZEN {theirs}")
        hits += mine is not None
    candidates = sum(len(engine.candidates(e)) for e in events) / len(events)
    return Size(total, len(merchants), engine, zen, keys, events, contexts, user, hits,
                candidates)


def ours_loop(size: Size) -> float:
    evaluate, user = size.engine.evaluate, size.user
    start = time.perf_counter()
    for event in size.events:
        evaluate(event, user)
    return time.perf_counter() - start


def zen_loop(size: Size) -> float:
    evaluate, keys = size.zen.evaluate, size.zen_keys
    start = time.perf_counter()
    for merchant, context in size.contexts:
        if merchant in keys:
            evaluate(merchant, context)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per size (20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds, best kept (7)")
    parser.add_argument("--quick", action="store_true", help="2,000 events, 3 rounds")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="campaign counts, comma-separated (10,1000,10000)")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 2000, 3
    if not args.no_pin:
        pin_to_one_cpu()
    from importlib.metadata import version
    print(f"Rule evaluation, promo-engine vs GoRules ZEN {version('zen-engine')}: "
          f"{args.events:,} payment events per size, best of {args.repeat}, gc off while timed")
    print("Shape: exclusive percent discounts with a minimum and a cap by merchant, first hit "
          "by priority")
    print(machine_note())
    print_load_average()
    try:
        sizes = [prepare(int(s.replace("_", "")), args.events, args.seed)
                 for s in args.sizes.split(",") if s.strip()]
    except Mismatch as exc:
        print(f"\nABORTED: promo-engine and ZEN disagree: {exc}", file=sys.stderr)
        return 2
    loops = {}
    for i, size in enumerate(sizes):
        zen_loop(size)  # one untimed pass: ZEN loads and caches each merchant's decision
        loops[i, "ours"] = lambda s=size: ours_loop(s)
        loops[i, "zen"] = lambda s=size: zen_loop(s)
    best = best_of(loops, args.repeat, keep_gc=False)
    print()
    print(f"{'campaigns':>9} {'merchants':>9} {'cand/ev':>7} {'hits/ev':>7} "
          f"{'promo-engine ev/s':>17} {'ZEN ev/s':>10} {'promo-engine/ZEN':>16}  "
          f"target >= {TARGET:.1f}")
    ok = True
    for i, size in enumerate(sizes):
        ours, theirs = args.events / best[i, "ours"], args.events / best[i, "zen"]
        ratio = ours / theirs
        ok &= ratio >= TARGET
        print(f"{size.campaigns:>9,} {size.merchants:>9,} {size.candidates:>7.2f} "
              f"{size.hits / args.events:>7.2f} {ours:>17,.0f} {theirs:>10,.0f} {ratio:>16.2f}  "
              f"{'met' if ratio >= TARGET else 'MISSED'}")
    print()
    print("promo-engine and ZEN gave the same winner and discount for every event at every size.")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
