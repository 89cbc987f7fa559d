"""The campaign scheduler: opens and closes campaigns at their instants, exactly once.

The campaign table is the source of truth. The leader (see `coordination/leader.py`;
without Redis the single embedded scheduler leads alone) catches up first (every campaign
whose start or end has passed while no scheduler ran is opened or closed at once), then
plans one APScheduler job per coming transition: `open:<id>` at `starts_at` and
`close:<id>` at `ends_at`, each a `DateTrigger` in the campaign's own timezone, in a
`MemoryJobStore` that this process alone owns (jobs are rebuilt from the table, never
pickled or shared). Every second it compares the campaigns revision and, when someone moved
it (an apply, pause, resume or edit; its own transitions leave the plan current), reloads
the schedule columns and changes only the jobs that are new, gone, or moved to another
instant.

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

The modules, one idea each:
  planning            which jobs at which instants (`plan_jobs`, `PlannedJob`, `JobBook`)
  acting              the leader's writes: fenced transactions of transitions, reconciliation
  hooks               `HookNotifier`: the plugin hooks, on a thread of their own
  lease               `LeaseSettings` and `redis_lease`: the leader lease's configuration
  campaign_scheduler  `CampaignScheduler`, which ties them together

This package is the public interface: the names below are imported from it (the command
line, the benchmark, the tests), so that they do not depend on the layout inside.
"""
from promo_engine.campaigns.scheduler.acting import BATCH_SIZE
from promo_engine.campaigns.scheduler.campaign_scheduler import (RECONCILE_JOB,
                                                                 RESYNC_INTERVAL_SECONDS,
                                                                 SWEEP_INTERVAL_SECONDS,
                                                                 CampaignScheduler)
from promo_engine.campaigns.scheduler.hooks import CLOSED_HOOK, OPENED_HOOK, HookNotifier
from promo_engine.campaigns.scheduler.lease import (DEFAULT_LEASE_MS, LEASE_KEY_ENV,
                                                    LEASE_KEY_SUFFIX, LEASE_MS_ENV,
                                                    MAX_LEASE_MS, MIN_LEASE_MS, LeaseSettings,
                                                    redis_lease)
from promo_engine.campaigns.scheduler.planning import PlannedJob, plan_jobs

__all__ = [
    "BATCH_SIZE", "CLOSED_HOOK", "DEFAULT_LEASE_MS", "LEASE_KEY_ENV", "LEASE_KEY_SUFFIX",
    "LEASE_MS_ENV", "MAX_LEASE_MS", "MIN_LEASE_MS", "OPENED_HOOK", "RECONCILE_JOB",
    "RESYNC_INTERVAL_SECONDS", "SWEEP_INTERVAL_SECONDS", "CampaignScheduler", "HookNotifier",
    "LeaseSettings", "PlannedJob", "plan_jobs", "redis_lease",
]
