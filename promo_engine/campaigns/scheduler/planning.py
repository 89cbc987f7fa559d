"""The plan: which transitions are to come, at which instants.

`plan_jobs` turns the schedule columns of the campaign table into one `PlannedJob` per
coming transition (`open:<id>` at `starts_at`, `close:<id>` at `ends_at`, in the campaign's
own zone), and `JobBook` keeps the jobs planned now by id and by instant, so that the ones
due are found without a look at every job. Apart from the scheduler because none of it
knows about leadership, APScheduler or threads: it is the part to read (and test) when the
question is "when does this campaign open".
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import select

from promo_engine.campaigns.lifecycle import CLOSED, OPEN, SCHEDULED
from promo_engine.ledger.models import CampaignRecord

UTC = timezone.utc


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


def schedule_rows(session) -> list:
    """The (id, status, starts_at, ends_at, timezone) rows `plan_jobs` reads: the campaigns
    that still have a transition to come."""
    return session.execute(
        select(CampaignRecord.id, CampaignRecord.status, CampaignRecord.starts_at,
               CampaignRecord.ends_at, CampaignRecord.spec["timezone"].as_string())
        .where(CampaignRecord.status.in_((SCHEDULED, OPEN)))).all()


class JobBook:
    """The jobs planned now, by job id, with their instants in a heap (soonest first).

    A job removed or moved since it was pushed leaves its old entry in the heap; such
    entries are skipped when they come up (cheaper than searching the heap on every
    resync), and the heap is rebuilt when they outnumber the live ones. Not thread-safe:
    the scheduler calls it under its own lock.
    """

    def __init__(self):
        self._jobs: dict[str, PlannedJob] = {}
        self._due: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def has_instants(self) -> bool:
        """Whether the heap holds any instant (a live job's or a stale one): when it holds
        none, nothing can be due and the clock need not be asked."""
        return bool(self._due)

    def jobs(self) -> dict[str, PlannedJob]:
        """The jobs planned now (a copy), by job id."""
        return dict(self._jobs)

    def clear(self) -> None:
        self._jobs.clear()
        self._due.clear()

    def stale(self, plan: Mapping[str, PlannedJob]) -> list[str]:
        """The ids of the jobs booked that `plan` no longer has, or has at another instant."""
        return [job_id for job_id, job in self._jobs.items() if plan.get(job_id) != job]

    def remove(self, job_id: str) -> None:
        del self._jobs[job_id]

    def add(self, job: PlannedJob) -> None:
        self._jobs[job.job_id] = job
        heapq.heappush(self._due, (job.at, job.job_id))
        if len(self._due) > 2 * len(self._jobs) + 1000:  # mostly stale entries: rebuild
            self._due = [(planned.at, job_id) for job_id, planned in self._jobs.items()]
            heapq.heapify(self._due)

    def take_due(self, now: datetime) -> list[PlannedJob]:
        """Remove and return every job whose instant is `now` or earlier."""
        taken = []
        while self._due and self._due[0][0] <= now:
            at, job_id = heapq.heappop(self._due)
            planned = self._jobs.get(job_id)
            if planned is not None and planned.at == at:
                del self._jobs[job_id]
                taken.append(planned)
        return taken

    def give_back(self, jobs: Iterable[PlannedJob]) -> None:
        """Book again jobs taken whose transitions were not made (unless replanned since)."""
        for job in jobs:
            if job.job_id not in self._jobs:
                self._jobs[job.job_id] = job
                heapq.heappush(self._due, (job.at, job.job_id))
