"""Part 1 of `bench/webhooks.py`: the write path with one webhook endpoint against the same
write path with none, in one process and one thread, on PostgreSQL and Redis.

As in `bench/record.py` (same world: 200 spread campaigns, 20,000 users, new payments each
earning base points and one discount, `record_event_body`), rounds alternate, here
between "no endpoint" and "one endpoint wanting every type": before each round with it an
endpoint is added, after it the endpoint is removed, and the outbox's endpoint list is
read again (`webhook_outbox.directory`, refreshed by `add_endpoint` / `remove_endpoint`).
With it, each event writes two more rows in its one write statement (a `reward.granted`
per reward, `_PG_WRITE_EVENT_ANNOUNCED`), their JSON payloads built in Python first.

Three figures per event, medians of the rounds: this process's CPU time; the wall time,
which holds PostgreSQL's work for the extra rows too (the write and its COMMIT are
synchronous, in this one thread); and the CPU time of this database's PostgreSQL
backends (`load_cpu.pg_backends_cpu`; WAL writer, checkpointer and autovacuum not
counted). One more round of each times the write itself and, with the endpoint, the
building of the messages, to show where the difference goes.

Apart from the dispatch part (`webhooks_dispatch.py`) because it runs the app in this
process, where the other part runs servers and measures from outside.
"""
from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.load_cpu import pg_backends_cpu
from bench.load_setup import (SECRET_KEY, ZONE, Database, campaign_yaml, redis_prefix,
                              run_cli, spread_campaign)
from bench.processes import cli_command
from bench.record import Bodies
from bench.webhooks_ledger import OutboxCheck, check_outbox

CLIENT_ID = "bench-webhooks"
ROUNDS, PER_ROUND = 10, 500
URL = "http://127.0.0.1:9/hooks"  # never sent to: no dispatcher runs in this part
OFF, ON = "no endpoint", "one endpoint"


@dataclass
class WriteResult:
    rounds: int
    per_round: int
    campaigns: int
    users: int
    server_version: str
    synchronous_commit: str
    redis_version: str
    cpu: dict = field(default_factory=lambda: {OFF: [], ON: []})  # ms per event, per round
    wall: dict = field(default_factory=lambda: {OFF: [], ON: []})
    pg: dict = field(default_factory=lambda: {OFF: [], ON: []})
    steps: dict = field(default_factory=dict)  # mode -> {step: ms per event}
    stepped: dict = field(default_factory=dict)  # mode -> (cpu, wall) ms per event
    stored: int = 0
    answered: int = 0
    outbox: OutboxCheck | None = None
    statement_bytes: dict = field(default_factory=dict)  # mode -> its write statement's size

    def ratio(self, figure: str) -> float:
        values = getattr(self, figure)
        return statistics.median(values[ON]) / statistics.median(values[OFF])

    @property
    def problems(self) -> list[str]:
        found = list(self.outbox.problems) if self.outbox else ["the outbox was not checked"]
        if self.stored != self.answered:
            found.append(f"{self.stored} events stored, {self.answered} answered 201")
        return found


class Timers:
    """CPU and wall time spent in named functions, by wrapping them in place."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, owner, name: str, step: str) -> None:
        original = getattr(owner, name)
        self.cpu.setdefault(step, 0.0)
        self.wall.setdefault(step, 0.0)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.cpu[step] += time.process_time() - cpu
                self.wall[step] += time.perf_counter() - wall

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _pg_cpu(database: str) -> dict[int, float]:
    return pg_backends_cpu(database)


def _pg_since(before: dict[int, float], after: dict[int, float]) -> float:
    """Backends that started meanwhile count whole (the pool keeps its connections)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def run_write_path(args, tag: str, database: Database, redis_client,
                   redis_version: str) -> WriteResult:
    prefix = redis_prefix(tag)
    env = dict(os.environ, DATABASE_URL=database.url, REDIS_URL=args.redis_url,
               SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE, PROMO_REDIS_PREFIX=prefix)
    env.pop("PROMO_API_RATE_LIMIT", None)
    with tempfile.TemporaryDirectory() as workdir:
        run_cli(cli_command() + ["db", "upgrade"], env, Path(workdir), "promo-engine db upgrade")
        campaigns = Path(workdir) / "campaigns.yaml"
        campaigns.write_text(campaign_yaml(tag, ("spread",), args.campaigns,
                                           datetime.now(timezone.utc)))
        run_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, Path(workdir),
                "promo-engine campaigns apply")
    # A prefix no reservation was ever made under has none in flight: no settle period.
    redis_client.set(f"{prefix}:epoch", 0)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return _measure(args, tag, database, redis_version)
    finally:
        for key, value in saved.items():  # part 2 starts from the caller's environment
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _measure(args, tag: str, database: Database, redis_version: str) -> WriteResult:
    from promo_engine.api.recording import record_event_body
    from promo_engine.app import create_app
    from promo_engine.config import Settings
    from promo_engine.coordination.reservations import NotReady
    from promo_engine.ledger import postgres_writes, webhook_outbox
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service
    from promo_engine.webhooks.endpoints import add_endpoint, remove_endpoint
    from psycopg._queries import PostgresQuery  # where a statement's text is parsed

    app = create_app(Settings.from_env())
    service = promo_service(app)
    bodies = Bodies(tag, args.campaigns, args.users)
    result = WriteResult(args.rounds, args.per_round, args.campaigns, args.users,
                         database.server_version, database.settings["synchronous_commit"],
                         redis_version)
    endpoint_of: dict[str, str] = {}  # event_id -> the endpoint there was when it was written

    def record(body: dict) -> None:
        _, recorded = record_event_body(service, CLIENT_ID, body)
        if recorded.status != 201:
            raise SystemExit(f"event {body['event_id']} answered {recorded.status}")
        result.answered += 1
        db.session.remove()  # as at the end of a request

    with app.app_context():
        # Each campaign's Redis counter is built from the ledger on its first event.
        for merchant in range(args.campaigns):
            body = bodies.make(merchant)
            for _ in range(50):
                try:
                    record(body)
                    break
                except NotReady:
                    time.sleep(0.1)
            else:
                raise SystemExit(f"campaign {spread_campaign(tag, merchant)} never got ready")

    def timed_round(mode: str) -> tuple[float, float, float]:
        """(CPU, wall, PostgreSQL CPU) in ms per event of one round in `mode`."""
        batch = [bodies.make() for _ in range(args.per_round)]
        endpoint_id = None
        with app.app_context():
            if mode == ON:
                endpoint_id = add_endpoint(URL, None)[0].id  # and the list read again
                endpoint_of.update((body["event_id"], endpoint_id) for body in batch)
            # The list read now, not by the round's first event (read again every 2 s, in
            # both modes alike).
            webhook_outbox.directory.endpoints(db.engine)
            pg_before = _pg_cpu(database.name)
            cpu, wall = time.process_time(), time.perf_counter()
            for body in batch:
                record(body)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            pg = _pg_since(pg_before, _pg_cpu(database.name))
            if endpoint_id is not None:
                remove_endpoint(endpoint_id)  # its rows stay (failed: never to be sent)
            db.session.remove()
        return tuple(1000 * x / args.per_round for x in (cpu, wall, pg))

    for i in range(args.rounds):
        # Each mode goes first in every other round: neither always follows the other.
        for mode in ((OFF, ON) if i % 2 == 0 else (ON, OFF)):
            cpu, wall, pg = timed_round(mode)
            result.cpu[mode].append(cpu)
            result.wall[mode].append(wall)
            result.pg[mode].append(pg)

    for mode in (OFF, ON):
        timers = Timers()
        timers.wrap(postgres_writes.PostgresEventWrites, "write", "write")
        timers.wrap(postgres_writes, "event_delivery_rows", "messages")
        timers.wrap(PostgresQuery, "convert", "psycopg")
        try:
            cpu, wall, _ = timed_round(mode)
        finally:
            timers.restore()
        result.stepped[mode] = (cpu, wall)
        result.steps[mode] = {f"{step} {clock}": 1000 * seconds / args.per_round
                              for clock, spent in (("cpu", timers.cpu), ("wall", timers.wall))
                              for step, seconds in spent.items()}

    result.statement_bytes = {OFF: len(postgres_writes._PG_WRITE_EVENT.encode()),
                              ON: len(postgres_writes._PG_WRITE_EVENT_ANNOUNCED.encode())}
    with app.app_context():
        result.stored = db.session.execute(
            db.text("SELECT count(*) FROM events WHERE client_id = :c"),
            {"c": CLIENT_ID}).scalar()
        db.session.remove()
    service.close()
    with app.app_context():
        db.engine.dispose()
    result.outbox = check_outbox(database.dsn, endpoint_of)
    return result


def print_write_report(result: WriteResult) -> None:
    print(f"Part 1, the write path in one process, one thread: PostgreSQL "
          f"{result.server_version} (synchronous_commit {result.synchronous_commit}), Redis "
          f"{result.redis_version}; {result.campaigns} campaigns, {result.users:,} users; "
          f"{result.rounds} rounds of {result.per_round} events in each mode, alternating "
          f"(each event: base points and one discount, so two deliveries with an endpoint).")
    print("Per event (ms), medians of the rounds:")
    print(f"  {'':42} {'median':>7} {'min':>7} {'max':>7}")
    for figure, label in (("cpu", "CPU of this process"), ("wall", "wall time"),
                          ("pg", "PostgreSQL backends' CPU")):
        for mode in (OFF, ON):
            values = getattr(result, figure)[mode]
            print(f"  {label + ', ' + mode:42} {statistics.median(values):7.3f} "
                  f"{min(values):7.3f} {max(values):7.3f}")
    cpu, wall, pg = (result.ratio(f) for f in ("cpu", "wall", "pg"))
    print(f"webhooks on / off per event: CPU {cpu:.2f}, wall {wall:.2f} (target <= 1.10)")
    print(f"  PostgreSQL backends' CPU on / off {pg:.2f}; verdict: CPU "
          f"{'met' if cpu <= 1.10 else 'MISSED'}, wall {'met' if wall <= 1.10 else 'MISSED'}")
    off, on = result.steps.get(OFF, {}), result.steps.get(ON, {})
    if off and on:
        print_steps(result, off, on)
    check = result.outbox
    if check is not None and not check.problems:
        others = "".join(f"; also {n:,} {kind}" for kind, n in sorted(check.other_types.items()))
        print(f"Outbox: {check.announced_events:,} events written with the endpoint, "
              f"{check.rewards:,} rewards, {check.deliveries:,} deliveries (one per reward); "
              f"{check.events - check.announced_events:,} events written without one, none "
              f"for them{others}.")
    print(f"Ledger: {result.stored:,} events stored, {result.answered:,} answered 201.")


def print_steps(result: WriteResult, off: dict, on: dict) -> None:
    """The stepped rounds side by side, and what the write's extra time is made of."""
    print("Where the difference goes (one more round of each, ms per event):")
    print(f"  {'':52} {'none':>7} {'one':>7} {'one - none':>10}")
    rows = (("whole event, CPU", result.stepped[OFF][0], result.stepped[ON][0]),
            ("whole event, wall", result.stepped[OFF][1], result.stepped[ON][1]),
            ("write and commit (PostgresEventWrites.write), CPU", off["write cpu"],
             on["write cpu"]),
            ("write and commit, wall", off["write wall"], on["write wall"]),
            ("messages built (JSON, ids: in the write), CPU", off["messages cpu"],
             on["messages cpu"]),
            ("psycopg: statements parsed, parameters adapted, CPU", off["psycopg cpu"],
             on["psycopg cpu"]))
    for label, a, b in rows:
        print(f"  {label:52} {a:7.3f} {b:7.3f} {b - a:10.3f}")
    extra = {key: on[key] - off[key] for key in on}
    print(f"  The write's extra CPU, {extra['write cpu']:.3f} ms: messages "
          f"{extra['messages cpu']:.3f}; psycopg's parsing and adapting "
          f"{extra['psycopg cpu']:.3f} (most of the latter in the write); the rest "
          f"{extra['write cpu'] - extra['messages cpu'] - extra['psycopg cpu']:.3f} (sending the "
          f"larger pipeline, waiting for it). Its extra wall time beyond that CPU, "
          f"{extra['write wall'] - extra['write cpu']:.3f} ms, is PostgreSQL's: the rows "
          f"inserted and indexed, the larger WAL flushed at COMMIT.")
    limit = _psycopg_cache_limit()
    for mode, size in result.statement_bytes.items():
        if limit is not None and size > limit:
            print(f"  Note: the write statement {'with' if mode == ON else 'without'} webhooks "
                  f"is {size:,} bytes, over psycopg's {limit:,}-byte limit for caching a "
                  f"statement's parsed form, so psycopg parses its text again on every event.")


def _psycopg_cache_limit() -> int | None:
    try:
        from psycopg import _queries
    except ImportError:
        return None
    return getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", None)
