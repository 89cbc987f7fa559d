"""The requests of the load and how their answers are judged: a generator's plan for a
phase, new signed payment events (the very same bodies and headers for the floor), and the
check every response goes through (201, the event echoed, the expected campaign's reward).

Apart from the generator because the start-up priming sends the same requests one at a
time and judges them the same way, and `bench/record.py` records the same payments.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from bench.bare_app import PATH as BARE_PATH
from bench.load_setup import HOT_MERCHANTS, hot_campaign, hot_merchant, spread_campaign, spread_merchant
from promo_engine.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request

EVENTS_PATH = "/v1/events"
REQUEST_TIMEOUT = 60.0


@dataclass
class Plan:
    """What one generator process does in one phase (sent to it when it is forked)."""
    kind: str  # "events" or "bare"
    scenario: str  # "spread" or "hot" (which merchants; bare gets the same bodies)
    mode: str  # "closed" or "open"
    threads: int
    seconds: float
    host: str
    port: int
    key_id: str
    secret: str
    tag: str
    id_prefix: str  # unique per phase and process
    seed: int
    users: int
    spread: int
    prebuild: int  # closed: requests built per thread before the start
    rate: float = 0.0  # open: this process's share of the arrival rate (per second)
    arrivals: str = "poisson"


def payment_body(event_id: str, user_id: str, merchant_id: str, cents: int,
                 occurred_at: str) -> dict:
    """The payment every benchmark sends: base points and, at a campaign's merchant, one
    discount."""
    return {"event_id": event_id, "type": "payment", "user_id": user_id,
            "occurred_at": occurred_at, "merchant_id": merchant_id,
            "amount": f"{cents // 100}.{cents % 100:02d}", "currency": "CNY",
            "mcc": "5812", "channel": "qr"}


class RequestMaker:
    """Signed payment requests with new event ids; the body is the same for bare."""

    def __init__(self, plan: Plan, salt: int):
        self.plan = plan
        self.path = EVENTS_PATH if plan.kind == "events" else BARE_PATH
        self.rng = random.Random(plan.seed * 1009 + salt)
        self.prefix = f"{plan.id_prefix}-{salt}-"
        self.count = 0
        self.occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.timestamp = str(int(time.time()))
        self.user_prefix = f"u_{plan.tag}_"

    def make(self, merchant_index: int | None = None) -> tuple[bytes, dict, str, str | None]:
        """A new signed payment, at a random merchant of the scenario unless one is given."""
        plan, rng = self.plan, self.rng
        self.count += 1
        event_id = f"{self.prefix}{self.count}"
        if plan.scenario == "hot":
            i = rng.randrange(HOT_MERCHANTS) if merchant_index is None else merchant_index
            merchant, campaign = hot_merchant(plan.tag, i), hot_campaign(plan.tag)
        else:
            i = rng.randrange(plan.spread) if merchant_index is None else merchant_index
            merchant, campaign = spread_merchant(plan.tag, i), spread_campaign(plan.tag, i)
        cents = rng.randint(1000, 50000)
        user_id = f"{self.user_prefix}{rng.randrange(plan.users):05d}"
        body = json.dumps(payment_body(event_id, user_id, merchant, cents, self.occurred)).encode()
        headers = {"Content-Type": "application/json", KEY_HEADER: plan.key_id,
                   TIMESTAMP_HEADER: self.timestamp,
                   SIGNATURE_HEADER: sign_request(plan.secret, self.timestamp, "POST", self.path, body)}
        return body, headers, event_id, campaign if plan.kind == "events" else None


def check_response(status: int, raw: bytes, event_id: str, campaign: str | None) -> str | None:
    """None if the answer is the expected one; else what was wrong (for the report)."""
    if status != 201:
        return f"status {status}: {raw[:300]!r}"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"201 with a body that is not JSON: {raw[:300]!r}"
    if not isinstance(body, dict) or body.get("event_id") != event_id:
        return f"201 for another event: {raw[:300]!r}"
    if campaign is not None and not any(isinstance(r, dict) and r.get("campaign_id") == campaign
                                        for r in body.get("rewards") or ()):
        return f"201 without the reward of {campaign}: {raw[:300]!r}"
    return None


def error_kind(problem: str) -> str:
    """What the error counters count a problem under: its text up to the first colon."""
    return problem.split(":", 1)[0]
