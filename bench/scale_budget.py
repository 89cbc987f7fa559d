"""A hot campaign's budget split into N sub-budgets, each on a Redis Cluster slot of its own:
the protocol docs/scaling.md proposes, written out so that it can be measured
(`bench/scale.py`) and its exactness tested against a real Redis
(`tests/test_bench_scale_smoke.py`). Not used by promo_engine itself.

Sub-budget k of campaign C keeps its keys under the hash tag `{camp:C:k}`, so every script
below touches the keys of one slot only, as a Redis Cluster requires:

    promo:{camp:C:k}:budget     hash  q (its quota), s (reserved from it), v (version)
    promo:{camp:C:k}:inflight   zset  reservation id -> deadline (as `{promo}:inflight` today)
    promo:{camp:C:k}:payloads   hash  reservation id -> cost
    promo:{camp:C:k}:xfer_out   hash  transfer id -> "<to> <amount>": quota given, not yet done
    promo:{camp:C:k}:xfer_in    hash  transfer id -> amount: quota received (idempotence)

Why it never over-grants: every sub-budget's check-and-reserve is one atomic script on its
slot (s + cost <= q), and quota only moves by a debit of the donor (GIVE) *before* the credit
of the recipient (TAKE, at most once per transfer id), so at every instant the sum of the q
is at most the campaign's budget B, and the sum of the s (what was granted) at most that.
A process dying between GIVE and TAKE leaves quota in transit, recorded in the donor's
`xfer_out`: under-spending until `recover` replays the TAKE (idempotent), never more.

Why it refuses exactly when a single key would: a request that does not fit in its own
sub-budget first gathers headroom from the others; it is refused only after two collects in
a row saw the same version of every sub-budget (any change that adds headroom or moves
quota bumps `v`) and less left in total (headroom plus quota in transit) than its cost. Two
identical collects are a snapshot (the classic double collect), so there was an instant at
which the whole campaign had less than `cost` left: the same answer one key would have given
at that instant. That covers the last unit: a unit sitting in another sub-budget is found,
and one in transit is waited for (or, if its mover died, recovered), never lost.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import redis

# KEYS: budget, inflight, payloads; ARGV: reservation id, deadline (ms), cost.
# {1, s, q} reserved; {0, headroom} when the cost does not fit in this sub-budget.
SUB_RESERVE = """
local q = tonumber(redis.call('HGET', KEYS[1], 'q') or '0')
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local cost = tonumber(ARGV[3])
if s + cost > q then return {0, q - s} end
s = redis.call('HINCRBY', KEYS[1], 's', cost)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return {1, s, q}
"""

# The transaction committed: the reservation leaves the in-flight set (what `CONFIRM` does
# today, without the confirmed log reconciliation reads). KEYS: inflight, payloads; ARGV: id.
SUB_CONFIRM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# The transaction rolled back: give the cost back (headroom grows: the version moves).
# KEYS: budget, inflight, payloads; ARGV: id.
SUB_RELEASE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local cost = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 's', -tonumber(cost))
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""

# Donor side of a transfer. KEYS: budget, xfer_out; ARGV: transfer id, recipient, need.
# Gives half its headroom (at least `need`) when it has `need`, else all it has (the
# recipient gathers from several): halves keep sub-budgets balanced as work-stealing does.
# Returns what was given (0: nothing to give).
GIVE = """
local q = tonumber(redis.call('HGET', KEYS[1], 'q') or '0')
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local h, need = q - s, tonumber(ARGV[3])
if h <= 0 then return 0 end
local give = h
if h >= need then give = math.max(need, math.floor(h / 2)) end
redis.call('HINCRBY', KEYS[1], 'q', -give)
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. give)
return give
"""

# Recipient side, at most once per transfer id. KEYS: budget, xfer_in; ARGV: id, amount.
TAKE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'q', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""

# Donor side: the transfer arrived. KEYS: budget, xfer_out; ARGV: id.
DONE = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'v', 1) end
return 1
"""

# One sub-budget as it is now. KEYS: budget, xfer_out.
# Returns {q, s, v, quota it gave that has not arrived yet (or arrived, not yet marked done)}.
PEEK = """
local b = redis.call('HMGET', KEYS[1], 'q', 's', 'v')
local transit = 0
for _, value in ipairs(redis.call('HVALS', KEYS[2])) do
  transit = transit + tonumber(string.match(value, ' (%d+)$'))
end
return {tonumber(b[1] or '0'), tonumber(b[2] or '0'), tonumber(b[3] or '0'), transit}
"""

# How many rounds of "gather, then retry" a request may take before it gives up without an
# answer (the caller would answer 503 and the wallet retry): under heavy contention for the
# last units, or while quota a dead process was moving is still in transit (until
# `recover`) and could make the cost fit. The concurrency tests count it and expect none.
MAX_ROUNDS = 50


def sub_tag(campaign_id: str, k: int) -> str:
    return f"{{camp:{campaign_id}:{k}}}"


@dataclass(frozen=True)
class SubKeys:
    budget: str
    inflight: str
    payloads: str
    xfer_out: str
    xfer_in: str

    @classmethod
    def of(cls, campaign_id: str, k: int, prefix: str = "promo") -> SubKeys:
        base = f"{prefix}:{sub_tag(campaign_id, k)}"
        return cls(f"{base}:budget", f"{base}:inflight", f"{base}:payloads",
                   f"{base}:xfer_out", f"{base}:xfer_in")

    def all(self) -> tuple[str, ...]:
        return (self.budget, self.inflight, self.payloads, self.xfer_out, self.xfer_in)


class Exhausted(Exception):
    """MAX_ROUNDS passed without an answer (contention at the last units)."""


class SplitBudget:
    """A campaign's budget over `n` sub-budgets. `clients[k]` is the Redis of sub-budget k:
    one client for all of them on a single Redis, or one per shard to spread them over
    several servers (what a Redis Cluster client does by slot)."""

    def __init__(self, clients: list[redis.Redis], campaign_id: str, n: int, *,
                 prefix: str = "promo", ttl_ms: int = 5000, rng: random.Random | None = None):
        self.n = n
        self.keys = [SubKeys.of(campaign_id, k, prefix) for k in range(n)]
        self.clients = [clients[k % len(clients)] for k in range(n)]
        self.ttl_ms = ttl_ms
        self.rng = rng or random.Random()
        self.rounds_given_up = 0
        self.transfers = 0  # quota moves this object made (GIVE that gave something)
        self._scripts = {}
        for name, source in (("reserve", SUB_RESERVE), ("confirm", SUB_CONFIRM),
                             ("release", SUB_RELEASE), ("give", GIVE), ("take", TAKE),
                             ("done", DONE), ("peek", PEEK)):
            # One registered script per client: redis-py keeps the digest per object.
            self._scripts[name] = [c.register_script(source) for c in self.clients]

    def _run(self, name: str, k: int, keys: list[str], args: list):
        return self._scripts[name][k](keys=keys, args=args)

    # -- set-up ------------------------------------------------------------------------

    def create(self, budget: int) -> None:
        """Deal `budget` out evenly (the remainder to the first ones); clears old state."""
        for k, keys in enumerate(self.keys):
            self.clients[k].delete(*keys.all())
            share = budget // self.n + (1 if k < budget % self.n else 0)
            self.clients[k].hset(keys.budget, mapping={"q": share, "s": 0, "v": 0})

    def delete(self) -> None:
        for k, keys in enumerate(self.keys):
            self.clients[k].delete(*keys.all())

    # -- the event path ----------------------------------------------------------------

    def reserve(self, cost: int, home: int | None = None) -> tuple[int, str] | None:
        """Reserve `cost` (sub-budget, reservation id), or None when the whole campaign had
        less than `cost` left at some instant during the call. `home` is where the request
        lands (a worker would use a hash of the event, or its own index); random if None."""
        home = self.rng.randrange(self.n) if home is None else home
        rid = "r:" + secrets.token_hex(8)
        for _ in range(MAX_ROUNDS):
            keys = self.keys[home]
            deadline = _now_ms() + self.ttl_ms
            reply = self._run("reserve", home, [keys.budget, keys.inflight, keys.payloads],
                              [rid, deadline, cost])
            if reply[0] == 1:
                return home, rid
            if self._gather(home, cost - int(reply[1])):
                continue
            if self._proven_short(cost):
                return None
        self.rounds_given_up += 1
        raise Exhausted(f"no answer for a cost of {cost} after {MAX_ROUNDS} rounds")

    def confirm(self, home: int, rid: str) -> None:
        keys = self.keys[home]
        self._run("confirm", home, [keys.inflight, keys.payloads], [rid])

    def release(self, home: int, rid: str) -> None:
        keys = self.keys[home]
        self._run("release", home, [keys.budget, keys.inflight, keys.payloads], [rid])

    # -- moving quota --------------------------------------------------------------------

    def _gather(self, home: int, need: int) -> bool:
        """Move headroom from the other sub-budgets into `home` until it has `need` more;
        whether it got them (a concurrent request may take them before we retry)."""
        gathered = 0
        start = self.rng.randrange(self.n)
        for i in range(self.n):
            donor = (start + i) % self.n
            if donor == home:
                continue
            gathered += self.transfer(donor, home, need - gathered)
            if gathered >= need:
                return True
        return False

    def transfer(self, donor: int, to: int, need: int) -> int:
        """GIVE on the donor's slot, TAKE on the recipient's, DONE on the donor's: three
        scripts, each on one slot. What was moved."""
        xid = "x:" + secrets.token_hex(8)
        d = self.keys[donor]
        given = int(self._run("give", donor, [d.budget, d.xfer_out], [xid, to, need]))
        if given:
            self.transfers += 1
            self._take(to, xid, given)
            self._run("done", donor, [d.budget, d.xfer_out], [xid])
        return given

    def _take(self, to: int, xid: str, amount: int) -> None:
        t = self.keys[to]
        self._run("take", to, [t.budget, t.xfer_in], [xid, amount])

    def give_only(self, donor: int, to: int, need: int) -> int:
        """The first step of a transfer alone: what a process that dies right after GIVE
        leaves behind (for the recovery test)."""
        d = self.keys[donor]
        return int(self._run("give", donor, [d.budget, d.xfer_out],
                             ["x:" + secrets.token_hex(8), to, need]))

    def recover(self) -> int:
        """Finish every transfer left in transit (the rebalancer's sweep; a real one would
        only touch transfers older than a few seconds). TAKE is idempotent, so a transfer
        whose owner is still alive and finishes it too is credited once. The count."""
        finished = 0
        for donor, d in enumerate(self.keys):
            for xid, value in self.clients[donor].hgetall(d.xfer_out).items():
                to, amount = value.decode().split()
                self._take(int(to), xid.decode(), int(amount))
                self._run("done", donor, [d.budget, d.xfer_out], [xid.decode()])
                finished += 1
        return finished

    # -- the refusal -----------------------------------------------------------------

    def collect(self) -> list[tuple[int, int, int, int]]:
        """(q, s, v, quota in transit from it) of every sub-budget, one at a time."""
        return [tuple(int(x) for x in self._run("peek", k, [keys.budget, keys.xfer_out], []))
                for k, keys in enumerate(self.keys)]

    def _proven_short(self, cost: int) -> bool:
        """Whether two collects in a row agree on every version and show less than `cost`
        left in all: headroom plus quota in transit (counted twice between its TAKE and
        DONE, which only errs towards "not proven"). Then at an instant between them the
        whole campaign had less than `cost` left."""
        first = self.collect()
        if _left(first) >= cost:
            return False
        second = self.collect()
        if [v for _, _, v, _ in first] != [v for _, _, v, _ in second]:
            return False
        return _left(second) < cost

    def totals(self) -> tuple[int, int]:
        """(sum of quotas, sum reserved) as Redis holds them now."""
        rows = self.collect()
        return sum(r[0] for r in rows), sum(r[1] for r in rows)


def _left(rows) -> int:
    return sum(q - s + transit for q, s, _, transit in rows)


def _now_ms() -> int:
    import time
    return time.time_ns() // 1_000_000


def grant_until_refused(redis_url: str, campaign_id: str, n: int, costs: list[int],
                        seed: int, prefix: str, result_queue) -> None:
    """A worker process of the exactness test: reserve (and confirm) costs drawn from
    `costs` until a reservation is refused; report what it was granted."""
    client = redis.Redis.from_url(redis_url)
    rng = random.Random(seed)
    budget = SplitBudget([client], campaign_id, n, prefix=prefix, rng=rng)
    granted, grants = 0, 0
    try:
        while True:
            cost = rng.choice(costs)
            got = budget.reserve(cost)
            if got is None:
                break
            budget.confirm(*got)
            granted += cost
            grants += 1
        result_queue.put(("ok", granted, grants, budget.rounds_given_up, budget.transfers))
    except Exception as exc:  # reported, so that the test fails with the reason
        result_queue.put(("error", repr(exc), grants, budget.rounds_given_up, budget.transfers))
    finally:
        client.close()
