"""The `CampaignScheduler`: leadership, the APScheduler jobs and the thread that acts.

It ties the other modules together. On election it catches up (every transition that came
due while no scheduler ran is made at once), then books the plan (`planning`) as
APScheduler jobs; a job only wakes the scheduler's thread, which takes every booked job
whose instant has come and has `acting` make them in fenced batches, then hands the
transitions made to the `hooks` thread. Every second it compares the campaigns revision
and, when someone else moved it, changes only the jobs that are new, gone or moved.
Deposed (the lease lost, or fenced out by a newer leader), it drops every job at once.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from promo_engine.campaigns.lifecycle import Deposed, Transition
from promo_engine.campaigns.scheduler.acting import (BATCH_SIZE, describe, make_transitions,
                                                     read_fence, run_points_sweep,
                                                     run_reconcile, run_retention)
from promo_engine.campaigns.scheduler.hooks import HookNotifier
from promo_engine.campaigns.scheduler.planning import (JobBook, PlannedJob, plan_jobs,
                                                       schedule_rows)
from promo_engine.campaigns.store import campaigns_revision
from promo_engine.ledger.extensions import db

log = logging.getLogger(__name__)

UTC = timezone.utc
RESYNC_INTERVAL_SECONDS = 1.0
RECONCILE_JOB = "reconcile"
POINTS_JOB = "points"
# Points expire and mature within this of their instant (the contract allows 60 s; a
# month-end's batch takes well under the rest).
POINTS_SWEEP_SECONDS = 15.0
SWEEP_INTERVAL_SECONDS = 10.0
RETENTION_JOB = "retention"
# PROMO_RETENTION_DAYS is counted in days: purging hourly keeps nothing more than an hour
# past its period, and each run finds only an hour's worth to purge.
RETENTION_INTERVAL_SECONDS = 3600.0
ADD_CHUNK = 500  # jobs added between two looks at the transitions that have come due


def utcnow() -> datetime:
    return datetime.now(UTC)


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
                 batch_size: int = BATCH_SIZE,
                 points_interval: float = POINTS_SWEEP_SECONDS):
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
        self.points_interval = points_interval
        self._idle = threading.Event()
        self._idle.set()
        self.hooks = HookNotifier(pm, self.registry, self.settings, idle=self._idle)
        self.aps = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": MemoryJobStore()},
            # Reconciliation reads the whole ledger: on a thread of its own, so that it
            # never delays a transition's job.
            executors={"default": ThreadPoolExecutor(max_workers=1),
                       RECONCILE_JOB: ThreadPoolExecutor(max_workers=1),
                       POINTS_JOB: ThreadPoolExecutor(max_workers=1),
                       RETENTION_JOB: ThreadPoolExecutor(max_workers=1)},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1})
        self.keeper = None
        if lease is not None:
            from promo_engine.coordination.leader import LeaseKeeper
            self.keeper = LeaseKeeper(lease, on_elected=self.on_elected,
                                      on_deposed=self.on_deposed, floor=self.fence)
        self.ready = threading.Event()  # set when leading with every job planned
        self._lock = threading.RLock()  # guards the plan and the leadership state below
        self._plan = JobBook()
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
        self._add_periodic_jobs()
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
        if self._plan:
            self.aps.remove_all_jobs()
            self._add_periodic_jobs()
        self._plan.clear()
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
        self._sweep_points_now()
        if self.resync(force=True, epoch=epoch):
            with self._lock:
                if self._epoch == epoch:
                    self._planned_epoch = epoch
                    self.ready.set()
            log.info("scheduler leading (%s): %d transitions caught up, %d jobs planned in "
                     "%.2f s", "alone" if self._token is None else f"token {self._token}",
                     len(caught_up), len(self._plan), time.perf_counter() - started)
        self._next_sweep = time.monotonic() + self.sweep_interval
        self._next_resync = time.monotonic() + self.resync_interval

    def _may_act(self) -> bool:
        return self.lease is None or self.lease.valid()

    def _add_periodic_jobs(self) -> None:
        """The periodic jobs besides the plan: the points sweep, reconciliation, and the
        retention purge."""
        self.aps.add_job(self.sweep_points, IntervalTrigger(seconds=self.points_interval),
                         id=POINTS_JOB, executor=POINTS_JOB, replace_existing=True)
        if self.settings.retention_days is not None:
            self.aps.add_job(self.purge_expired,
                             IntervalTrigger(seconds=RETENTION_INTERVAL_SECONDS),
                             id=RETENTION_JOB, executor=RETENTION_JOB, replace_existing=True)
        if self._reconciles:
            self.aps.add_job(self.reconcile, IntervalTrigger(seconds=self.settings.reconcile_seconds),
                             id=RECONCILE_JOB, executor=RECONCILE_JOB, replace_existing=True)

    def reconcile(self):
        """The scheduled reconciliation (reconcile.py), run by the leader only."""
        if not (self._leading and self._may_act()):
            return None
        return run_reconcile(self.app, self.reservations, self.settings.reconcile_seconds)

    def _sweep_points_now(self) -> None:
        """On election, the points sweep's job (and the retention purge's) runs at once
        (on its own thread) rather than at its next tick: a leader that died left due
        points waiting."""
        for job_id in (POINTS_JOB, RETENTION_JOB):
            job = self.aps.get_job(job_id)
            if job is not None:
                job.modify(next_run_time=utcnow())

    def sweep_points(self):
        """The scheduled points sweep (ledger/lot_expiry.py), run by the leader only."""
        with self._lock:
            leading, token = self._leading, self._token
        if not (leading and self._may_act()):
            return None
        return run_points_sweep(self.app, token, self.clock(),
                                should_stop=lambda: not self._leading)

    def purge_expired(self):
        """The scheduled retention purge (ledger/retention.py), run by the leader only."""
        with self._lock:
            leading, token = self._leading, self._token
        if not (leading and self._may_act()) or self.settings.retention_days is None:
            return None
        return run_retention(self.app, token, self.clock(), self.settings,
                             should_stop=lambda: not self._leading)

    # --- jobs -----------------------------------------------------------------------------

    def _fire(self, job_id: str, campaign_id: str, at: datetime) -> None:
        """A job's function: its instant has come; wake the scheduler's thread."""
        if self._leading:
            self._wake.set()

    def job_plan(self) -> dict[str, PlannedJob]:
        """The jobs planned now (a copy), by job id."""
        with self._lock:
            return self._plan.jobs()

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
            revision = campaigns_revision()
            if not force and revision == known:
                return True
            rows = schedule_rows(db.session)
            db.session.rollback()
        plan = plan_jobs(rows, default_timezone=self.settings.timezone)
        with self._lock:
            if self._epoch != epoch:
                return False
            gone = self._plan.stale(plan)
            for job_id in gone:
                self._plan.remove(job_id)
                try:
                    self.aps.remove_job(job_id)
                except JobLookupError:  # it has just run
                    pass
            new = [job for job_id, job in plan.items() if job_id not in self._plan]
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
        self._plan.add(job)

    def _take_due(self, now: datetime) -> list[PlannedJob]:
        """Remove from the plan and return every job whose instant is `now` or earlier."""
        with self._lock:
            return self._plan.take_due(now)

    def _give_back(self, jobs: list[PlannedJob], epoch: int) -> None:
        """Put back jobs whose batch failed, unless leadership changed meanwhile."""
        with self._lock:
            if self._epoch == epoch:
                self._plan.give_back(jobs)

    # --- acting ---------------------------------------------------------------------------

    def act_due(self) -> list[Transition]:
        """Make the planned transitions whose instant has come (by the clock), in batches
        of `batch_size` campaigns; a batch that fails goes back into the plan."""
        with self._lock:
            if not self._leading or not self._plan.has_instants():
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
        # Not idle while in the transaction: hook calls wait for it (see HookNotifier).
        self._idle.clear()
        try:
            result = make_transitions(self.app, token, now, ids, with_rows=wanted)
        except Deposed as exc:
            log.warning("fenced out: %s; stepping down", exc)
            self.on_deposed()
            if self.keeper is not None:
                self.keeper.step_down()
            return []
        finally:
            self._idle.set()
        # Our own bump of the revision leaves the plan current (see make_transitions).
        with self._lock:
            if self._revision == result.revision_before:
                self._revision = result.revision_after
        made = result.transitions
        if made:
            log.info("%s", describe(made))
            self.hooks.notify(made, result.rows)
        return made

    def fence(self) -> int:
        """The highest lease token that has acted (the floor for the next one)."""
        return read_fence(self.app)
