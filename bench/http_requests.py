"""The HTTP benchmark's requests: new payment events, and a driver per connection that
signs each request as a wallet backend does and checks every answer.

`EventSource` makes the payments (distinct event ids, users and merchants spread, amounts
10.00-500.00); `Driver` sends one endpoint's requests over its own keep-alive connection
(HMAC over timestamp, method, path and body, a fresh timestamp every request) and returns
what was wrong with an answer, or None. Apart from the phases that time them so the same
requests serve the warm-up and every measured phase.
"""
from __future__ import annotations

import http.client
import json
import random
from collections import Counter
from datetime import datetime, timezone

from bench.http_server import merchant_id
from promo_engine.api.auth import signed_headers

MCCS = ("5812", "5814", "5411", "5311", "5999")
CHANNELS = ("qr", "qr", "qr", "in_store", "in_store", "online")
REQUEST_TIMEOUT = 60.0

HEALTHZ, QUOTE, EVENTS = "GET /healthz", "POST /v1/quote", "POST /v1/events"
ENDPOINTS = (HEALTHZ, QUOTE, EVENTS)


class EventSource:
    """Payment events: distinct ids, users and merchants spread, amounts 10.00-500.00."""

    def __init__(self, tag: str, seed: int, users: int, merchants: int):
        self.tag, self.rng = tag, random.Random(seed)
        self.users, self.merchants, self.count = users, merchants, 0

    def next(self, with_id: bool = True) -> dict:
        rng = self.rng
        cents = rng.randint(1000, 50000)
        self.count += 1
        event = {"type": "payment", "user_id": f"u_{rng.randrange(self.users):05d}",
                 "occurred_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "merchant_id": merchant_id(rng.randrange(self.merchants)),
                 "amount": f"{cents // 100}.{cents % 100:02d}", "currency": "CNY",
                 "mcc": rng.choice(MCCS), "channel": rng.choice(CHANNELS)}
        if with_id:
            event = {"event_id": f"ev-{self.tag}-{self.count}", **event}
        return event


class Driver:
    """Sends one kind of request over one connection; `call` returns an error or None."""

    def __init__(self, base: tuple[str, int], endpoint: str, key_id: str, secret: str,
                 events: EventSource):
        self.conn = http.client.HTTPConnection(*base, timeout=REQUEST_TIMEOUT)
        self.endpoint, self.key_id, self.secret, self.events = endpoint, key_id, secret, events
        self.rewards: Counter = Counter()

    def connect(self) -> None:
        self.conn.connect()

    def close(self) -> None:
        self.conn.close()

    def call(self) -> str | None:
        if self.endpoint == HEALTHZ:
            return self._check(*self._send("GET", "/healthz", None, {}), expect=200)
        path = "/v1/events" if self.endpoint == EVENTS else "/v1/quote"
        event = self.events.next(with_id=self.endpoint == EVENTS)
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = signed_headers(self.key_id, self.secret, "POST", path, body)
        headers["Content-Type"] = "application/json"
        status, raw = self._send("POST", path, body, headers)
        problem = self._check(status, raw, expect=201 if self.endpoint == EVENTS else 200)
        if problem is None and self.endpoint == EVENTS:
            try:
                answer = json.loads(raw)
                if answer["event_id"] != event["event_id"]:
                    return f"201 for another event: {raw[:200]!r}"
                for reward in answer["rewards"]:
                    self.rewards[reward["campaign_id"] or "base points"] += 1
            except (ValueError, KeyError, TypeError):
                return f"201 with a body that is not an event response: {raw[:200]!r}"
        return problem

    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, raw

    @staticmethod
    def _check(status: int, raw: bytes, expect: int) -> str | None:
        return None if status == expect else f"status {status}: {raw[:300]!r}"
