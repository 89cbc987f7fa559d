"""The check both parts of the webhooks benchmark end with: the outbox holds exactly one
`reward.granted` delivery per reward of every event written while an endpoint was there,
to that endpoint, and none for any other event. Deliveries of other types (a campaign
opened while an endpoint was there) are counted apart.

Apart because both parts judge their database the same way: a figure measured with
deliveries missing, doubled or sent to the wrong endpoint would measure the wrong work.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

_REWARDS = """
SELECT e.event_id, r.reward_id FROM events e JOIN rewards r ON r.event_pk = e.id
"""
_DELIVERIES = """
SELECT payload::jsonb #>> '{data,event_id}', payload::jsonb #>> '{data,reward,reward_id}',
       endpoint_id, type
FROM webhook_deliveries WHERE type IN ('reward.granted', 'reward.reversed')
"""
_OTHER_TYPES = """
SELECT type, count(*) FROM webhook_deliveries
WHERE type NOT IN ('reward.granted', 'reward.reversed') GROUP BY type
"""
_STATUSES = "SELECT status, count(*) FROM webhook_deliveries GROUP BY status"


@dataclass
class OutboxCheck:
    events: int = 0  # events with rewards
    announced_events: int = 0  # of those, written while an endpoint was there
    rewards: int = 0  # of the announced events
    deliveries: int = 0  # rows in the outbox of rewards
    other_types: Counter = field(default_factory=Counter)  # rows of other types, by type
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def check_outbox(dsn: str, endpoint_of: dict[str, str] | None = None,
                 every_event_to: str | None = None) -> OutboxCheck:
    """`endpoint_of`: event_id -> the endpoint its rewards must be announced to, for the
    events written while it was there; every other event must have no delivery. Or
    `every_event_to`: the one endpoint every event's rewards must be announced to."""
    import psycopg
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        rewards = conn.execute(_REWARDS).fetchall()
        deliveries = conn.execute(_DELIVERIES).fetchall()
        statuses = Counter(dict(conn.execute(_STATUSES).fetchall()))
        other_types = Counter(dict(conn.execute(_OTHER_TYPES).fetchall()))
    if endpoint_of is None:
        endpoint_of = {event_id: every_event_to for event_id, _ in rewards}
    expected = Counter((event_id, reward_id, endpoint_of[event_id], "reward.granted")
                       for event_id, reward_id in rewards if event_id in endpoint_of)
    found = Counter(deliveries)
    result = OutboxCheck(events=len({event_id for event_id, _ in rewards}),
                         announced_events=len({e for e, _ in rewards if e in endpoint_of}),
                         rewards=sum(expected.values()), deliveries=len(deliveries),
                         statuses=statuses, other_types=other_types)
    missing, extra = expected - found, found - expected
    doubled = [key for key, n in found.items() if n > 1]
    if missing:
        result.problems.append(f"{sum(missing.values())} rewards without their delivery, "
                               f"e.g. {next(iter(missing))}")
    if extra:
        result.problems.append(f"{sum(extra.values())} deliveries no reward called for "
                               f"(doubled, of an event written without an endpoint, or to "
                               f"another endpoint), e.g. {next(iter(extra))}")
    if doubled:
        result.problems.append(f"{len(doubled)} rewards announced more than once to one "
                               f"endpoint, e.g. {doubled[0]}")
    if not endpoint_of.keys() <= {event_id for event_id, _ in rewards}:
        result.problems.append("events announced for are missing from the ledger or have "
                               "no rewards")
    return result
