"""The campaign scheduler: opens and closes campaigns at their instants, exactly once.

The campaign table is the source of truth. The leader (see `leader.py`; without Redis the
single embedded scheduler leads alone) catches up first (every campaign whose start or end
has passed while no scheduler ran is opened or closed at once), then plans one APScheduler
job per coming transition: `open:<id>` at `starts_at` and `close:<id>` at `ends_at`, each
a `DateTrigger` in the campaign's own timezone, in a `MemoryJobStore` that this process
alone owns (jobs are rebuilt from the table, never pickled or shared). Every second it
compares the campaigns revision and, when someone moved it (an apply, pause, resume or
edit; its own transitions leave the plan current), reloads the schedule columns and changes
only the jobs that are new, gone, or moved to another instant.

A job does not touch the database itself: it wakes the scheduler's own thread, which takes
every planned transition whose instant has come (not only the job's own: campaigns that
start at the same instant, midnight typically, open together however slowly APScheduler
hands out their jobs) and makes them in one transaction: `check_fence` with the lease
token, then `lifecycle.advance_schedule`, a guarded UPDATE that checks status and times
again in the database (so a job planned before an edit or a pause, a duplicate job or a
second scheduler changes nothing). After the commit the hooks `promo_campaign_opened` /
`promo_campaign_closed` are called on a thread of their own, once per transition made.

Misfires are explicit: every job has `misfire_grace_time=None` (a late job still runs) and
`coalesce=True`; a leader also sweeps the table for due transitions every 10 s, so a job
lost to an error is made up for.
"""
from __future__ import annotations

import heapq
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from promo_engine.campaigns.lifecycle import (CLOSED, OPEN, SCHEDULED, Deposed, Transition,
                                              advance_schedule, check_fence)
from promo_engine.config import (DEFAULT_REDIS_PREFIX, REDIS_PREFIX_ENV, ConfigError,
                                 redis_prefix_from_env)
from promo_engine.core.campaign import Campaign
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignRecord, ProgramState
from promo_engine.ledger.program_state import lock_program_state

log = logging.getLogger(__name__)

UTC = timezone.utc
RESYNC_INTERVAL_SECONDS = 1.0
RECONCILE_JOB = "reconcile"
SWEEP_INTERVAL_SECONDS = 10.0
BATCH_SIZE = 1000  # campaigns per transaction
ADD_CHUNK = 500  # jobs added between two looks at the transitions that have come due

DEFAULT_LEASE_MS = 5000
LEASE_KEY_SUFFIX = ":scheduler:leader"  # after PROMO_REDIS_PREFIX: one leader per program
LEASE_MS_ENV = "PROMO_SCHEDULER_LEASE_MS"
LEASE_KEY_ENV = "PROMO_SCHEDULER_LEASE_KEY"
MIN_LEASE_MS, MAX_LEASE_MS = 1000, 300_000

IDLE_WAIT_SECONDS = 0.5
OPENED_HOOK = "promo_campaign_opened"
CLOSED_HOOK = "promo_campaign_closed"


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- configuration -------------------------------------------------------------------------

@dataclass(frozen=True)
class LeaseSettings:
    """Where the leader lease lives in Redis and how long it lasts (`PROMO_SCHEDULER_*`)."""
    ttl_ms: int = DEFAULT_LEASE_MS
    key: str = DEFAULT_REDIS_PREFIX + LEASE_KEY_SUFFIX

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "LeaseSettings":
        env = os.environ if environ is None else environ
        raw_ttl = env.get(LEASE_MS_ENV) or str(DEFAULT_LEASE_MS)
        try:
            ttl_ms = int(raw_ttl)
        except ValueError:
            ttl_ms = None
        if ttl_ms is None or not MIN_LEASE_MS <= ttl_ms <= MAX_LEASE_MS:
            raise ConfigError(f"{LEASE_MS_ENV}: {raw_ttl!r} must be a whole number of "
                              f"milliseconds from {MIN_LEASE_MS} to {MAX_LEASE_MS}")
        # Under the program's prefix, so that programs sharing a Redis database each have
        # a leader of their own.
        key = env.get(LEASE_KEY_ENV) or (
            redis_prefix_from_env(env.get(REDIS_PREFIX_ENV, DEFAULT_REDIS_PREFIX)) + LEASE_KEY_SUFFIX)
        if len(key) > 200 or any(c.isspace() for c in key):
            raise ConfigError(f"{LEASE_KEY_ENV}: {key!r} must be a Redis key of at most 200 "
                              "characters without spaces")
        return cls(ttl_ms=ttl_ms, key=key)


def redis_lease(redis_url: str, lease_settings: LeaseSettings, owner: str | None = None):
    """A `RedisLease` on `redis_url`, with socket timeouts well inside a renewal period."""
    import redis

    from promo_engine.coordination.leader import RedisLease
    timeout = min(1.0, lease_settings.ttl_ms / 1000 / 6)
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    return RedisLease(client, lease_settings.key, lease_settings.ttl_ms, owner)


# --- the plan ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedJob:
    """One coming transition: the job `open:<id>` or `close:<id>` at the instant `at`."""
    job_id: str
    campaign_id: str
    target: str  # OPEN or CLOSED
    at: datetime  # aware, UTC: jobs compare by instant (wall times ignore DST folds)
    timezone: str

    @property
    def run_date(self) -> datetime:
        """The instant in the campaign's own timezone, as its job is scheduled."""
        return self.at.astimezone(ZoneInfo(self.timezone))


def _zone(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except Exception:  # an unknown zone in a stored spec: the instant still holds
                continue
    return ZoneInfo("UTC")


def plan_jobs(rows: Iterable[tuple[str, str, datetime, datetime, str | None]], *,
              default_timezone: str = "UTC") -> dict[str, PlannedJob]:
    """The jobs for (id, status, starts_at, ends_at, timezone) rows: a scheduled campaign
    opens at starts_at and closes at ends_at, an open one closes at ends_at. The instants
    are the stored ones (the campaign schema already resolved local times, DST gaps and
    folds included); each is expressed in the campaign's zone."""
    plan: dict[str, PlannedJob] = {}
    zones: dict[str | None, ZoneInfo] = {}
    for campaign_id, status, starts_at, ends_at, zone_name in rows:
        zone = zones.get(zone_name)
        if zone is None:
            zone = zones[zone_name] = _zone(zone_name, default_timezone)
        if status == SCHEDULED and starts_at < ends_at:
            job_id = f"open:{campaign_id}"
            plan[job_id] = PlannedJob(job_id, campaign_id, OPEN, starts_at.astimezone(UTC),
                                      zone.key)
        if status in (SCHEDULED, OPEN):
            job_id = f"close:{campaign_id}"
            plan[job_id] = PlannedJob(job_id, campaign_id, CLOSED, ends_at.astimezone(UTC),
                                      zone.key)
    return plan


# --- hooks ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Row:
    id: str
    type: str
    name: str
    spec: dict
    starts_at: datetime
    ends_at: datetime


class HookNotifier:
    """Calls promo_campaign_opened / promo_campaign_closed after commit, in order, on its
    own thread (a slow plugin must not hold up the next transition). Each implementation
    is called on its own: one that raises is logged and the others are still called."""

    def __init__(self, pm, registry, settings, idle: threading.Event | None = None):
        self.pm = pm
        self.registry = registry
        self.settings = settings
        # Set while the scheduler is not in a transaction: calls wait for it (up to
        # IDLE_WAIT_SECONDS), so that building campaigns for plugins never slows a burst
        # of transitions down (they share the interpreter lock).
        self.idle = idle
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def wanted(self) -> bool:
        if self.pm is None:
            return False
        return bool(getattr(self.pm.hook, OPENED_HOOK).get_hookimpls()
                    or getattr(self.pm.hook, CLOSED_HOOK).get_hookimpls())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="promo-scheduler-hooks",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the calls already queued (for at most `timeout`), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def notify(self, made: list[Transition], rows: Mapping[str, _Row]) -> None:
        if made and rows:
            if self._thread is None:
                self.deliver(made, rows)
            else:
                self._queue.put((made, rows))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.deliver(*item)

    def deliver(self, made: list[Transition], rows: Mapping[str, _Row]) -> None:
        for change in made:
            name = OPENED_HOOK if change.to_status == OPEN else CLOSED_HOOK
            row = rows.get(change.campaign_id)
            if row is None:
                continue
            if self.idle is not None and self._thread is not None:
                self.idle.wait(IDLE_WAIT_SECONDS)
            try:
                campaign = self.campaign(row)
                self._call(name, campaign=campaign, at=change.at)
            except Exception:  # never let a plugin stop the scheduler
                log.exception("calling %s for campaign %s failed", name, change.campaign_id)

    def campaign(self, row: _Row) -> Campaign:
        """The stored campaign; when its spec no longer loads (its type's plugin was
        uninstalled), a Campaign with what the record still tells: id, type, name,
        timezone, starts_at, ends_at and currency, empty params and default rules."""
        from promo_engine.campaigns.schema import load_campaign
        try:
            return load_campaign(row.spec, registry=self.registry,
                                 currency=self.settings.currency,
                                 default_timezone=self.settings.timezone)
        except Exception as exc:
            log.warning("campaign %s: stored spec does not load (%s); its hooks get the "
                        "record's fields only", row.id, exc)
            zone = row.spec.get("timezone") if isinstance(row.spec, dict) else None
            return Campaign(id=row.id, type=row.type, name=row.name,
                            timezone=zone if isinstance(zone, str) else self.settings.timezone,
                            starts_at=row.starts_at, ends_at=row.ends_at,
                            currency=self.settings.currency, params={})

    def _call(self, name: str, **kwargs) -> None:
        """Each plugin's implementation on its own (through pluggy, so PROMO_TRACE_HOOKS
        still traces it), in pluggy's order: one that raises does not silence the others."""
        plugins = [impl.plugin for impl in reversed(getattr(self.pm.hook, name).get_hookimpls())]
        for plugin in plugins:
            only = self.pm.subset_hook_caller(name, [p for p in plugins if p is not plugin])
            try:
                only(**kwargs)
            except Exception:
                log.exception("plugin %s raised in %s for campaign %s; the transition "
                              "stands", self.pm.get_name(plugin), name, kwargs["campaign"].id)


# --- the scheduler -------------------------------------------------------------------------

class CampaignScheduler:
    """Opens and closes the campaigns of `app`'s database on schedule.

    With a `lease` (a `leader.RedisLease`) it acts only while it holds the lease, and every
    transaction is fenced with the lease's token; without one it acts alone (the embedded
    scheduler of `promo-engine serve` without Redis). `clock` gives "now" for every
    decision (tests pass a controllable one); APScheduler wakes the jobs on real time.
    """

    def __init__(self, app, *, pm=None, lease=None, clock: Callable[[], datetime] | None = None,
                 resync_interval: float = RESYNC_INTERVAL_SECONDS,
                 sweep_interval: float = SWEEP_INTERVAL_SECONDS,
                 batch_size: int = BATCH_SIZE):
        self.app = app
        self.settings = app.config["PROMO_SETTINGS"]
        # The app's promo service (a layer above this one, so handed over through the app):
        # its plugin registry, and its Redis reservations, which reconciliation rebuilds.
        service = app.extensions["promo"]
        self.registry = service.registry
        self.reservations = service.reservations
        self._reconciles = self.reservations is not None  # counters in Redis
        self.clock = clock or utcnow
        self.lease = lease
        self.resync_interval = resync_interval
        self.sweep_interval = sweep_interval
        self.batch_size = batch_size
        self._idle = threading.Event()
        self._idle.set()
        self.hooks = HookNotifier(pm, self.registry, self.settings, idle=self._idle)
        self.aps = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            # Reconciliation reads the whole ledger: on a thread of its own, so that it
            # never delays a transition's job.
            executors={"default": ThreadPoolExecutor(max_workers=1),
                       RECONCILE_JOB: ThreadPoolExecutor(max_workers=1)},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1})
        self.keeper = None
        if lease is not None:
            from promo_engine.coordination.leader import LeaseKeeper
            self.keeper = LeaseKeeper(lease, on_elected=self.on_elected,
                                      on_deposed=self.on_deposed, floor=self.fence)
        self.ready = threading.Event()  # set when leading with every job planned
        self._lock = threading.RLock()
        self._jobs: dict[str, PlannedJob] = {}
        # (instant, job id) of every planned job, soonest first; entries of jobs removed or
        # moved since are skipped when they come up
        self._due: list[tuple[datetime, str]] = []
        self._leading = False
        self._token: int | None = None
        self._epoch = 0  # goes up at every election and deposition
        self._planned_epoch = -1  # the epoch whose catch-up and plan are done
        self._revision: int | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_resync = 0.0
        self._next_sweep = 0.0

    # --- running --------------------------------------------------------------------------

    def start(self) -> None:
        self.aps.start()
        self._add_reconcile_job()
        self.hooks.start()
        self._thread = threading.Thread(target=self._run, name="promo-scheduler", daemon=True)
        self._thread.start()
        if self.keeper is not None:
            self.keeper.start()
        else:
            self.on_elected(None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop acting, then give up the lease and finish the queued hook calls."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.keeper is not None:
            self.keeper.stop(timeout)
        else:
            self.on_deposed()
        if self.aps.running:
            self.aps.shutdown(wait=False)
        self.hooks.stop(timeout)

    @property
    def leading(self) -> bool:
        return self._leading

    def on_elected(self, token: int | None) -> None:
        """This process leads now (with fencing `token`, or None: alone and unfenced)."""
        with self._lock:
            self._leading = True
            self._token = token
            self._epoch += 1
        self._wake.set()

    def on_deposed(self) -> None:
        """Stop acting at once: no more jobs, nothing queued."""
        with self._lock:
            self._leading = False
            self._token = None
            self._epoch += 1
            self.ready.clear()
            self._clear_jobs()

    def _clear_jobs(self) -> None:
        if self._jobs:
            self.aps.remove_all_jobs()
            self._add_reconcile_job()
        self._jobs.clear()
        self._due.clear()
        self._revision = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            # (at least 10 ms: a leader whose lease has lapsed locally waits for its keeper)
            timeout = max(0.01, min(self._next_resync, self._next_sweep) - time.monotonic())
            self._wake.wait(timeout if self._leading else None)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.step()
            except Exception:
                log.exception("scheduler step failed; trying again in a second")
                self._stopping.wait(1.0)
                self._wake.set()

    def step(self) -> None:
        """One turn of the scheduler's thread: after an election, catch up and plan; then
        make the transitions that are due, and resync or sweep when it is time."""
        with self._lock:
            leading, epoch = self._leading, self._epoch
        if not leading or not self._may_act():
            return
        if self._planned_epoch != epoch:
            self.prepare()
            return
        self.act_due()
        now = time.monotonic()
        if now >= self._next_sweep:
            self.act()
            self._next_sweep = now + self.sweep_interval
        if now >= self._next_resync:
            self.resync()
            self._next_resync = time.monotonic() + self.resync_interval

    def prepare(self) -> None:
        """On becoming leader: open and close whatever is due, then plan every job."""
        with self._lock:
            epoch = self._epoch
            self._clear_jobs()
        started = time.perf_counter()
        caught_up = self.act()
        if self.resync(force=True, epoch=epoch):
            with self._lock:
                if self._epoch == epoch:
                    self._planned_epoch = epoch
                    self.ready.set()
            log.info("scheduler leading (%s): %d transitions caught up, %d jobs planned in "
                     "%.2f s", "alone" if self._token is None else f"token {self._token}",
                     len(caught_up), len(self._jobs), time.perf_counter() - started)
        self._next_sweep = time.monotonic() + self.sweep_interval
        self._next_resync = time.monotonic() + self.resync_interval

    def _may_act(self) -> bool:
        return self.lease is None or self.lease.valid()

    def _add_reconcile_job(self) -> None:
        if self._reconciles:
            self.aps.add_job(self.reconcile, IntervalTrigger(seconds=self.settings.reconcile_seconds),
                             id=RECONCILE_JOB, executor=RECONCILE_JOB, replace_existing=True)

    def reconcile(self):
        """The scheduled reconciliation (reconcile.py), run by the leader only."""
        from promo_engine.campaigns.reconcile import reconcile
        if not (self._leading and self._may_act()):
            return None
        from promo_engine.coordination.reservations import NotReady
        with self.app.app_context():
            try:
                done = reconcile(self.reservations)
            except NotReady as exc:  # settling after a data loss, or another program's prefix
                log.warning("reconciliation postponed: %s", exc)
                return None
            except Exception:  # Redis or the database away: the next run tries again
                log.exception("reconciliation failed; trying again in %d s",
                              self.settings.reconcile_seconds)
                return None
        log.info("reconciled %d campaigns (%d Redis counters)", done.campaigns, done.counters)
        return done

    # --- jobs -----------------------------------------------------------------------------

    def _fire(self, job_id: str, campaign_id: str, at: datetime) -> None:
        """A job's function: its instant has come; wake the scheduler's thread."""
        if self._leading:
            self._wake.set()

    def job_plan(self) -> dict[str, PlannedJob]:
        """The jobs planned now (a copy), by job id."""
        with self._lock:
            return dict(self._jobs)

    def resync(self, *, force: bool = False, epoch: int | None = None) -> bool:
        """Bring the jobs in line with the table if the campaigns revision moved (or
        `force`): only jobs that are new, gone or moved to another instant change.
        Returns False when leadership changed meanwhile (nothing more was done)."""
        with self._lock:
            epoch = self._epoch if epoch is None else epoch
            if not self._leading or self._epoch != epoch:
                return False
            known = self._revision
        with self.app.app_context():
            revision = _revision(db.session)
            if not force and revision == known:
                return True
            rows = db.session.execute(
                select(CampaignRecord.id, CampaignRecord.status, CampaignRecord.starts_at,
                       CampaignRecord.ends_at, CampaignRecord.spec["timezone"].as_string())
                .where(CampaignRecord.status.in_((SCHEDULED, OPEN)))).all()
            db.session.rollback()
        plan = plan_jobs(rows, default_timezone=self.settings.timezone)
        with self._lock:
            if self._epoch != epoch:
                return False
            gone = [job_id for job_id, job in self._jobs.items() if plan.get(job_id) != job]
            for job_id in gone:
                del self._jobs[job_id]
                try:
                    self.aps.remove_job(job_id)
                except JobLookupError:  # it has just run
                    pass
            new = [job for job_id, job in plan.items() if job_id not in self._jobs]
        # APScheduler is woken by every job added; with many to add it is paused meanwhile
        # (the due ones are made between chunks) and resumed once.
        pause = len(new) > ADD_CHUNK and self.aps.state == STATE_RUNNING
        if pause:
            self.aps.pause()
        try:
            for start in range(0, len(new), ADD_CHUNK):
                with self._lock:
                    if self._epoch != epoch:
                        return False
                    for job in new[start:start + ADD_CHUNK]:
                        self._add_job(job)
                self.act_due()  # campaigns due while a long plan is being added
        finally:
            if pause:
                self.aps.resume()
        with self._lock:
            if self._epoch != epoch:
                return False
            self._revision = revision
        if gone or new:
            log.debug("resync at revision %s: %d jobs removed, %d added", revision, len(gone),
                      len(new))
        return True

    def _add_job(self, job: PlannedJob) -> None:
        run_date = job.run_date
        self.aps.add_job(self._fire, DateTrigger(run_date=run_date, timezone=run_date.tzinfo),
                         args=(job.job_id, job.campaign_id, job.at), id=job.job_id,
                         name=job.job_id, replace_existing=True)
        self._jobs[job.job_id] = job
        heapq.heappush(self._due, (job.at, job.job_id))
        if len(self._due) > 2 * len(self._jobs) + 1000:  # mostly stale entries: rebuild
            self._due = [(planned.at, job_id) for job_id, planned in self._jobs.items()]
            heapq.heapify(self._due)

    def _take_due(self, now: datetime) -> list[PlannedJob]:
        """Remove from the plan and return every job whose instant is `now` or earlier."""
        taken = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                at, job_id = heapq.heappop(self._due)
                planned = self._jobs.get(job_id)
                if planned is not None and planned.at == at:
                    del self._jobs[job_id]
                    taken.append(planned)
        return taken

    def _give_back(self, jobs: list[PlannedJob], epoch: int) -> None:
        with self._lock:
            if self._epoch != epoch:
                return
            for job in jobs:
                if job.job_id not in self._jobs:
                    self._jobs[job.job_id] = job
                    heapq.heappush(self._due, (job.at, job.job_id))

    # --- acting ---------------------------------------------------------------------------

    def act_due(self) -> list[Transition]:
        """Make the planned transitions whose instant has come (by the clock), in batches
        of `batch_size` campaigns; a batch that fails goes back into the plan."""
        with self._lock:
            if not self._leading or not self._due:
                return []
            epoch = self._epoch
        if not self._may_act():
            return []
        now = self.clock()
        taken = self._take_due(now)
        made: list[Transition] = []
        for start in range(0, len(taken), self.batch_size):
            batch = taken[start:start + self.batch_size]
            try:
                made.extend(self.act([job.campaign_id for job in batch], now=now))
            except Exception:
                self._give_back(taken[start:], epoch)
                raise
        return made

    def act(self, campaign_ids: Iterable[str] | None = None, *,
            now: datetime | None = None) -> list[Transition]:
        """Make the transitions due at `now` (the clock's by default) for `campaign_ids`, or
        for every campaign, in one fenced transaction; then queue the hook calls."""
        with self._lock:
            if not self._leading:
                return []
            token = self._token
        if not self._may_act():
            return []
        now = now or self.clock()
        ids = None if campaign_ids is None else list(campaign_ids)
        wanted = self.hooks.wanted
        self._idle.clear()
        try:
            with self.app.app_context():
                session = db.session

                def work():
                    if token is None:
                        lock_program_state(session)
                    else:
                        check_fence(session, token)
                    # The revision cannot move under us now (its row is locked): if it is
                    # the one the jobs were planned at, our own bump leaves them current.
                    before = _revision(session)
                    made = advance_schedule(session, now, campaign_ids=ids,
                                            actor="scheduler", reason="schedule")
                    after = _revision(session) if made else before
                    return made, (_rows(session, made) if wanted and made else {}), \
                        before, after

                try:
                    made, rows, before, after = run_in_transaction(session, work)
                except Deposed as exc:
                    log.warning("fenced out: %s; stepping down", exc)
                    self.on_deposed()
                    if self.keeper is not None:
                        self.keeper.step_down()
                    return []
        finally:
            self._idle.set()
        with self._lock:
            if self._revision == before:
                self._revision = after
        if made:
            log.info("%s", "; ".join(f"{t.campaign_id} {t.from_status} -> {t.to_status}"
                                     for t in made[:20])
                     + (f"; and {len(made) - 20} more" if len(made) > 20 else ""))
            self.hooks.notify(made, rows)
        return made

    def fence(self) -> int:
        """The highest lease token that has acted (the floor for the next one)."""
        with self.app.app_context():
            value = db.session.scalar(select(ProgramState.scheduler_fence)
                                      .where(ProgramState.id == 1))
            db.session.rollback()
        return int(value or 0)


def _revision(session) -> int:
    return session.scalar(select(ProgramState.campaigns_revision)
                          .where(ProgramState.id == 1)) or 0


def _rows(session, made: list[Transition]) -> dict[str, _Row]:
    ids = sorted({t.campaign_id for t in made})
    rows: dict[str, _Row] = {}
    for start in range(0, len(ids), BATCH_SIZE):
        for row in session.execute(
                select(CampaignRecord.id, CampaignRecord.type, CampaignRecord.name,
                       CampaignRecord.spec, CampaignRecord.starts_at, CampaignRecord.ends_at)
                .where(CampaignRecord.id.in_(ids[start:start + BATCH_SIZE]))):
            rows[row.id] = _Row(row.id, row.type, row.name, row.spec, row.starts_at,
                                row.ends_at)
    return rows
