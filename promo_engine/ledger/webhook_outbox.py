"""The webhooks outbox: the messages a change announces, written as delivery rows in the
change's own transaction, so none is lost and none is sent for a change that rolled back.

A message is written once per endpoint that wants its type. Which endpoints exist is read
from the database at most every `REFRESH_SECONDS` per process (`EndpointDirectory`): an
endpoint added or removed is written for within that time, and with no endpoint at all
nothing is written and an event costs nothing more. Dispatchers (`promo_engine/webhooks/`)
send the rows; this module only writes them.

Payloads are built here, once per message, and sent byte for byte: `{"id", "type",
"timestamp", "data"}` (docs/webhooks.md shows each type).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite

from promo_engine.ledger.models import CampaignThreshold, WebhookDelivery, WebhookEndpoint
from promo_engine.ledger.responses import dumps, iso

REWARD_GRANTED = "reward.granted"
REWARD_REVERSED = "reward.reversed"
POINTS_EXPIRED = "points.expired"
VOUCHER_REDEEMED = "voucher.redeemed"
CAMPAIGN_OPENED = "campaign.opened"
CAMPAIGN_CLOSED = "campaign.closed"
BUDGET_THRESHOLD = "campaign.budget_threshold"
REWARD_RELEASED = "reward.released"  # a reward held for review, released by an admin
REWARD_VOIDED = "reward.voided"  # ... or voided (ledger/holds.py)
TYPES = (REWARD_GRANTED, REWARD_REVERSED, POINTS_EXPIRED, VOUCHER_REDEEMED, CAMPAIGN_OPENED,
         CAMPAIGN_CLOSED, BUDGET_THRESHOLD, REWARD_RELEASED, REWARD_VOIDED)

REFRESH_SECONDS = 2.0  # the longest a process writes for an endpoint list that changed
THRESHOLDS = ((8, "0.8"), (10, "1.0"))  # tenths of the limit, and how the row names them
PENDING = "pending"

_deliveries = WebhookDelivery.__table__
_thresholds = CampaignThreshold.__table__


# -- endpoints ------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    id: str
    types: frozenset[str] | None  # None: every type

    def wants(self, message_type: str) -> bool:
        return self.types is None or message_type in self.types


def parse_types(stored: str | None) -> frozenset[str] | None:
    return None if not stored else frozenset(stored.split(","))


class EndpointDirectory:
    """The active endpoints of each database (engine), read at most every REFRESH_SECONDS.
    A process may hold several engines (tests, a CLI beside a server), hence per engine."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS):
        self.refresh_seconds = refresh_seconds
        self._loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def endpoints(self, bind) -> tuple[Endpoint, ...]:
        """`bind`: an Engine, or a Connection to read through (in its transaction)."""
        engine = getattr(bind, "engine", bind)
        entry = self._loaded.get(engine)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.refresh_seconds:
            return entry[1]
        statement = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.removed_at.is_(None)).order_by(WebhookEndpoint.id)
        if bind is engine:
            with engine.connect() as connection:
                rows = connection.execute(statement).all()
        else:
            rows = bind.execute(statement).all()
        endpoints = tuple(Endpoint(id, parse_types(types)) for id, types in rows)
        with self._lock:
            self._loaded[engine] = (now, endpoints)
        return endpoints

    def invalidate(self, bind=None) -> None:
        """Read again at the next write (this process changed the endpoints)."""
        with self._lock:
            if bind is None:
                self._loaded.clear()
            else:
                self._loaded.pop(getattr(bind, "engine", bind), None)


directory = EndpointDirectory()


# -- messages -------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    id: str  # the webhook-id header, the same for every endpoint
    type: str
    payload: str  # the body


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def message(message_type: str, data: dict, now: datetime) -> Message:
    message_id = new_message_id()
    return Message(message_id, message_type, dumps(
        {"id": message_id, "type": message_type, "timestamp": iso(now), "data": data}))


def event_messages(event_id: str, user_id: str, rewards: list[dict],
                   now: datetime) -> list[Message]:
    """An event's rewards as its response shows them: each a `reward.granted` (spent points,
    negative, included) or, with `reverses`, a `reward.reversed`; a voucher's discount is
    also its `voucher.redeemed`."""
    messages = []
    for reward in rewards:
        kind = REWARD_REVERSED if "reverses" in reward else REWARD_GRANTED
        messages.append(message(kind, {"event_id": event_id, "user_id": user_id,
                                       "reward": reward}, now))
        if "voucher_code" in reward and kind == REWARD_GRANTED:
            messages.append(message(VOUCHER_REDEEMED, {
                "event_id": event_id, "user_id": user_id, "code": reward["voucher_code"],
                "campaign_id": reward["campaign_id"], "amount": reward["amount"],
                "currency": reward["currency"], "reward_id": reward.get("reward_id")}, now))
    return messages


def expired_message(user_id: str, points: int, reward_ids: list[str],
                    now: datetime) -> Message:
    """One user's points that expired at `now` (the expiry entries' reward ids)."""
    return message(POINTS_EXPIRED, {"user_id": user_id, "points": points,
                                    "expired_at": iso(now), "reward_ids": reward_ids}, now)


def campaign_message(campaign_id: str, from_status: str | None, to_status: str,
                     now: datetime) -> Message | None:
    """`campaign.opened` or `campaign.closed` for a status change, or None for others."""
    kind = {"open": CAMPAIGN_OPENED, "closed": CAMPAIGN_CLOSED}.get(to_status)
    if kind is None or from_status == to_status or (kind == CAMPAIGN_CLOSED and from_status is None):
        return None  # not a change a wallet acts on (one created already over, too)
    return message(kind, {"campaign_id": campaign_id, "status": to_status,
                          "previous_status": from_status, "at": iso(now)}, now)


def threshold_message(campaign_id: str, threshold: str, measure: str,
                      now: datetime) -> Message:
    return message(BUDGET_THRESHOLD, {"campaign_id": campaign_id,
                                      "threshold": json.loads(threshold),
                                      "measure": measure}, now)


# -- delivery rows ----------------------------------------------------------------------

def delivery_rows(endpoints, messages, now: datetime) -> list[dict]:
    """A pending delivery per message and endpoint that wants its type, due now."""
    return [{"message_id": m.id, "endpoint_id": e.id, "type": m.type, "payload": m.payload,
             "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
            for m in messages for e in endpoints if e.wants(m.type)]


def event_delivery_rows(endpoints, rows) -> list[dict]:
    """The deliveries of one new event's rewards (`EventRows`, written with them)."""
    if not endpoints or not rows.bodies:
        return []
    event, now = rows.event, rows.event["created_at"]
    return delivery_rows(endpoints, event_messages(event["event_id"], event["user_id"],
                                                   rows.bodies, now), now)


def announce(session, messages, now: datetime) -> int:
    """Write `messages` for every endpoint wanting them, in the session's transaction;
    the number of rows written."""
    messages = [m for m in messages if m is not None]
    if not messages:
        return 0
    rows = delivery_rows(directory.endpoints(session.connection()), messages, now)
    if rows:
        session.execute(insert(_deliveries), rows)
    return len(rows)


# -- budget thresholds ----------------------------------------------------------------

@dataclass(frozen=True)
class Reached:
    """A campaign's counters at or past a threshold of one of its limits."""
    campaign_id: str
    threshold: str  # "0.8" | "1.0"
    measure: str  # budget | max_redemptions


def thresholds_reached(campaign_id: str, spent: int, redemptions: int,
                       budget_limit: int | None, max_redemptions: int | None) -> list[Reached]:
    """The thresholds the counters (after a reservation) are at or past: compared in whole
    numbers (10 x used >= tenths x limit), the budget's before the redemptions'."""
    reached = []
    for tenths, name in THRESHOLDS:
        for measure, used, limit in (("budget", spent, budget_limit),
                                     ("max_redemptions", redemptions, max_redemptions)):
            if limit is not None and limit > 0 and 10 * used >= tenths * limit:
                reached.append(Reached(campaign_id, name, measure))
                break
    return reached


def used_up(engine, campaign_id: str, budget_limit: int | None, max_redemptions: int | None,
            read_usage) -> list[Reached]:
    """A reward refused for want of room: the limit is used up as far as the campaign can
    use it, so 100% (and 80%, if that went unannounced) is reached even when what is left is
    less than a reward (a budget of 10.00 paying 3.00 rewards stops at 9.00). Which limit
    refused is read (`read_usage() -> (spent, redemptions)`) only when the campaign has both
    and this process has not seen its 100% announced: the first refusals after it."""
    if announced_thresholds.known(engine, campaign_id, "1.0"):
        return []
    if max_redemptions is None:
        measure = "budget"
    elif budget_limit is None:
        measure = "max_redemptions"
    else:
        _, redemptions = read_usage()
        measure = "max_redemptions" if redemptions + 1 > max_redemptions else "budget"
    return [Reached(campaign_id, name, measure) for _, name in THRESHOLDS]


class AnnouncedThresholds:
    """Thresholds this process knows were announced (per engine), so an event past 80% of
    a budget does not try to announce it again: only the first events after a threshold
    pay the extra INSERT, which finds the row and writes nothing."""

    def __init__(self):
        self._known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def new(self, engine, reached: list[Reached]) -> list[Reached]:
        known = self._known.get(engine, ())
        fresh = {(r.campaign_id, r.threshold): r for r in reached
                 if (r.campaign_id, r.threshold) not in known}
        return [fresh[key] for key in sorted(fresh)]  # one order: no deadlock between two

    def known(self, engine, campaign_id: str, threshold: str) -> bool:
        return (campaign_id, threshold) in self._known.get(engine, ())

    def remember(self, engine, reached: list[Reached]) -> None:
        """After the commit: the rows exist now, whoever wrote them."""
        if reached:
            self._known.setdefault(engine, set()).update(
                (r.campaign_id, r.threshold) for r in reached)

    def forget(self, engine=None) -> None:
        if engine is None:
            self._known.clear()
        else:
            self._known.pop(engine, None)


announced_thresholds = AnnouncedThresholds()


def announce_thresholds(session, reached: list[Reached], now: datetime) -> int:
    """Record each threshold once, and announce those this transaction recorded first."""
    if not reached:
        return 0
    dialect = session.get_bind().dialect.name
    insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
    written = []
    for r in reached:
        recorded = session.execute(
            insert_for(_thresholds).values(campaign_id=r.campaign_id, threshold=r.threshold,
                                           measure=r.measure, reached_at=now)
            .on_conflict_do_nothing(index_elements=["campaign_id", "threshold"])
            .returning(_thresholds.c.campaign_id)).first()
        if recorded is not None:
            written.append(threshold_message(r.campaign_id, r.threshold, r.measure, now))
    return announce(session, written, now)


# Budget thresholds the event's reservations reached: each recorded once (the primary key;
# sorted, so two events never wait for each other's rows in opposite orders), and announced
# only by the transaction that recorded it. Rare: only the first events past a threshold.
# On PostgreSQL, in the event's write (`postgres_writes.py`).
PG_THRESHOLDS = """
WITH reached AS (
  INSERT INTO campaign_thresholds (campaign_id, threshold, measure, reached_at)
  SELECT t.campaign_id, t.threshold, t.measure, %(now)s
  FROM unnest(%(t_campaign_id)s::text[], %(t_threshold)s::text[], %(t_measure)s::text[])
       WITH ORDINALITY AS t(campaign_id, threshold, measure, position)
  ORDER BY t.position
  ON CONFLICT DO NOTHING
  RETURNING campaign_id, threshold
)
INSERT INTO webhook_deliveries (message_id, endpoint_id, type, payload, status, attempts,
                                next_attempt_at, created_at)
SELECT w.message_id, w.endpoint_id, 'campaign.budget_threshold', w.payload, 'pending', 0,
       %(now)s, %(now)s
FROM unnest(%(w_campaign_id)s::text[], %(w_threshold)s::text[], %(w_message_id)s::text[],
            %(w_endpoint_id)s::text[], %(w_payload)s::text[])
     AS w(campaign_id, threshold, message_id, endpoint_id, payload)
JOIN reached USING (campaign_id, threshold)
"""
