"""The campaign scheduler in one process, on SQLite and PostgreSQL, with a clock the tests
control: its jobs sit at the campaigns' exact instants in their own zones (DST days
included), a job run one microsecond early changes nothing and one on the instant opens or
closes, catch-up after downtime, rescheduling on edits, pauses and resumes, idempotence,
fencing and the promo_campaign_opened / promo_campaign_closed hooks. One test runs on the
real clock. The multi-process behaviour is in test_scheduler_processes.py."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from promo_engine import hookimpl
from promo_engine.campaigns.files import LoadedCampaign
from promo_engine.campaigns.lifecycle import PAUSED, check_fence, resume, transition
from promo_engine.campaigns.scheduler import CampaignScheduler, LeaseSettings, plan_jobs
from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.spec import canonical_spec
from promo_engine.campaigns.store import apply_campaigns, campaigns_revision
from promo_engine.config import ConfigError
from promo_engine.core.campaign import Campaign
from promo_engine.core.registry import build_registry, get_plugin_manager
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import CampaignAudit, CampaignRecord, ProgramState

from conftest import reused_schema_url

UTC = timezone.utc
MICROSECOND = timedelta(microseconds=1)
BEFORE = datetime(2026, 1, 1, tzinfo=UTC)  # when the campaigns are applied
BERLIN, NEW_YORK, SHANGHAI = "Europe/Berlin", "America/New_York", "Asia/Shanghai"


# --- databases: SQLite per test, one PostgreSQL database per module emptied per test ------

@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test on SQLite and on PostgreSQL, each on an empty schema."""
    return reused_schema_url(request, tmp_path)


# --- helpers ------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A plugin that records the scheduler's hook calls."""

    def __init__(self):
        self.calls: list[tuple[str, str, datetime]] = []
        self.campaigns: list[Campaign] = []

    @hookimpl
    def promo_campaign_opened(self, campaign, at):
        self.calls.append(("opened", campaign.id, at))
        self.campaigns.append(campaign)

    @hookimpl
    def promo_campaign_closed(self, campaign, at):
        self.calls.append(("closed", campaign.id, at))
        self.campaigns.append(campaign)


def plugin_manager(*plugins):
    pm = get_plugin_manager(load_entry_points=False)
    for index, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test-plugin-{index}")
    return pm


@pytest.fixture
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


@pytest.fixture
def clock():
    return Clock(BEFORE)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def scheduler(app, clock, recorder):
    """A leading scheduler whose APScheduler is started paused: its jobs are planned with
    their run times but fire only when a test runs them."""
    sched = CampaignScheduler(app, pm=plugin_manager(recorder), clock=clock)
    sched.aps.start(paused=True)
    sched.on_elected(None)
    yield sched
    sched.aps.shutdown(wait=False)


def document(campaign_id: str, starts_at: str, ends_at: str, zone: str = SHANGHAI,
             **fields) -> dict:
    return {"id": campaign_id, "type": "holiday_discount", "timezone": zone,
            "starts_at": starts_at, "ends_at": ends_at, "params": {"percent": 10}, **fields}


def apply(app, registry, *documents: dict, now: datetime = BEFORE, prune: bool = False):
    loaded = []
    for doc in documents:
        campaign = load_campaign(doc, registry=registry, currency="CNY",
                                 default_timezone=SHANGHAI)
        loaded.append(LoadedCampaign(campaign, canonical_spec(doc, SHANGHAI),
                                     f"{doc['id']}.yaml", 1))
    with app.app_context():
        return apply_campaigns(loaded, now=now, prune=prune)


def statuses(app) -> dict[str, str]:
    with app.app_context():
        return dict(db.session.execute(select(CampaignRecord.id, CampaignRecord.status)
                                       .order_by(CampaignRecord.id)).all())


def audit(app, campaign_id: str, actor: str = "scheduler") -> list[tuple]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(CampaignAudit.from_status, CampaignAudit.to_status, CampaignAudit.at)
            .where(CampaignAudit.campaign_id == campaign_id, CampaignAudit.actor == actor)
            .order_by(CampaignAudit.id)).all()]


def run_job(sched: CampaignScheduler, job_id: str) -> list:
    """What APScheduler does when the job's time comes, then the scheduler's thread."""
    job = sched.aps.get_job(job_id)
    assert job is not None, f"no job {job_id}"
    job.func(*job.args)
    return sched.act_due()


def local_wall_time(value: datetime) -> tuple:
    return (value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.fold)


# --- exact instants, in the campaign's zone, on the days the clocks change ----------------

# (campaign id, zone, local time as marketing writes it, the instant, the local wall time
# the job is shown at): a time inside a spring-forward gap moves forward by the gap, an
# ambiguous one on a fall-back night is its first occurrence (campaign_schema's rule).
DST_CASES = [
    ("berlin-spring-before-gap", BERLIN, "2027-03-28T01:59:59",
     datetime(2027, 3, 28, 0, 59, 59, tzinfo=UTC), (2027, 3, 28, 1, 59, 59, 0)),
    ("berlin-spring-in-gap", BERLIN, "2027-03-28T02:30:00",
     datetime(2027, 3, 28, 1, 30, tzinfo=UTC), (2027, 3, 28, 3, 30, 0, 0)),
    ("berlin-spring-after-gap", BERLIN, "2027-03-28T03:00:00",
     datetime(2027, 3, 28, 1, 0, tzinfo=UTC), (2027, 3, 28, 3, 0, 0, 0)),
    ("berlin-fall-repeated-hour", BERLIN, "2027-10-31T02:30:00",
     datetime(2027, 10, 31, 0, 30, tzinfo=UTC), (2027, 10, 31, 2, 30, 0, 0)),
    ("berlin-fall-after", BERLIN, "2027-10-31T03:00:00",
     datetime(2027, 10, 31, 2, 0, tzinfo=UTC), (2027, 10, 31, 3, 0, 0, 0)),
    ("new-york-spring-in-gap", NEW_YORK, "2027-03-14T02:30:00",
     datetime(2027, 3, 14, 7, 30, tzinfo=UTC), (2027, 3, 14, 3, 30, 0, 0)),
    ("new-york-spring-after-gap", NEW_YORK, "2027-03-14T03:00:00",
     datetime(2027, 3, 14, 7, 0, tzinfo=UTC), (2027, 3, 14, 3, 0, 0, 0)),
    ("new-york-fall-repeated-hour", NEW_YORK, "2027-11-07T01:30:00",
     datetime(2027, 11, 7, 5, 30, tzinfo=UTC), (2027, 11, 7, 1, 30, 0, 0)),
    ("new-york-fall-after", NEW_YORK, "2027-11-07T02:00:00",
     datetime(2027, 11, 7, 7, 0, tzinfo=UTC), (2027, 11, 7, 2, 0, 0, 0)),
    ("shanghai-midnight", SHANGHAI, "2027-02-05T00:00:00",
     datetime(2027, 2, 4, 16, 0, tzinfo=UTC), (2027, 2, 5, 0, 0, 0, 0)),
]
CASE_IDS = [case[0] for case in DST_CASES]


@pytest.mark.parametrize("campaign_id, zone, local, instant, wall", DST_CASES, ids=CASE_IDS)
def test_opens_exactly_at_its_start_in_its_own_zone(app, registry, scheduler, clock,
                                                    campaign_id, zone, local, instant, wall):
    apply(app, registry, document(campaign_id, local, "2027-12-01T00:00:00", zone))
    scheduler.prepare()
    job = scheduler.aps.get_job(f"open:{campaign_id}")
    # Compared in UTC: Python never finds a time in a repeated hour equal to one in
    # another zone.
    assert job.trigger.run_date.astimezone(UTC) == instant
    assert job.next_run_time.astimezone(UTC) == instant
    assert job.trigger.run_date.tzinfo == ZoneInfo(zone)
    assert local_wall_time(job.trigger.run_date) == wall
    assert (job.misfire_grace_time, job.coalesce) == (None, True)

    clock.now = instant - MICROSECOND
    assert run_job(scheduler, f"open:{campaign_id}") == []
    assert statuses(app) == {campaign_id: "scheduled"}

    clock.now = instant
    assert [(t.campaign_id, t.from_status, t.to_status) for t in
            run_job(scheduler, f"open:{campaign_id}")] == [(campaign_id, "scheduled", "open")]
    assert statuses(app) == {campaign_id: "open"}
    assert audit(app, campaign_id) == [("scheduled", "open", instant)]


@pytest.mark.parametrize("campaign_id, zone, local, instant, wall", DST_CASES, ids=CASE_IDS)
def test_closes_exactly_at_its_end_in_its_own_zone(app, registry, scheduler, clock,
                                                   campaign_id, zone, local, instant, wall):
    apply(app, registry, document(campaign_id, "2027-01-01T00:00:00", local, zone))
    clock.now = datetime(2027, 1, 2, tzinfo=UTC)
    scheduler.prepare()  # catches up: open since 2027-01-01
    job = scheduler.aps.get_job(f"close:{campaign_id}")
    assert job.trigger.run_date.astimezone(UTC) == instant
    assert job.trigger.run_date.tzinfo == ZoneInfo(zone)
    assert local_wall_time(job.trigger.run_date) == wall
    assert scheduler.aps.get_job(f"open:{campaign_id}") is None

    clock.now = instant - MICROSECOND
    assert run_job(scheduler, f"close:{campaign_id}") == []
    assert statuses(app) == {campaign_id: "open"}

    clock.now = instant
    run_job(scheduler, f"close:{campaign_id}")
    assert statuses(app) == {campaign_id: "closed"}
    assert audit(app, campaign_id) == [("scheduled", "open", datetime(2027, 1, 2, tzinfo=UTC)),
                                       ("open", "closed", instant)]


def test_plan_for_each_status():
    starts, ends = datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)
    rows = [("a", "scheduled", starts, ends, BERLIN), ("b", "open", starts, ends, NEW_YORK),
            ("c", "paused", starts, ends, BERLIN), ("d", "closed", starts, ends, BERLIN),
            ("e", "retired", starts, ends, BERLIN), ("f", "scheduled", starts, ends, None)]
    plan = plan_jobs(rows, default_timezone=SHANGHAI)
    assert {job_id: (job.target, job.at, job.timezone) for job_id, job in plan.items()} == {
        "open:a": ("open", starts, BERLIN), "close:a": ("closed", ends, BERLIN),
        "close:b": ("closed", ends, NEW_YORK),
        "open:f": ("open", starts, SHANGHAI), "close:f": ("closed", ends, SHANGHAI)}


# --- recurring windows on DST days, through the API, once the scheduler has opened -------

def test_windows_apply_from_their_first_to_their_last_microsecond_on_dst_days(
        app, registry, scheduler, clock):
    from wallet import new_wallet_client, payment

    # Sunday 2026-03-29 in Berlin skips 02:00-03:00; Sunday 2026-11-01 in New York repeats
    # 01:00-02:00. Both windows are read in the campaign's zone.
    apply(app, registry,
          document("berlin-night", "2026-03-28T00:00:00", "2026-12-01T00:00:00", BERLIN,
                   windows=[{"days": ["sun"], "from": "01:30", "to": "03:30"}]),
          document("new-york-night", "2026-10-31T00:00:00", "2026-12-01T00:00:00", NEW_YORK,
                   windows=[{"days": ["sun"], "from": "01:00", "to": "02:00"}]))
    scheduler.prepare()
    for campaign_id in ("berlin-night", "new-york-night"):
        clock.now = scheduler.aps.get_job(f"open:{campaign_id}").trigger.run_date
        assert [t.campaign_id for t in run_job(scheduler, f"open:{campaign_id}")] == [
            campaign_id]
    assert statuses(app) == {"berlin-night": "open", "new-york-night": "open"}

    wallet = new_wallet_client(app)
    edges = {
        # Berlin: 01:30 CET is 00:30Z; 03:30 CEST is 01:30Z (the hour between never was).
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC) - MICROSECOND: None,
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC): "berlin-night",
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC) - MICROSECOND: "berlin-night",
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC): None,
        # New York: 01:00 EDT is 05:00Z; both passes of 01:00-02:00 count; 02:00 EST is 07:00Z.
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC) - MICROSECOND: None,
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC): "new-york-night",
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC): "new-york-night",
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC) - MICROSECOND: "new-york-night",
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC): None,
    }
    got = {}
    for n, at in enumerate(edges):
        response = wallet.event(**payment(f"p{n}", "100.00", at=at.isoformat()))
        assert response.status_code == 201, response.get_json()
        campaigns = [r["campaign_id"] for r in response.get_json()["rewards"] if r["campaign_id"]]
        got[at] = campaigns[0] if campaigns else None
    assert got == edges


# --- catch-up after downtime (misfires) ---------------------------------------------------

def test_after_downtime_due_campaigns_open_and_close_at_once(app, registry, scheduler, clock):
    apply(app, registry,
          document("started", "2027-03-01T00:00:00", "2027-05-01T00:00:00"),
          document("ended", "2027-01-01T00:00:00", "2027-03-01T00:00:00"),
          document("came-and-went", "2027-02-01T00:00:00", "2027-02-15T00:00:00"),
          document("later", "2027-06-01T00:00:00", "2027-07-01T00:00:00"))
    clock.now = datetime(2027, 1, 10, tzinfo=UTC)
    scheduler.prepare()
    assert statuses(app)["ended"] == "open"

    scheduler.on_deposed()  # downtime: nobody leads
    down_until = datetime(2027, 3, 15, tzinfo=UTC)
    clock.now = down_until
    scheduler.on_elected(None)
    scheduler.prepare()
    assert statuses(app) == {"came-and-went": "closed", "ended": "closed", "later": "scheduled",
                             "started": "open"}
    assert audit(app, "came-and-went") == [("scheduled", "closed", down_until)]
    assert audit(app, "started") == [("scheduled", "open", down_until)]
    assert audit(app, "ended") == [("scheduled", "open", datetime(2027, 1, 10, tzinfo=UTC)),
                                   ("open", "closed", down_until)]
    assert sorted(scheduler.job_plan()) == ["close:later", "close:started", "open:later"]


def test_a_job_that_runs_late_still_makes_its_transition(app, registry, scheduler, clock):
    apply(app, registry, document("late", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    clock.now = datetime(2027, 3, 1, 3, tzinfo=UTC)  # hours after the instant
    run_job(scheduler, "open:late")
    assert statuses(app) == {"late": "open"}


# --- rescheduling when a campaign changes -------------------------------------------------

def test_an_edit_moves_only_the_jobs_whose_instant_changed(app, registry, scheduler):
    apply(app, registry, document("a", "2027-03-01T00:00:00", "2027-05-01T00:00:00"),
          document("b", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    before = {job_id: scheduler.aps.get_job(job_id) for job_id in scheduler.job_plan()}
    apply(app, registry, document("a", "2027-03-02T00:00:00", "2027-05-01T00:00:00"),
          document("b", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    assert scheduler.resync() is True
    assert scheduler.aps.get_job("open:a").trigger.run_date == datetime(2027, 3, 1, 16,
                                                                        tzinfo=UTC)
    assert scheduler.aps.get_job("open:a") is not before["open:a"]
    for unchanged in ("close:a", "open:b", "close:b"):
        assert scheduler.aps.get_job(unchanged) is before[unchanged]


def test_a_new_campaign_gets_its_jobs_on_the_next_resync(app, registry, scheduler):
    scheduler.prepare()
    assert scheduler.job_plan() == {}
    apply(app, registry, document("new", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.resync()
    assert sorted(scheduler.job_plan()) == ["close:new", "open:new"]


def test_a_paused_campaign_has_no_jobs_and_gets_them_back_on_resume(app, registry, scheduler,
                                                                    clock):
    apply(app, registry, document("p", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    with app.app_context():
        transition(db.session, "p", PAUSED, actor="cli", reason="test", now=BEFORE)
        db.session.commit()
    scheduler.resync()
    assert scheduler.job_plan() == {}
    with app.app_context():
        resume(db.session, "p", actor="cli", reason="test", now=BEFORE)
        db.session.commit()
    scheduler.resync()
    assert sorted(scheduler.job_plan()) == ["close:p", "open:p"]
    clock.now = datetime(2027, 2, 28, 16, tzinfo=UTC)
    run_job(scheduler, "open:p")
    assert statuses(app) == {"p": "open"}


def test_a_retired_campaign_loses_its_jobs(app, registry, scheduler):
    apply(app, registry, document("keep", "2027-03-01T00:00:00", "2027-05-01T00:00:00"),
          document("gone", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    apply(app, registry, document("keep", "2027-03-01T00:00:00", "2027-05-01T00:00:00"),
          prune=True)
    scheduler.resync()
    assert sorted(scheduler.job_plan()) == ["close:keep", "open:keep"]


def test_a_job_planned_before_an_edit_does_not_open_the_campaign_early(app, registry,
                                                                      scheduler, clock):
    apply(app, registry, document("moved", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    # Moved a day later, and the old job runs before the next resync has seen it.
    apply(app, registry, document("moved", "2027-03-02T00:00:00", "2027-05-01T00:00:00"))
    clock.now = datetime(2027, 2, 28, 16, tzinfo=UTC)
    assert run_job(scheduler, "open:moved") == []
    assert statuses(app) == {"moved": "scheduled"}


def test_a_paused_campaign_is_not_opened_by_a_job_planned_before_the_pause(
        app, registry, scheduler, clock):
    apply(app, registry, document("p", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    with app.app_context():
        transition(db.session, "p", PAUSED, actor="cli", reason="test", now=BEFORE)
        db.session.commit()
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)
    assert run_job(scheduler, "open:p") == []
    assert statuses(app) == {"p": "paused"}


# --- exactly once -------------------------------------------------------------------------

def test_a_duplicate_run_changes_nothing(app, registry, scheduler, clock):
    apply(app, registry, document("once", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    scheduler.prepare()
    with app.app_context():
        revision = campaigns_revision()
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)
    assert len(scheduler.act(["once"])) == 1
    assert scheduler.act(["once"]) == []
    assert scheduler.act() == []
    assert audit(app, "once") == [("scheduled", "open", clock.now)]
    with app.app_context():
        assert campaigns_revision() == revision + 1


def test_two_schedulers_racing_make_each_transition_once(app, registry, clock):
    ids = [f"race-{n}" for n in range(30)]
    apply(app, registry, *[document(i, "2027-03-01T00:00:00", "2027-05-01T00:00:00")
                           for i in ids])
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)
    schedulers = [CampaignScheduler(app, clock=clock) for _ in range(2)]
    for sched in schedulers:
        sched.on_elected(None)
    barrier = threading.Barrier(2)
    made = []

    def race(sched):
        barrier.wait()
        made.extend(sched.act(ids))

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(t.campaign_id for t in made) == sorted(ids)
    for campaign_id in ids:
        assert audit(app, campaign_id) == [("scheduled", "open", clock.now)]


def test_a_deposed_leader_cannot_act(app, registry, clock):
    apply(app, registry, document("fenced", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    old = CampaignScheduler(app, clock=clock)
    old.aps.start(paused=True)
    try:
        old.on_elected(1)
        old.prepare()
        assert sorted(old.job_plan()) == ["close:fenced", "open:fenced"]
        with app.app_context():  # a newer leader, token 2, has acted meanwhile
            check_fence(db.session, 2)
            db.session.commit()
        clock.now = datetime(2027, 3, 1, tzinfo=UTC)
        assert run_job(old, "open:fenced") == []
        assert statuses(app) == {"fenced": "scheduled"}
        assert audit(app, "fenced") == []
        assert (old.leading, old.job_plan()) == (False, {})
        with app.app_context():
            assert db.session.get(ProgramState, 1).scheduler_fence == 2
    finally:
        old.aps.shutdown(wait=False)


# --- hooks --------------------------------------------------------------------------------

def test_hook_promo_campaign_opened(app, registry, scheduler, clock, recorder):
    apply(app, registry, document("spring", "2027-03-28T03:00:00", "2027-04-01T00:00:00",
                                  BERLIN))
    scheduler.prepare()
    clock.now = datetime(2027, 3, 28, 1, tzinfo=UTC)
    run_job(scheduler, "open:spring")
    scheduler.act(["spring"])  # a duplicate run: no second call
    assert recorder.calls == [("opened", "spring", clock.now)]
    campaign = recorder.campaigns[0]
    assert isinstance(campaign, Campaign)
    assert (campaign.id, campaign.type, campaign.timezone, campaign.starts_at,
            campaign.params) == ("spring", "holiday_discount", BERLIN,
                                 datetime(2027, 3, 28, 1, tzinfo=UTC), {"percent": 10})


def test_hook_promo_campaign_closed(app, registry, scheduler, clock, recorder):
    apply(app, registry, document("fall", "2027-10-01T00:00:00", "2027-11-07T01:30:00",
                                  NEW_YORK),
          document("missed", "2027-01-01T00:00:00", "2027-01-02T00:00:00"))
    clock.now = datetime(2027, 10, 2, tzinfo=UTC)
    scheduler.prepare()  # "missed" passed whole while nobody ran: closed, never opened
    clock.now = datetime(2027, 11, 7, 5, 30, tzinfo=UTC)
    run_job(scheduler, "close:fall")
    scheduler.act()
    assert recorder.calls == [("opened", "fall", datetime(2027, 10, 2, tzinfo=UTC)),
                              ("closed", "missed", datetime(2027, 10, 2, tzinfo=UTC)),
                              ("closed", "fall", datetime(2027, 11, 7, 5, 30, tzinfo=UTC))]


def test_a_hook_that_raises_is_logged_and_the_transition_stands(app, registry, clock, caplog):
    class Failing:
        @hookimpl
        def promo_campaign_opened(self, campaign, at):
            raise RuntimeError("notification service down")

    recorder = Recorder()
    apply(app, registry, document("x", "2027-03-01T00:00:00", "2027-05-01T00:00:00"))
    sched = CampaignScheduler(app, pm=plugin_manager(recorder, Failing()), clock=clock)
    sched.on_elected(None)
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)
    with caplog.at_level(logging.ERROR, logger="promo_engine.campaigns.scheduler"):
        assert len(sched.act()) == 1
    assert statuses(app) == {"x": "open"}
    assert recorder.calls == [("opened", "x", clock.now)]  # the other plugin still heard
    assert "plugin test-plugin-1 raised in promo_campaign_opened for campaign x" in caplog.text
    assert "notification service down" in caplog.text


def test_a_hook_gets_the_records_fields_when_the_spec_no_longer_loads(app, registry, clock):
    recorder = Recorder()
    apply(app, registry, document("orphan", "2027-03-01T00:00:00", "2027-05-01T00:00:00",
                                  BERLIN))
    with app.app_context():  # its type's plugin was uninstalled since
        db.session.get(CampaignRecord, "orphan").type = "uninstalled_type"
        record = db.session.get(CampaignRecord, "orphan")
        record.spec = {**record.spec, "type": "uninstalled_type"}
        db.session.commit()
    sched = CampaignScheduler(app, pm=plugin_manager(recorder), clock=clock)
    sched.on_elected(None)
    clock.now = datetime(2027, 3, 1, tzinfo=UTC)
    sched.act()
    campaign = recorder.campaigns[0]
    assert (campaign.id, campaign.type, campaign.timezone, campaign.starts_at, campaign.params,
            campaign.currency) == ("orphan", "uninstalled_type", BERLIN,
                                   datetime(2027, 2, 28, 23, tzinfo=UTC), {}, "CNY")


# --- on the real clock --------------------------------------------------------------------

def test_opens_and_closes_on_the_real_clock_within_a_second(app, registry, recorder):
    now = datetime.now(UTC)
    starts = (now + timedelta(seconds=1.5)).replace(microsecond=0) + timedelta(seconds=1)
    ends = starts + timedelta(seconds=1)
    shanghai = ZoneInfo(SHANGHAI)
    apply(app, registry, document("flash", starts.astimezone(shanghai).replace(tzinfo=None)
                                  .isoformat(), ends.astimezone(shanghai).replace(tzinfo=None)
                                  .isoformat()), now=now)
    sched = CampaignScheduler(app, pm=plugin_manager(recorder))
    sched.start()
    try:
        assert sched.ready.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(recorder.calls) < 2:
            time.sleep(0.02)
    finally:
        sched.stop()
    assert statuses(app) == {"flash": "closed"}
    (_, opened, opened_at), (_, closed, closed_at) = audit(app, "flash")
    assert (opened, closed) == ("open", "closed")
    assert starts <= opened_at < starts + timedelta(seconds=1)
    assert ends <= closed_at < ends + timedelta(seconds=1)
    assert [(kind, campaign_id) for kind, campaign_id, _ in recorder.calls] == [
        ("opened", "flash"), ("closed", "flash")]


# --- configuration ------------------------------------------------------------------------

def test_lease_settings_default_and_from_the_environment():
    assert LeaseSettings.from_env({}) == LeaseSettings(5000, "{promo}:scheduler:leader")
    assert LeaseSettings.from_env({"PROMO_SCHEDULER_LEASE_MS": "2000",
                                   "PROMO_SCHEDULER_LEASE_KEY": "bank-a:leader"}) == \
        LeaseSettings(2000, "bank-a:leader")


def test_the_lease_key_is_under_the_programs_redis_prefix():
    """Two programs sharing one Redis database have a leader each."""
    assert LeaseSettings.from_env({"PROMO_REDIS_PREFIX": "bank-b"}).key == \
        "bank-b:scheduler:leader"
    assert LeaseSettings.from_env({"PROMO_REDIS_PREFIX": "bank-b",
                                   "PROMO_SCHEDULER_LEASE_KEY": "kept:leader"}).key == \
        "kept:leader"


@pytest.mark.parametrize("environ, message", [
    ({"PROMO_REDIS_PREFIX": "two words"}, "PROMO_REDIS_PREFIX: 'two words' must be non-empty"),
    ({"PROMO_SCHEDULER_LEASE_MS": "500"}, "PROMO_SCHEDULER_LEASE_MS: '500' must be a whole "
                                          "number of milliseconds from 1000 to 300000"),
    ({"PROMO_SCHEDULER_LEASE_MS": "5s"}, "PROMO_SCHEDULER_LEASE_MS: '5s' must be"),
    ({"PROMO_SCHEDULER_LEASE_KEY": "two words"}, "PROMO_SCHEDULER_LEASE_KEY: 'two words' must"),
])
def test_invalid_lease_settings_stop_start_up_with_a_clear_message(environ, message):
    with pytest.raises(ConfigError) as raised:
        LeaseSettings.from_env(environ)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_scheduler_command_without_redis_says_to_run_serve(tmp_path, monkeypatch, database_url):
    from click.testing import CliRunner

    from promo_engine.cli import main
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["scheduler"], env={
        "DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key-0123456789",
        "REDIS_URL": ""})
    assert result.exit_code == 2
    assert "REDIS_URL is not set" in result.output
    assert "without Redis run `promo-engine serve`" in result.output
